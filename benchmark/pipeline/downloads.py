"""Downloads, one per ``download: {kind: ...}`` of a dataset entry, into ``data.download_dir``.

Kinds: ``url`` (files fetched over HTTP(S) or ``file://``, checksum-verified, archives
extracted; the entry's sources then read them from the download folder), ``torchvision`` (the
dataset class downloads and verifies), ``python`` (any importable download function or dataset
class, named in the entry: e.g. pytorch-ood's ``CIFAR10C``, or its code that fetches OpenOOD
v1.5's archives and image lists). A ``download`` may list several steps. A failed download is a
DataError saying what to put where instead; nothing half-written is left where a later run
would trust it.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmark.atomic import atomic_path
from benchmark.locks import entry_lock
from benchmark.paths import display_path
from benchmark.pipeline import checks, readers
from benchmark.pipeline.catalog import DatasetEntry
from benchmark.pipeline.errors import DataError, DataUnavailable

log = logging.getLogger(__name__)
TIMEOUT_S = 60


def fetch(entry: DatasetEntry, split: str, folder: Path):
    """Download ``entry`` into ``folder`` (its ``download`` is one step or a list of steps).
    Returns an ``ImageSet`` when a step reads the split itself (torchvision), else None (the
    caller reads the entry's sources there)."""
    steps = entry.download if isinstance(entry.download, list) else [entry.download or {}]
    folder.mkdir(parents=True, exist_ok=True)
    found = None
    for step in steps:
        try:
            found = _step(entry, dict(step), split, folder) or found
        except DataError:
            raise
        except Exception as exc:  # network errors come in many types
            raise DataUnavailable(
                f"downloading {entry.name} ({split}) into {folder} failed: "
                f"{type(exc).__name__}: {exc}. Put the files under a data root instead "
                f"({entry.sources[0].expected(split)}; entry {entry.origin})") from exc
    return found


def _step(entry: DatasetEntry, spec: dict[str, Any], split: str, folder: Path):
    kind = spec.get("kind")
    if kind == "url":
        for item in spec.get("files") or []:
            fetch_url(item, folder)
        return None
    if kind == "torchvision":
        return _torchvision(entry, spec, split, folder)
    if kind == "python":
        _python(spec, folder)
        return None
    raise DataError(f"{entry.origin}: download kind {kind!r} is not one of url, torchvision, "
                    "python")


def _name_from(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


def fetch_url(item: dict[str, Any], folder: Path) -> Path:
    """One ``{url, to?, sha256?|md5?, extract?}`` item: downloaded to ``folder/<to>`` (skipped
    when it is there and matches its checksum), verified, extracted when asked."""
    url = str(item["url"])
    target = folder / str(item.get("to") or _name_from(url))
    if target.is_dir():
        target = target / _name_from(url)
    with entry_lock(target, f"the download of {url}"):  # concurrent jobs fetch it once
        _fetch_locked(item, url, target, folder)
    return target


def _fetch_locked(item: dict[str, Any], url: str, target: Path, folder: Path) -> None:
    sums = {k: item[k] for k in ("sha256", "md5") if item.get(k)}
    if target.exists():
        try:
            checks.verify_checksum(target, sums)
        except DataError:
            log.warning("%s does not match its checksum; downloading it again", target)
            target.unlink()
    if not target.exists():
        log.info("downloading %s -> %s", url, target)
        with atomic_path(target) as tmp:
            _stream(url, tmp)
            try:
                checks.verify_checksum(tmp, sums)
            except DataError as exc:
                raise DataError(f"the download of {url} is not the file the entry describes: "
                                f"{exc}") from None
    if item.get("extract"):
        extract(target, folder / str(item.get("into") or ""))


def _stream(url: str, dest: Path) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "ood-bench"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(dest, "wb") as fh:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=_name_from(url),
                  mininterval=2, leave=False) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                fh.write(chunk)
                bar.update(len(chunk))


def extract(archive: Path, into: Path) -> None:
    """Unpack a ``.zip`` / ``.tar[.gz|.bz2|.xz]`` / ``.tgz`` into ``into`` (a marker file
    records a finished extraction, so an interrupted one is redone)."""
    marker = into / f".{archive.name}.extracted"
    if marker.exists():
        return
    into.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            _safe_members([into / m for m in zf.namelist()], into, archive)
            zf.extractall(into)
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
    else:
        return  # a plain file (idx .gz files are read compressed)
    marker.write_text(display_path(archive) + "\n")


def _safe_members(paths: list[Path], into: Path, archive: Path) -> None:
    root = into.resolve()
    for p in paths:
        if not p.resolve().is_relative_to(root):
            raise DataError(f"{archive}: member {p} would be written outside {into}; refused")


def _torchvision(entry: DatasetEntry, spec: dict[str, Any], split: str, folder: Path):
    from benchmark.pipeline.data import ImageSet

    images, labels = readers.torchvision_arrays(spec["class_name"], folder, split, True)
    images, labels = checks.checked(images, labels, str(folder))
    return ImageSet(name=entry.name, split=split, images=images, labels=labels,
                    source=f"torchvision-download:{display_path(folder)}",
                    origin=display_path(entry.origin))


def _python(spec: dict[str, Any], folder: Path) -> None:
    """Call ``function`` (``package.module:attribute``: a function, or a dataset class taking
    ``download=True``) with the download folder (``<folder>/<under>``) as its ``root_arg``
    (default ``root``; null: none) and ``args``; with ``copy_result_to``, the folder it returns
    is copied to ``<folder>/<copy_result_to>`` (a library that downloads into its own cache)."""
    import importlib

    module, _, attribute = str(spec["function"]).partition(":")
    fn = importlib.import_module(module)
    for part in attribute.split("."):
        fn = getattr(fn, part)
    target = folder / str(spec.get("under") or "")
    target.mkdir(parents=True, exist_ok=True)
    args = dict(spec.get("args") or {})
    root_arg = spec.get("root_arg", "root")
    if root_arg:
        args[root_arg] = str(target)
    result = fn(**args)
    if spec.get("copy_result_to"):
        shutil.copytree(Path(result), folder / spec["copy_result_to"], dirs_exist_ok=True)
