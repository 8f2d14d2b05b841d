"""``python -m benchmark.report``: the same as ``ood-bench-report``."""

from benchmark.cli import report_main

if __name__ == "__main__":
    report_main()
