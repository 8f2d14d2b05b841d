"""Where the repository is, and paths of this machine written portably in committed files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = frozenset({".md", ".csv", ".tex", ".json", ".txt"})


def display_path(path: Path | str) -> str:
    """The path with the home directory as ``~`` (manifests get committed under results/)."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home):] if text.startswith(home + "/") else text


def tidy(obj: Any) -> Any:
    """Every string in a nested dict/list that is a path under the home directory, with ``~``."""
    if isinstance(obj, dict):
        return {k: tidy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [tidy(v) for v in obj]
    return display_path(obj) if isinstance(obj, str) else obj


def in_repo(path: str | Path) -> str:
    """A relative path that does not exist from here but does under the repository, made
    absolute (committed checkpoints and the default data root work from any directory)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO / p).exists():
        return str(REPO / p)
    return str(path)


def scrub_paths(folder: Path) -> None:
    """Write machine paths portably in every text file under ``folder`` (it gets committed):
    the repository as ``.``, the home directory as ``~``, temporary folders as ``<tmp>``."""
    repo, home = str(REPO), str(Path.home())
    for f in folder.rglob("*"):
        if f.suffix not in TEXT_SUFFIXES or not f.is_file():
            continue
        text = f.read_text()
        new = text.replace(repo + "/", "./").replace(repo, ".").replace(home + "/", "~/")
        new = re.sub(r"(?<![\w./~-])/tmp/[^\s,'\"|)]*", "<tmp>", new)  # absolute /tmp only
        if new != text:
            f.write_text(new)
