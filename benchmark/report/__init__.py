"""``ood-bench-report``: reads run and study folders only, never a model.

``build`` writes ``report.md`` and its parts; ``sweep``, ``timing``, ``plots``, ``ease``,
``robustness`` and ``summary`` render one part each. The command line is
:func:`benchmark.cli.report_main`.
"""
