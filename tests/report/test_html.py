"""The report as one HTML page: self-contained, every row there, and sortable and filterable
in a real (headless) browser."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from benchmark.cli import report_main
from benchmark.render import CONVENTION
from benchmark.report import browser
from tests.conftest import unavailable


class Rows(HTMLParser):
    """The result table's rows in DOM order: their attributes and cells' sort values."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.heads: dict[str, str] = {}
        self._in = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._in = a.get("id") == "results"
        elif self._in and tag == "th":
            self.heads[a["data-key"]] = a.get("aria-sort", "")
        elif self._in and tag == "tr" and "data-library" in a:
            self.rows.append({**a, "cells": {}})
        elif self._in and tag == "td" and self.rows:
            self.rows[-1]["cells"][a["data-key"]] = a.get("data-v", "")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False


def _parse(text: str) -> Rows:
    p = Rows()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def page(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("html-report")
    report_main([str(sweep), "--out", str(out), "--html"])
    return out / "report.html", pd.read_csv(out / "sweep_rows.csv")


def test_the_page_stands_alone_with_every_row(page) -> None:
    path, rows = page
    text = path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|[^"'#d])""", text)  # nothing outside
    assert text.count("data:image/png;base64,") >= 2  # the plots, embedded
    top = text.split("Summary by criterion")[0]
    assert CONVENTION in top.replace("&#x27;", "'") and "ood-bench -m" in top
    parsed = _parse(text)
    assert len(parsed.rows) == len(rows)
    got = {(r["data-detector"], r["data-ood"]): float(r["cells"]["auroc"]) for r in parsed.rows}
    want = {(r.label, r.ood_dataset): float(r.auroc) for r in rows.itertuples()}
    assert got == want


def test_a_headless_browser_sorts_filters_and_pictures_the_page(page, tmp_path) -> None:
    path, rows = page
    if browser.find_browser() is None:
        unavailable("browser", "no Chromium (apt install chromium)")
    # two clicks on the AUROC header: ascending, then descending
    sorted_dom = _parse(browser.dom(path, "click=auroc,auroc"))
    values = [float(r["cells"]["auroc"]) for r in sorted_dom.rows]
    assert values == sorted(values, reverse=True) and len(set(values)) > 1
    assert sorted_dom.heads["auroc"] == "descending" and sorted_dom.heads["label"] == "none"
    once = [float(r["cells"]["auroc"]) for r in _parse(browser.dom(path, "click=auroc")).rows]
    assert once == sorted(values)
    near = _parse(browser.dom(path, "group=near&detector=msp"))
    shown = [r for r in near.rows if "hidden" not in r]
    assert shown and all(r["data-group"] == "near" and "msp" in r["data-detector"]
                         for r in shown)
    assert len(shown) == int(((rows.ood_group == "near")
                              & rows.label.str.contains("msp")).sum())
    png = browser.screenshot(path, tmp_path / "page.png", "click=auroc,auroc")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a drawn page, not blank
