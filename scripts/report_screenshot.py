"""A screenshot of a report page in headless Chromium, sorted as a reader would sort it.

    python scripts/report_screenshot.py results/cifar10_libraries/report.html \
        results/cifar10_libraries/report_html.png --click auroc,auroc
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.report.browser import screenshot


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path)
    p.add_argument("png", type=Path)
    p.add_argument("--click", default="auroc,auroc",
                   help="headers to click on load (default: AUROC twice = descending)")
    p.add_argument("--filter", default="", help="e.g. group=near&library=openood")
    p.add_argument("--size", default="1280,2400", help="window width,height in pixels")
    args = p.parse_args()
    fragment = "&".join(x for x in (f"click={args.click}" if args.click else "", args.filter)
                        if x)
    w, h = (int(v) for v in args.size.split(","))
    print(screenshot(args.page, args.png, fragment, (w, h)))


if __name__ == "__main__":
    main()
