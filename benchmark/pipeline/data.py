"""Dataset registry: raw uint8 images from a local root or a torchvision download.

Every dataset split comes back as an ``ImageSet`` (N x H x W x C uint8 + int64 labels) with a
content hash, so caches downstream are keyed by what the pixels are, not by a name. A local
root is only ever read (the offline mirror is read-only); downloads go to ``download_dir``.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


class DataError(RuntimeError):
    """Missing or unusable data; the message says what to do."""


@dataclass
class ImageSet:
    """A dataset split in memory: ``images`` N x H x W x C uint8, ``labels`` int64."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    source: str
    parent_hash: str | None = None
    indices: np.ndarray | None = None
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
            else:
                h.update(np.ascontiguousarray(self.images).tobytes())
                h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
            self._hash = h.hexdigest()
        return self._hash

    def take(self, indices: np.ndarray, split: str | None = None) -> ImageSet:
        """Rows ``indices`` as a new set whose identity records where it came from."""
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            name=self.name,
            split=split or self.split,
            images=self.images[indices],
            labels=self.labels[indices],
            source=self.source,
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
            "sha256": self.content_hash,
        }


# --------------------------------------------------------------------------- local readers


def _read_idx(path: Path, header: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=header)


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def _idx_reader(folder: str) -> Callable[[Path, str], tuple[np.ndarray, np.ndarray] | None]:
    """Reader for torchvision's MNIST-style raw idx files under ``root/<folder>/raw``."""

    def read(root: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        prefix = "train" if split == "train" else "t10k"
        raw = root / folder / "raw"
        img = _find(raw, f"{prefix}-images-idx3-ubyte")
        lab = _find(raw, f"{prefix}-labels-idx1-ubyte")
        if img is None or lab is None:
            return None
        labels = _read_idx(lab, 8).astype(np.int64)
        images = _read_idx(img, 16).reshape(len(labels), 28, 28, 1)
        return images.copy(), labels

    return read


def _npz_reader(rel: dict[str, str]) -> Callable[[Path, str], tuple[np.ndarray, np.ndarray] | None]:
    """Reader for ``.npz`` archives with keys ``images`` (N x H x W x 3 uint8) and ``labels``."""

    def read(root: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        if split not in rel or not (root / rel[split]).exists():
            return None
        with np.load(root / rel[split]) as z:
            return np.ascontiguousarray(z["images"]), z["labels"].astype(np.int64)

    return read


def _torchvision_reader(cls_name: str, folder_check: str):
    """Reader for an already-downloaded torchvision layout under the root (no writes)."""

    def read(root: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        if not (root / folder_check).exists():
            return None
        return _torchvision_arrays(cls_name, root, split, download=False)

    return read


def _places365_local(root: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """torchvision's Places365 val layout (``places365_val.txt`` + ``val_256/``), 32x32 crops.

    Read directly (not through torchvision, which re-checks md5 sums of the whole archive).
    """
    from PIL import Image

    listing = root / "places365_val.txt"
    if split != "val" or not listing.exists() or not (root / "val_256").is_dir():
        return None
    names, labels = [], []
    for line in listing.read_text().split("\n"):
        if line.strip():
            name, label = line.split()[:2]
            names.append(name.lstrip("/"))
            labels.append(int(label))
    images = [_shorter_side_crop(Image.open(root / "val_256" / n), 32)
              for n in tqdm(names, desc="places365 -> 32x32", mininterval=2, leave=False)]
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _first(*readers):
    def read(root: Path, split: str):
        for r in readers:
            out = r(root, split)
            if out is not None:
                return out
        return None

    return read


# --------------------------------------------------------------------------- downloads


def _torchvision_arrays(
    cls_name: str, root: Path, split: str, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    import torchvision.datasets as tvd

    train = split == "train"
    if cls_name in ("MNIST", "FashionMNIST"):
        ds = getattr(tvd, cls_name)(str(root), train=train, download=download)
        return ds.data.numpy()[..., None].copy(), ds.targets.numpy().astype(np.int64)
    if cls_name in ("CIFAR10", "CIFAR100"):
        ds = getattr(tvd, cls_name)(str(root), train=train, download=download)
        return np.ascontiguousarray(ds.data), np.asarray(ds.targets, dtype=np.int64)
    if cls_name == "SVHN":
        ds = tvd.SVHN(str(root), split=split, download=download)
        return np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1)), ds.labels.astype(np.int64)
    if cls_name == "DTD":
        ds = tvd.DTD(str(root), split="test" if split == "all" else split, download=download)
        images = np.stack([_shorter_side_crop(ds[i][0], 32) for i in range(len(ds))])
        return images, np.asarray(ds._labels, dtype=np.int64)
    if cls_name == "Places365":  # the 256x256 val set (36,500 images), as OpenOOD's far-OOD
        tvd.Places365(str(root), split="val", small=True, download=download)
        return _places365_local(root, split)
    raise DataError(f"no torchvision reader for {cls_name}")


def _shorter_side_crop(img, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bilinear) and centre-crop, as the offline DTD subset."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetSpec:
    """How to get one dataset: local reader, optional torchvision download, where files go."""

    splits: tuple[str, ...]
    num_classes: int
    local: Callable[[Path, str], tuple[np.ndarray, np.ndarray] | None]
    expected: str
    download: str | None = None


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        ("train", "test"), 10, _idx_reader("MNIST"),
        "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", "MNIST",
    ),
    "fashionmnist": DatasetSpec(
        ("train", "test"), 10, _idx_reader("FashionMNIST"),
        "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", "FashionMNIST",
    ),
    "notmnist": DatasetSpec(
        ("test",), 10, _idx_reader("notMNIST"),
        "notMNIST/raw/t10k-{images-idx3,labels-idx1}-ubyte[.gz] (MNIST idx format; no public "
        "downloader exists, convert the notMNIST_small letters A-J yourself)",
    ),
    "cifar10": DatasetSpec(
        ("train", "test"), 10,
        _first(
            _npz_reader({"train": "cifar10/train.npz", "test": "cifar10/test.npz"}),
            _torchvision_reader("CIFAR10", "cifar-10-batches-py"),
        ),
        "cifar10/{train,test}.npz or cifar-10-batches-py/", "CIFAR10",
    ),
    "cifar100": DatasetSpec(
        ("train", "test"), 100, _torchvision_reader("CIFAR100", "cifar-100-python"),
        "cifar-100-python/", "CIFAR100",
    ),
    "svhn": DatasetSpec(
        ("train", "test"), 10, _torchvision_reader("SVHN", "test_32x32.mat"),
        "{train,test}_32x32.mat", "SVHN",
    ),
    "places365": DatasetSpec(
        ("val",), 365, _places365_local,
        "val_256/ + places365_val.txt + categories_places365.txt (torchvision Places365, "
        "split val, small=True)", "Places365",
    ),
    "tinyimagenet": DatasetSpec(
        ("val",), 200, _npz_reader({"val": "tinyimagenet_32/val.npz"}),
        "tinyimagenet_32/val.npz (Tiny ImageNet val resized to 32x32; keys images, labels)",
    ),
    "dtd": DatasetSpec(
        ("all",), 47, _npz_reader({"all": "dtd_subset_32/all.npz"}),
        "dtd_subset_32/all.npz (keys images, labels)", "DTD",
    ),
}

_MEMORY: dict[tuple[str, str, str, bool, str], ImageSet] = {}


def load(
    name: str,
    split: str,
    root: str | Path | None,
    download: bool = False,
    download_dir: str | Path | None = None,
) -> ImageSet:
    """One dataset split, read from ``root`` or (if allowed) downloaded into ``download_dir``."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    if split not in spec.splits:
        raise DataError(f"dataset {name!r} has no split {split!r}; valid: {', '.join(spec.splits)}")
    memo_key = (name, split, str(root), download, str(download_dir))
    if memo_key in _MEMORY:
        return _MEMORY[memo_key]

    found = None
    source = ""
    if root is not None and Path(root).exists():
        found = spec.local(Path(root), split)
        source = f"local:{Path(root) / spec.expected.split(' ')[0]}"
    if found is None and download_dir is not None and Path(download_dir).exists():
        found = spec.local(Path(download_dir), split)  # downloaded on an earlier run
        source = f"local:{download_dir}"
    if found is None and download and spec.download is not None:
        Path(download_dir).mkdir(parents=True, exist_ok=True)
        try:
            found = _torchvision_arrays(spec.download, Path(download_dir), split, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(
                f"downloading {name} ({split}) into {download_dir} failed: "
                f"{type(exc).__name__}: {exc}. Put the files under data.root instead: "
                f"<root>/{spec.expected}"
            ) from exc
        source = f"torchvision-download:{download_dir}"
    if found is None:
        how = (
            "or allow downloading with `data=download` (or data.download=true)"
            if spec.download
            else "(no automatic download exists for this dataset)"
        )
        raise DataError(
            f"dataset {name!r} split {split!r} not found under data.root={root!s}. "
            f"Put it at <root>/{spec.expected}, point data.root (or env OOD_BENCH_DATA_ROOT) "
            f"at a folder that has it, {how}."
        )
    images, labels = found
    out = ImageSet(name=name, split=split, images=images, labels=labels, source=source)
    _MEMORY[memo_key] = out
    return out


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
