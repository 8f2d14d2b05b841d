"""A headless Chromium from the OS packages: the DOM of a page after its scripts ran, and a
screenshot (``ood-bench-report``'s page is checked and pictured with it)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((p for name in NAMES if (p := shutil.which(name))), None)


def _browser(given: str | None) -> str:
    browser = given or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (apt install chromium)")
    return browser


def _url(page: Path, fragment: str) -> str:
    return page.resolve().as_uri() + (f"#{fragment}" if fragment else "")


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="ood-bench-chromium-") as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args],
            capture_output=True, text=True, timeout=timeout)


def dom(page: Path, fragment: str = "", browser: str | None = None, timeout: float = 120
        ) -> str:
    """The page's DOM after load (``fragment``: the part after ``#``)."""
    proc = _run(_browser(browser), ["--dump-dom", _url(page, fragment)], timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed: {proc.stderr[-2000:]}")
    return proc.stdout


def screenshot(page: Path, png: Path, fragment: str = "", size: tuple[int, int] = (1280, 1600),
               browser: str | None = None, timeout: float = 120) -> Path:
    """A PNG of the page's first ``size`` pixels after load."""
    png.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(_browser(browser), [f"--screenshot={png.resolve()}",
                                    f"--window-size={size[0]},{size[1]}", _url(page, fragment)],
                timeout)
    if proc.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium made no screenshot: {proc.stderr[-2000:]}")
    return png
