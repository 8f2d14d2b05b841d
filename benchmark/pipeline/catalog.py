"""Datasets as data: entries in ``configs/dataset/<name>.yaml`` (or inline in a pair) say
where a dataset's files are, in which format, and how to download them.

An entry::

    # configs/dataset/digits.yaml (in the project's or the user's config folder)
    kind: npz                       # idx | npz | image_folder | image_list | torchvision | ...
    splits:
      test: {path: digits/test.npz, sha256: 3f1c...}   # or just `test: digits/test.npz`
    num_classes: 10                 # ID datasets only
    layout: NHWC                    # optional: NHWC | NCHW | NHW (inferred when unambiguous)
    range: [0, 1]                   # float images only: their value range
    download: {kind: url, files: [{url: https://..., sha256: ...}]}   # optional

An entry may list several ``sources`` (tried in order: e.g. CIFAR-10 as ``.npz`` or as
torchvision's folder); ``kind`` + ``splits`` at the top level is the one-source shorthand.
Relative paths are looked up under every data root in turn (:func:`benchmark.pipeline.roots`);
absolute and ``~`` paths are used as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.pipeline import readers
from benchmark.pipeline.errors import DataError

GROUP = "dataset"
SOURCE_SETTINGS = {"kind", "splits", "layout", "range", "images_key", "labels_key", "size",
                   "channels", "class_name", "folder", "resize", "lazy"}
ENTRY_KEYS = SOURCE_SETTINGS | {"sources", "num_classes", "download", "description",
                                "homepage", "license"}


@dataclass(frozen=True)
class Source:
    """One on-disk layout of a dataset: a reader ``kind``, files per split, reader settings."""

    kind: str
    splits: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def file_keys(self) -> tuple[str, ...]:
        """The files a split of this kind names (none: the reader reads a folder under the
        root); registered with the reader (:func:`readers.register`)."""
        return readers.FILES[self.kind]

    def files(self, split: str, root: Path | None) -> dict[str, Path] | None:
        """The split's files resolved under ``root`` (None when one is missing)."""
        spec = self.splits.get(split)
        if spec is None:
            return None
        if not self.file_keys():
            if root is None or not (root / self.settings.get("folder", "")).exists():
                return None
            return {"root": root}
        out = {}
        for key in self.file_keys():
            if key not in spec:
                continue
            path = resolve(spec[key], root)
            if path is None:
                return None
            if not path.exists() and self.kind == "idx" and path.with_name(
                    path.name + ".gz").exists():
                path = path.with_name(path.name + ".gz")
            if not path.exists():
                return None
            out[key] = path
        return out

    def expected(self, split: str) -> str:
        """Where this source looks, for a message."""
        spec = self.splits.get(split, {})
        if not self.file_keys():
            return f"<root>/{self.settings.get('folder', '')} ({self.kind} layout)"
        names = [str(spec[k]) for k in self.file_keys() if k in spec]
        return f"{' + '.join(names)} ({self.kind})"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "splits": self.splits, **self.settings}


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: its name, where it came from (config file), its sources and download."""

    name: str
    sources: tuple[Source, ...]
    origin: str
    num_classes: int | None = None
    download: dict[str, Any] | None = None

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(s for src in self.sources for s in src.splits))

    def identity(self) -> str:
        """A stable text of what the entry says (memo keys)."""
        return json.dumps({"name": self.name, "sources": [s.describe() for s in self.sources],
                           "download": self.download}, sort_keys=True, default=str)


def resolve(path: str | Path, root: Path | None) -> Path | None:
    """``path`` as given when absolute or ``~``, else under ``root`` (None: no root)."""
    p = Path(str(path)).expanduser()
    if p.is_absolute():
        return p
    return None if root is None else root / p


def _split_spec(kind: str, value: Any, where: str) -> dict[str, Any]:
    if value is None:
        value = {}
    if isinstance(value, str):
        keys = readers.FILES[kind]
        if len(keys) != 1:
            raise DataError(f"{where}: a {kind} split needs {{{', '.join(keys)}}}, got {value!r}")
        value = {keys[0]: value}
    if not isinstance(value, dict):
        raise DataError(f"{where}: a split must be a path or a mapping, got {value!r}")
    return dict(value)


def _source(body: dict[str, Any], where: str) -> Source:
    kind = body.get("kind")
    if kind not in readers.READERS:
        raise DataError(f"{where}: kind {kind!r} is not a dataset kind; valid: "
                        f"{', '.join(sorted(readers.READERS))}")
    raw = body.get("splits")
    if raw is None:
        raise DataError(f"{where}: no `splits:` (e.g. `splits: {{test: path/to/test.npz}}`)")
    if isinstance(raw, list | tuple):
        raw = dict.fromkeys(raw)
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{where}: `splits` must map split names to files")
    splits = {str(name): _split_spec(kind, v, f"{where}, split {name}")
              for name, v in raw.items()}
    settings = {k: v for k, v in body.items() if k in SOURCE_SETTINGS - {"kind", "splits"}}
    return Source(kind=kind, splits=splits, settings=settings)


def entry_from(body: dict[str, Any], name: str, origin: str) -> DatasetEntry:
    """A :class:`DatasetEntry` from its YAML body; unknown keys are an error (typos)."""
    if not isinstance(body, dict):
        raise DataError(f"{origin}: a dataset entry must be a mapping, got {body!r}")
    unknown = sorted(set(body) - ENTRY_KEYS)
    if unknown:
        raise DataError(f"{origin}: unknown key(s) {', '.join(unknown)} in dataset entry "
                        f"{name!r}; valid: {', '.join(sorted(ENTRY_KEYS))}")
    shared = {k: v for k, v in body.items() if k in SOURCE_SETTINGS - {"kind", "splits"}}
    if "sources" in body:
        sources = tuple(_source({**shared, **s}, f"{origin}, source {i}")
                        for i, s in enumerate(body["sources"]))
    else:
        sources = (_source(body, origin),)
    num_classes = body.get("num_classes")
    return DatasetEntry(name=name, sources=sources, origin=origin,
                        num_classes=int(num_classes) if num_classes is not None else None,
                        download=body.get("download"))


def entry_names(dirs: Sequence[Path]) -> list[str]:
    return sorted({p.stem for d in dirs for p in (Path(d) / GROUP).glob("*.yaml")})


def find_entry(name: str, dirs: Sequence[Path]) -> DatasetEntry:
    """The entry ``<dir>/dataset/<name>.yaml`` of the first config folder that has it."""
    for d in dirs:
        path = Path(d) / GROUP / f"{name}.yaml"
        if path.is_file():
            try:
                body = yaml.safe_load(path.read_text()) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: not valid YAML ({exc})") from exc
            return entry_from(body, name, str(path))
    looked = ", ".join(str(Path(d) / GROUP) for d in dirs)
    raise DataError(f"unknown dataset {name!r} (no {name}.yaml in {looked}); valid: "
                    f"{', '.join(entry_names(dirs))}. Add an entry there, or describe the "
                    "dataset inline in the pair (`dataset: {kind: npz, splits: ...}`)")


def as_entry(dataset: str | dict[str, Any] | DatasetEntry, dirs: Sequence[Path],
             name: str | None = None) -> DatasetEntry:
    """A pair's ``dataset:`` value (an entry name, or an inline entry) as an entry."""
    if isinstance(dataset, DatasetEntry):
        return dataset
    if isinstance(dataset, str):
        return find_entry(dataset, dirs)
    if isinstance(dataset, dict):
        entry_name = name or "inline"
        body = dict(dataset)
        return entry_from(body, entry_name, f"inline dataset entry {entry_name!r}")
    raise DataError(f"a dataset must be an entry name or an inline entry, got {dataset!r}")
