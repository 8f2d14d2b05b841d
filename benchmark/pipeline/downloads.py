"""Downloads, one per ``download: {kind: ...}`` of a dataset entry, into ``data.download_dir``.

Kinds: ``url`` (files fetched over HTTP(S) or ``file://``, checksum-verified, archives
extracted; the entry's sources then read them from the download folder), ``torchvision`` (the
dataset class downloads and verifies), ``pytorch_ood`` (a pytorch-ood dataset class, e.g.
``CIFAR10C``), ``openood`` (OpenOOD v1.5's image archives and ``benchmark_imglist``, through
pytorch-ood's download code, which uses ``gdown``). A failed download is a DataError saying what
to put where instead; nothing half-written is left where a later run would trust it.
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
from benchmark.paths import display_path
from benchmark.pipeline import checks, readers
from benchmark.pipeline.catalog import DatasetEntry
from benchmark.pipeline.errors import DataError

log = logging.getLogger(__name__)
TIMEOUT_S = 60


def fetch(entry: DatasetEntry, split: str, folder: Path):
    """Download ``entry`` into ``folder``. Returns an ``ImageSet`` when the download kind reads
    the split itself (torchvision), else None (the caller reads the entry's sources there)."""
    spec = dict(entry.download or {})
    kind = spec.get("kind")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "url":
            for item in spec.get("files") or []:
                fetch_url(item, folder)
            return None
        if kind == "torchvision":
            return _torchvision(entry, spec, split, folder)
        if kind == "pytorch_ood":
            _pytorch_ood(spec, split, folder)
            return None
        if kind == "openood":
            _openood(spec, folder)
            return None
    except DataError:
        raise
    except Exception as exc:  # network errors come in many types
        raise DataError(f"downloading {entry.name} ({split}) into {folder} failed: "
                        f"{type(exc).__name__}: {exc}. Put the files under a data root "
                        f"instead ({entry.sources[0].expected(split)}; entry {entry.origin})"
                        ) from exc
    raise DataError(f"{entry.origin}: download kind {kind!r} is not one of url, torchvision, "
                    "pytorch_ood, openood")


def _name_from(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


def fetch_url(item: dict[str, Any], folder: Path) -> Path:
    """One ``{url, to?, sha256?|md5?, extract?}`` item: downloaded to ``folder/<to>`` (skipped
    when it is there and matches its checksum), verified, extracted when asked."""
    url = str(item["url"])
    target = folder / str(item.get("to") or _name_from(url))
    if target.is_dir():
        target = target / _name_from(url)
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
    return target


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


def _pytorch_ood(spec: dict[str, Any], split: str, folder: Path) -> None:
    """A pytorch-ood dataset class with ``download=True`` (it verifies its md5); e.g. CIFAR10C,
    whose ``subset`` is the split's corruption (``fog-3`` -> ``fog``)."""
    import pytorch_ood.dataset.img as img

    cls = getattr(img, spec["class_name"])
    args = dict(spec.get("args") or {})
    if spec.get("subset_from_split"):
        args["subset"] = split.rsplit("-", 1)[0]
    cls(root=str(folder), download=True, **args)


def _openood(spec: dict[str, Any], folder: Path) -> None:
    """OpenOOD v1.5's archives (``names``) into ``folder/images_classic/<name>/`` and its
    ``benchmark_imglist`` into ``folder/benchmark_imglist/``, with pytorch-ood's code."""
    from pytorch_ood.benchmark.img import openood

    images = folder / "images_classic"
    images.mkdir(parents=True, exist_ok=True)
    for name in spec.get("names") or []:
        openood._download_openood_dataset(str(name), str(images))
    lists = Path(openood._ensure_imglists(download=True))
    shutil.copytree(lists, folder / "benchmark_imglist", dirs_exist_ok=True)
