"""Where the repository is, and paths of this machine written portably in committed files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = frozenset({".md", ".csv", ".tex", ".json", ".txt", ".yaml", ".html"})


def portable(text: str, tmp: bool = True) -> str:
    """``text`` with this machine's paths written portably (committed files must not name
    them): the repository as ``.``, the folder beside it (``../shared/data``) as ``..``, the
    home directory as ``~``, and (``tmp``) absolute ``/tmp`` paths as ``<tmp>``, which is no
    longer a usable path: manifests, read back by studies, keep theirs."""
    repo, parent, home = str(REPO), str(REPO.parent), str(Path.home())
    text = text.replace(repo + "/", "./").replace(repo, ".")
    if parent not in ("/", home):
        text = text.replace(parent + "/", "../")
    text = text.replace(home + "/", "~/")
    if not tmp:
        return text
    return re.sub(r"(?<![\w./~-])/tmp/[^\s,'\"|)]*", "<tmp>", text)


def display_path(path: Path | str) -> str:
    """The path written portably (manifests get committed under results/)."""
    return portable(str(path), tmp=False)


def tidy(obj: Any) -> Any:
    """Every string in a nested dict/list written portably (:func:`portable`; temporary
    folders kept: a manifest's config is read back by studies)."""
    if isinstance(obj, dict):
        return {k: tidy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [tidy(v) for v in obj]
    return portable(obj, tmp=False) if isinstance(obj, str) else obj


def in_repo(path: str | Path) -> str:
    """A relative path that does not exist from here but does under the repository, made
    absolute (committed checkpoints and the default data root work from any directory)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO / p).exists():
        return str(REPO / p)
    return str(path)


def scrub_paths(folder: Path) -> None:
    """Write machine paths portably (:func:`portable`) in every text file under ``folder``
    (it gets committed)."""
    for f in folder.rglob("*"):
        if f.suffix not in TEXT_SUFFIXES or not f.is_file():
            continue
        text = f.read_text()
        new = portable(text)
        if new != text:
            f.write_text(new)
