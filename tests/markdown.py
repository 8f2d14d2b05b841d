"""Read back the Markdown tables the harness writes, to compare them cell by cell with CSVs."""

from __future__ import annotations


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every pipe table in ``text`` as a list of rows ``{header: cell}`` (bold marks removed)."""
    out: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        head, rule = lines[i].strip(), lines[i + 1].strip()
        if head.startswith("|") and rule.startswith(("|---", "|:--")):
            names = _cells(head)
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = _cells(lines[i])
                assert len(cells) == len(names), f"ragged row: {lines[i]!r}"
                rows.append(dict(zip(names, cells, strict=True)))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
