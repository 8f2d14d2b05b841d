"""Dataset splits in memory: loaded from dataset entries (:mod:`catalog`), read by a reader of
their kind (:mod:`readers`), checked at the door (:mod:`checks`); transforms and ID splits.

Every dataset split comes back as an ``ImageSet`` (N x H x W x C uint8 + int64 labels) with a
content hash over shape, dtype and bytes, so caches downstream are keyed by what the pixels
are, not by a name. Data roots are only ever read (the offline mirror is read-only); downloads
go to ``download_dir``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.config_groups import CONFIG_DIR
from benchmark.paths import display_path
from benchmark.pipeline import catalog, checks, readers
from benchmark.pipeline.errors import DataError, DataUnavailable
from benchmark.pipeline.lazy import LazyImages

__all__ = ["DataError", "DataUnavailable", "ImageSet", "InputTransform", "IDSplits", "load",
           "batches", "plan_id_splits", "subsample"]


@dataclass
class ImageSet:
    """A dataset split: ``images`` N x H x W x C uint8 (an array, or :class:`LazyImages` read
    batch by batch), ``labels`` int64."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    source: str
    parent_hash: str | None = None
    indices: np.ndarray | None = None
    origin: str = ""
    _hash: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def content_hash(self) -> str:
        """sha256 of the pixels and labels (of the parent + the row indices for subsets)."""
        if self._hash is None:
            h = hashlib.sha256()
            if self.parent_hash is not None and self.indices is not None:
                h.update(self.parent_hash.encode())
                h.update(np.ascontiguousarray(self.indices, dtype=np.int64).tobytes())
            elif isinstance(self.images, LazyImages):  # the files' bytes, streamed
                h.update(f"lazy|{self.images.shape}|{self.images.digest()}|".encode())
                h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
            else:  # shape and dtype too: the same bytes in another layout are other images
                images = np.ascontiguousarray(self.images)
                h.update(f"{images.dtype.str}|{images.shape}|".encode())
                h.update(images.tobytes())
                h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
            self._hash = h.hexdigest()
        return self._hash

    def take(self, indices: np.ndarray, split: str | None = None) -> ImageSet:
        """Rows ``indices`` as a new set whose identity records where it came from."""
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            name=self.name,
            split=split or self.split,
            images=(self.images.subset(indices) if isinstance(self.images, LazyImages)
                    else self.images[indices]),
            labels=self.labels[indices],
            source=self.source,
            origin=self.origin,
            parent_hash=self.content_hash,
            indices=indices,
        )

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "split": self.split,
            "n": len(self),
            "shape": list(self.images.shape[1:]),
            "source": self.source,
            **({"entry": self.origin} if self.origin else {}),
            "sha256": self.content_hash,
        }


# --------------------------------------------------------------------------- loading


_MEMORY: dict[tuple, ImageSet] = {}


def builtin_dirs() -> tuple[Path, ...]:
    return (CONFIG_DIR,)


def _pick_split(entry: catalog.DatasetEntry, split: str | None) -> str:
    if split is None:
        if len(entry.splits) == 1:
            return entry.splits[0]
        raise DataError(f"dataset {entry.name!r} ({entry.origin}) has splits "
                        f"{', '.join(entry.splits)}: name one (`split: ...`)")
    if split not in entry.splits:
        raise DataError(f"dataset {entry.name!r} has no split {split!r}; valid: "
                        f"{', '.join(entry.splits)} ({entry.origin})")
    return split


def _read(entry: catalog.DatasetEntry, src: catalog.Source, split: str,
          files: dict[str, Path]) -> ImageSet:
    """One source's split, checksum-verified and checked at the door."""
    spec = src.splits[split]
    main = next(iter(files.values()))
    checks.verify_checksum(main, spec)
    images, labels = readers.READERS[src.kind](files, {**src.settings, "split": split})
    images, labels = checks.checked(images, labels, str(main), src.settings.get("layout"),
                                    src.settings.get("range"))
    declared = src.settings.get("channels")
    if declared is not None and images.shape[3] != int(declared):
        raise DataError(f"{main}: the entry declares {declared} channel(s), the images have "
                        f"{images.shape[3]} (shape {images.shape}); fix `channels` or the file")
    return ImageSet(name=entry.name, split=split, images=images, labels=labels,
                    source=f"{src.kind}:{display_path(main)}", origin=display_path(entry.origin))


def _find(entry: catalog.DatasetEntry, split: str, roots: list[Path | None]) -> ImageSet | None:
    for root in roots:
        for src in entry.sources:
            files = src.files(split, root)
            if files:
                return _read(entry, src, split, files)
    return None


