"""Readers, one per dataset ``kind``: files on disk -> raw (images, labels) arrays.

A reader gets the resolved files of one split and the source's settings, and returns what it
read, or raises :class:`DataError` naming the file and what is wrong with it (truncated,
unreadable, missing key). It never writes. The door checks (:mod:`checks`) come after.

Kinds: ``idx`` (MNIST-style idx files, optionally gzipped), ``npz``, ``image_folder`` (one
sub-folder per class, or a flat folder), ``image_list`` (OpenOOD's ``benchmark_imglist``
lines: ``<path relative to a root> <label>``), ``torchvision`` (an already-downloaded
torchvision layout) and ``places365``; :func:`register` adds a kind.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from benchmark.pipeline.errors import DataError
from benchmark.pipeline.lazy import LazyImages

Arrays = tuple[np.ndarray, np.ndarray | None]
# (files of the split: name -> path, the source's settings) -> (images, labels or None)
Reader = Callable[[dict[str, Path], dict[str, Any]], Arrays]
READERS: dict[str, Reader] = {}
# per kind: the files a split names (the first is the one a declared checksum is for); ()
# = the reader takes the data root itself and checks for its `folder` under it
FILES: dict[str, tuple[str, ...]] = {}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def register(kind: str, files: tuple[str, ...] = ("path",)) -> Callable[[Reader], Reader]:
    """Decorator: make ``kind: <kind>`` usable in dataset entries; ``files`` names what a split
    of that kind lists (``()``: a folder under the data root, named by ``folder``)."""

    def add(fn: Reader) -> Reader:
        READERS[kind] = fn
        FILES[kind] = files
        return fn

    return add


# --------------------------------------------------------------------------- idx

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (``.gz`` or plain), its header checked against its length."""
    try:
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'idx'}"
                        f" ({type(exc).__name__}: {exc}); the file is truncated or damaged: "
                        "download or copy it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path}: not an idx file (no idx magic number in its first bytes)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header ({len(raw)} bytes)")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: the idx header promises {dims} ({expected} bytes) but the "
                        f"file has {len(raw)} bytes; it is truncated or damaged: download or "
                        "copy it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