def load(
    dataset: str | dict | catalog.DatasetEntry,
    split: str | None,
    root: str | Path | None = None,
    download: bool = False,
    download_dir: str | Path | None = None,
    roots: list[Path] | None = None,
    dirs: tuple[Path, ...] | None = None,
    name: str | None = None,
) -> ImageSet:
    """One dataset split: ``dataset`` is an entry name (``configs/dataset/<name>.yaml`` in
    ``dirs``) or an inline entry; its files are looked up under ``roots`` (or ``root``) in
    order, then ``download_dir``, then (``download``) fetched into ``download_dir``."""
    entry = catalog.as_entry(dataset, dirs or builtin_dirs(), name)
    split = _pick_split(entry, split)
    search: list[Path | None] = [Path(r) for r in (roots if roots is not None
                                                   else [root] if root is not None else [])]
    if download_dir is not None:
        search.append(Path(download_dir))
    memo_key = (entry.identity(), split, tuple(map(str, search)), download)
    if memo_key in _MEMORY:
        return _MEMORY[memo_key]
    found = _find(entry, split, search or [None])
    if found is None and download and entry.download and download_dir is not None:
        from benchmark.pipeline import downloads

        found = downloads.fetch(entry, split, Path(download_dir))
        if found is None:
            found = _find(entry, split, [Path(download_dir)])
    if found is None:
        how = ("or allow downloading with `data=download` (or data.download=true)"
               if entry.download else "(no automatic download exists for this dataset)")
        where = ", ".join(str(p.resolve()) if p else "(no data root)" for p in search) or "-"
        expected = " or ".join(src.expected(split) for src in entry.sources)
        raise DataUnavailable(
            f"dataset {entry.name!r} split {split!r} not found: looked for {expected} under "
            f"{where}. Put the files there, point data.root (or env OOD_BENCH_DATA_ROOT) at "
            f"a folder that has them, {how}. Entry: {entry.origin}")
    _MEMORY[memo_key] = found
    return found


# --------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class InputTransform:
    """What the backbone expects: size, channels, per-channel normalisation."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def describe(self) -> dict:
        return {"size": self.size, "channels": self.channels, "mean": list(self.mean),
                "std": list(self.std)}

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        """uint8 N x H x W x C -> float32 N x channels x size x size, normalised."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[1] == 3 and self.channels == 1:  # ITU-R 601 luma, as PIL's "L"
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
        elif x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()


def batches(
    data: ImageSet, transform: InputTransform, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Model-ready (x, y) batches in row order; transformed lazily to bound memory."""
    for start in range(0, len(data), batch_size):
        stop = start + batch_size
        yield transform(data.images[start:stop]), torch.from_numpy(data.labels[start:stop])


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class IDSplits:
    """Disjoint index sets into the ID train set: backbone training, calibration, detector fit,
    validation (hyper-parameter tuning; empty unless asked for).

    Calibration and validation are held out from training and fitting (the in-house
    detector's guarantee needs it; tuning must not see what the detector is fitted or tested
    on); fit is drawn from the training indices (standard post-hoc practice).
    """

    train: np.ndarray
    calibration: np.ndarray
    fit: np.ndarray
    seed: int
    validation: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def describe(self) -> dict:
        out = {"seed": self.seed, "train": len(self.train), "calibration": len(self.calibration),
               "fit": len(self.fit)}
        if len(self.validation):
            out["validation"] = len(self.validation)
        return out


def plan_id_splits(n: int, seed: int, calibration_size: int, fit_size: int | None,
                   train_size: int | None = None, validation_size: int = 0) -> IDSplits:
    """Seeded split of ``n`` ID training images; ``train_size`` caps backbone training.

    ``validation_size`` rows come out of the held-out calibration block, so the training split
    (and a backbone trained on it) is the same with or without a validation split; calibration
    is that much smaller."""
    if calibration_size >= n:
        raise DataError(f"data.calibration_size={calibration_size} must be < {n} training images")
    if not 0 <= validation_size < calibration_size:
        raise DataError(f"data.validation_size={validation_size} must be >= 0 and smaller than "
                        f"data.calibration_size={calibration_size} (validation rows come out of "
                        "the held-out calibration block)")
    perm = np.random.default_rng(seed).permutation(n)
    held_out = perm[:calibration_size]
    validation = np.sort(held_out[:validation_size])
    calibration = np.sort(held_out[validation_size:])
    rest = perm[calibration_size:]
    train = np.sort(rest if train_size is None else rest[:train_size])
    fit_rng = np.random.default_rng(seed + 1)
    if fit_size is None or fit_size >= len(train):
        fit = train
    else:
        fit = np.sort(fit_rng.choice(train, size=fit_size, replace=False))
    return IDSplits(train=train, calibration=calibration, fit=fit, seed=seed,
                    validation=validation)


def subsample(data: ImageSet, max_n: int | None, seed: int) -> ImageSet:
    """A seeded random subset (never the first rows: some sets are sorted by class)."""
    if max_n is None or max_n >= len(data):
        return data
    idx = np.sort(np.random.default_rng(seed).choice(len(data), size=max_n, replace=False))
    return data.take(idx)