@register("idx", files=("images", "labels"))
def _idx(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    images = read_idx(files["images"])
    labels = read_idx(files["labels"]) if "labels" in files else None
    return images.copy(), labels


# --------------------------------------------------------------------------- npz


@register("npz")
def _npz(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    path = files["path"]
    images_key = settings.get("images_key", "images")
    labels_key = settings.get("labels_key", "labels")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if images_key not in keys:
                raise DataError(f"{path}: no key {images_key!r} (keys: {', '.join(keys) or '-'});"
                                " store the images under that key or set `images_key` in the "
                                "dataset entry")
            if labels_key is not None and labels_key not in keys:
                raise DataError(f"{path}: no key {labels_key!r} (keys: {', '.join(keys) or '-'});"
                                " store the labels under that key, set `labels_key`, or "
                                "`labels_key: null` for a set without labels (OOD sets only)")
            images = np.asarray(z[images_key])
            labels = np.asarray(z[labels_key]) if labels_key is not None else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{path}: cannot be read as .npz ({type(exc).__name__}: {exc}); it is "
                        "truncated, damaged or not a NumPy archive") from exc
    return images, labels


# --------------------------------------------------------------------------- image files


def _open_image(path: Path, channels: int | None, size: int | None,
                resize: int | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as an image ({type(exc).__name__}: {exc})"
                        ) from exc
    if size is not None:
        return shorter_side_crop(img, size, resize)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def shorter_side_crop(img, size: int, resize: int | None = None) -> np.ndarray:
    """Resize the shorter side to ``resize`` (default ``size``; bilinear) and centre-crop
    ``size`` x ``size``: the offline DTD subset, and ImageNet's Resize(256) + CenterCrop(224)."""
    from PIL import Image

    gray = img.mode == "L"
    img = img.convert("L" if gray else "RGB")
    w, h = img.size
    target = max(size, int(resize or size))
    scale = target / min(w, h)
    img = img.resize((max(target, round(w * scale)), max(target, round(h * scale))),
                     Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return arr[..., None] if gray else arr


def _stack(paths: list[Path], settings: dict[str, Any], where: Path) -> np.ndarray | LazyImages:
    """The images of ``paths`` as one array, or (``lazy: true``) as files read on access."""
    channels, size, resize = settings.get("channels"), settings.get("size"), settings.get("resize")
    if settings.get("lazy"):
        if not size or not channels:
            raise DataError(f"{where}: `lazy: true` needs `size` and `channels` in the dataset "
                            "entry (every image is resized to one shape when it is read)")
        return LazyImages(paths, int(size), int(channels),
                          partial(_open_image, channels=channels, size=size, resize=resize),
                          {"resize": resize})
    images = [_open_image(p, channels, size, resize)
              for p in tqdm(paths, desc=f"read {where.name}", mininterval=2, leave=False)]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{where}: the images have {len(shapes)} different sizes (e.g. "
                        f"{', '.join(map(str, sorted(shapes)[:3]))}); set `size: <pixels>` in "
                        "the dataset entry to resize the shorter side and centre-crop them")
    return np.stack(images)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _by_class(folders: list[Path]) -> tuple[list[Path], list[int]]:
    """The image files of each folder, labelled by the folder's position in ``folders``."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(folders):
        found = _image_files(d)
        paths += found
        labels += [label] * len(found)
    return paths, labels


@register("image_folder")
def _image_folder(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    """One sub-folder per class (labels follow the sorted folder names), or a flat folder of
    images (no labels)."""
    folder = files["path"]
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (kind image_folder wants a folder of images, "
                        "or of one sub-folder per class)")
    paths, labels = _by_class(sorted(d for d in folder.iterdir() if d.is_dir()))
    flat = _image_files(folder)
    if paths and flat:
        raise DataError(f"{folder}: has both images and class sub-folders; keep one layout")
    if not paths:
        paths = flat
    if not paths:
        raise DataError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return _stack(paths, settings, folder), (np.asarray(labels) if labels else None)


MVTEC_NORMAL = "good"


@register("mvtec")
def _mvtec(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    """MVTec-AD's layout for one category's split, ``<category>/<train|test>/<kind>/*.png``:
    label 0 = ``good`` (defect-free), 1, 2, ... = the defect kinds in sorted order, so a pair
    takes normal images with ``classes: [0]`` and anomalies with ``exclude_classes: [0]``. The
    ground-truth masks are not read: the track scores images, not pixels."""
    folder = files["path"]
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (kind mvtec wants MVTec-AD's "
                        "<category>/<train|test>/<kind>/*.png)")
    kinds = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if MVTEC_NORMAL not in kinds:
        raise DataError(f"{folder}: has no {MVTEC_NORMAL}/ sub-folder, so it is not an MVTec-AD "
                        f"split (<category>/<train|test>/{MVTEC_NORMAL}/*.png); found "
                        f"{', '.join(kinds) or 'no sub-folders'}")
    paths, labels = _by_class([folder / k for k in
                               [MVTEC_NORMAL, *(k for k in kinds if k != MVTEC_NORMAL)]])
    if not paths:
        raise DataError(f"{folder}: no image files under its sub-folders")
    return _stack(paths, settings, folder), np.asarray(labels)


@register("image_list", files=("list", "root"))
def _image_list(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    """OpenOOD's ``benchmark_imglist`` format: ``<path relative to root> <label>`` per line."""
    listing, root = files["list"], files["root"]
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{listing}: cannot be read as a text image list ({exc})") from exc
    paths, labels = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 2:
            raise DataError(f"{listing}, line {number}: expected '<path> <label>', got {line!r}")
        try:
            labels.append(int(parts[1]))
        except ValueError as exc:
            raise DataError(f"{listing}, line {number}: label {parts[1]!r} is not an integer"
                            ) from exc
        path = root / parts[0].lstrip("/")
        if not path.is_file():
            raise DataError(f"{listing}, line {number}: image {path} does not exist (paths "
                            f"are relative to the list's root {root})")
        paths.append(path)
    if not paths:
        raise DataError(f"{listing}: the image list is empty")
    return _stack(paths, settings, listing), np.asarray(labels)


# --------------------------------------------------------------------------- torchvision


def torchvision_arrays(name: str, root: Path, split: str, download: bool) -> Arrays:
    """A torchvision dataset's split as arrays (``download`` lets torchvision fetch it)."""
    import torchvision.datasets as tvd

    train = split == "train"
    if name in ("MNIST", "FashionMNIST", "KMNIST"):
        ds = getattr(tvd, name)(str(root), train=train, download=download)
        return ds.data.numpy()[..., None].copy(), ds.targets.numpy()
    if name in ("CIFAR10", "CIFAR100"):
        ds = getattr(tvd, name)(str(root), train=train, download=download)
        return np.ascontiguousarray(ds.data), np.asarray(ds.targets)
    if name == "SVHN":
        ds = tvd.SVHN(str(root), split=split, download=download)
        return np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1)), ds.labels
    if name == "DTD":
        ds = tvd.DTD(str(root), split="test" if split == "all" else split, download=download)
        images = np.stack([shorter_side_crop(ds[i][0], 32) for i in range(len(ds))])
        return images, np.asarray(ds._labels)
    if name == "Places365":  # the 256x256 val set (36,500 images), as OpenOOD's far-OOD
        tvd.Places365(str(root), split="val", small=True, download=download)
        return places365_arrays(root)
    raise DataError(f"no torchvision reader for {name!r}; valid: MNIST, FashionMNIST, KMNIST, "
                    "CIFAR10, CIFAR100, SVHN, DTD, Places365")


@register("torchvision", files=())
def _torchvision(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    try:
        return torchvision_arrays(settings["class_name"], files["root"], settings["split"],
                                  False)
    except DataError:
        raise
    except Exception as exc:  # torchvision raises RuntimeError, OSError, pickle errors...
        raise DataError(f"{files['root']}: torchvision {settings['class_name']} "
                        f"({settings['split']}) cannot be read ({type(exc).__name__}: {exc}); "
                        "the files are incomplete or damaged: download them again") from exc


def places365_arrays(root: Path) -> Arrays:
    """torchvision's Places365 val layout (``places365_val.txt`` + ``val_256/``), 32x32 crops.

    Read directly (not through torchvision, which re-checks md5 sums of the whole archive).
    """
    return _image_list({"list": root / "places365_val.txt", "root": root / "val_256"},
                       {"size": 32, "channels": 3})


@register("places365", files=())
def _places365(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    return places365_arrays(files["root"])


# --------------------------------------------------------------------------- downloaded layouts


@register("cifar_c", files=())
def _cifar_c(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    """CIFAR-10-C / CIFAR-100-C (``<folder>/<corruption>.npy`` + ``labels.npy``, five
    severities of 10,000 images stacked); split ``<corruption>-<severity>``."""
    corruption, _, severity = settings["split"].rpartition("-")
    root = files["root"] / settings.get("folder", "")
    path, labels_path = root / f"{corruption}.npy", root / "labels.npy"
    if not path.exists() or not labels_path.exists():
        raise DataError(f"{path} or {labels_path} missing (split {settings['split']!r})")
    try:
        images = np.load(path, mmap_mode="r")
        labels = np.load(labels_path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as .npy ({exc}); download it again") from exc
    n = len(images) // 5
    s = int(severity)
    if not 1 <= s <= 5 or len(images) != 5 * n or len(labels) != len(images):
        raise DataError(f"{path}: expected 5 severity blocks of equal size with one label "
                        f"each, found {len(images)} images and {len(labels)} labels")
    rows = slice((s - 1) * n, s * n)
    return np.ascontiguousarray(images[rows]), np.asarray(labels[rows])


@register("tinyimagenet_val", files=())
def _tinyimagenet_val(files: dict[str, Path], settings: dict[str, Any]) -> Arrays:
    """Tiny ImageNet's val split from the original ``tiny-imagenet-200`` folder, resized to
    ``size`` (PIL bilinear, as the offline mirror's ``tinyimagenet_32``); labels index the
    sorted wnids."""
    root = files["root"] / settings.get("folder", "")
    annotations = root / "val" / "val_annotations.txt"
    wnids = sorted((root / "wnids.txt").read_text().split())
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    for line in annotations.read_text().splitlines():
        if line.strip():
            name, wnid = line.split("\t")[:2]
            paths.append(root / "val" / "images" / name)
            labels.append(index[wnid])
    # square 64x64 images: the shorter-side resize is a plain bilinear resize, as the mirror's
    return _stack(paths, {"size": int(settings.get("size", 32)), "channels": 3},
                  annotations), np.asarray(labels)
