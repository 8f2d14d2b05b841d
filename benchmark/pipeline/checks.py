"""Every image array checked at the door: a dataset that is not what it claims is a message
naming the file, what was expected, what was found and what to do -- never a silently wrong
number.

The harness works on uint8 N x H x W x C images with int64 labels. What comes in is brought to
that form only when the conversion is unambiguous (N x H x W is grayscale; N x C x H x W with
C in {1, 3} is transposed; floats only when their range is declared); everything else is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.atomic import file_digest
from benchmark.pipeline.errors import DataError
from benchmark.pipeline.lazy import LazyImages

CHANNELS = (1, 3)
LAYOUTS = ("NHWC", "NCHW", "NHW")


def verify_checksum(path: Path, expected: dict[str, str]) -> None:
    """Compare ``path`` with the declared ``{sha256|md5: hex}``; a mismatch is a DataError."""
    for algorithm in ("sha256", "md5"):
        want = expected.get(algorithm)
        if not want:
            continue
        found = file_digest(path, algorithm)
        if found.lower() != str(want).lower():
            raise DataError(
                f"{path}: {algorithm} is {found}, the dataset entry declares {want}. The file "
                "is damaged or not the one the entry describes: download it again, or fix the "
                f"entry's {algorithm}.")


def _layout(shape: tuple[int, ...], declared: str | None, where: str) -> str:
    if declared is not None:
        if declared not in LAYOUTS:
            raise DataError(f"{where}: layout {declared!r} is not one of {', '.join(LAYOUTS)}")
        if len(shape) != len(declared):
            raise DataError(f"{where}: declared layout {declared} but the images have shape "
                            f"{shape} ({len(shape)} axes, not {len(declared)})")
        return declared
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4 and shape[3] in CHANNELS:
        return "NHWC"
    if len(shape) == 4 and shape[1] in CHANNELS:
        return "NCHW"
    raise DataError(
        f"{where}: images have shape {shape}; expected N x H x W x C (C = 1 or 3), "
        "N x C x H x W or N x H x W. Store them in one of those layouts (or declare "
        "`layout:` in the dataset entry).")


def _to_uint8(images: np.ndarray, value_range: list[float] | None, where: str) -> np.ndarray:
    if images.dtype == np.uint8:
        if value_range is not None and list(value_range) != [0, 255]:
            raise DataError(f"{where}: the entry declares range {value_range} but the images "
                            "are uint8 (0..255); remove `range` from the entry")
        return images
    kind = images.dtype.kind
    if kind not in "fiu" or images.dtype == np.bool_:
        raise DataError(f"{where}: images have dtype {images.dtype}; expected uint8 pixels "
                        "(0..255)")
    if value_range is None:
        lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        raise DataError(
            f"{where}: images have dtype {images.dtype} (values {lo:g}..{hi:g}); expected "
            "uint8 pixels 0..255. Store uint8, or declare the range in the dataset entry "
            "(`range: [0, 1]` or `range: [0, 255]`) to have them converted.")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise DataError(f"{where}: declared range {value_range} is empty")
    values = images.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{where}: images contain NaN or infinite values")
    if values.size and (values.min() < lo - 1e-6 or values.max() > hi + 1e-6):
        raise DataError(f"{where}: declared range [{lo:g}, {hi:g}] but the values span "
                        f"{values.min():g}..{values.max():g}; fix the entry's `range`")
    return np.round((values - lo) / (hi - lo) * 255).clip(0, 255).astype(np.uint8)


def canonical_images(images: np.ndarray, where: str, layout: str | None = None,
                     value_range: list[float] | None = None) -> np.ndarray:
    """``images`` as uint8 N x H x W x C (C = 1 or 3), or a DataError saying what is wrong."""
    images = np.asarray(images)
    order = _layout(images.shape, layout, where)
    images = _to_uint8(images, value_range, where)
    if order == "NHW":
        images = images[..., None]
    elif order == "NCHW":
        images = images.transpose(0, 2, 3, 1)
    if images.shape[3] not in CHANNELS:
        raise DataError(f"{where}: images have {images.shape[3]} channels (shape "
                        f"{images.shape}); expected 1 (grayscale) or 3 (RGB)")
    if min(images.shape[1:3]) < 1:
        raise DataError(f"{where}: images have an empty size {images.shape[1:3]}")
    return standard_strides(images)


def standard_strides(a: np.ndarray) -> np.ndarray:
    """``a`` C-contiguous with the strides a fresh array of its shape has (an added axis of
    size 1 gets stride 0 from ``[..., None]``). Not cosmetic: torch keeps the strides, and
    oneDNN picks its convolution kernel by them, so the same pixels with other strides train
    a network that differs in the last bits."""
    expected = tuple(int(np.prod(a.shape[i + 1:])) * a.itemsize for i in range(a.ndim))
    return a if a.flags.c_contiguous and a.strides == expected else a.copy(order="C")


def canonical_labels(labels: np.ndarray | None, n_images: int, where: str) -> np.ndarray:
    """int64 labels, one per image; None (a set without labels) gives -1 for every image."""
    if labels is None:
        return np.full(n_images, -1, dtype=np.int64)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: labels have shape {labels.shape}; expected one integer "
                        "label per image (shape (N,))")
    if len(labels) != n_images:
        raise DataError(f"{where}: {len(labels)} labels for {n_images} images; every image "
                        "needs exactly one label, in the same order")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DataError(f"{where}: labels are not whole numbers (dtype {labels.dtype})")
    elif labels.dtype.kind not in "iu":
        raise DataError(f"{where}: labels have dtype {labels.dtype}; expected integers")
    return labels.astype(np.int64)


def checked(images: np.ndarray, labels: np.ndarray | None, where: str,
            layout: str | None = None, value_range: list[float] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels in the harness's form, refused with a message when they cannot be.
    Lazy image files are checked when they are read (one shape, decoded by PIL)."""
    if isinstance(images, LazyImages):
        if len(images) == 0:
            raise DataError(f"{where}: no images (the set is empty)")
        return images, canonical_labels(labels, len(images), where)
    images = canonical_images(images, where, layout, value_range)
    if len(images) == 0:
        raise DataError(f"{where}: no images (the set is empty)")
    return images, canonical_labels(labels, len(images), where)


def check_id_labels(labels: np.ndarray, num_classes: int, where: str,
                    every_class: bool) -> None:
    """ID labels within 0..num_classes-1 and (``every_class``, training data) each present."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels span {labels.min()}..{labels.max()}; an ID set with "
                        f"{num_classes} classes needs labels 0..{num_classes - 1}")
    if every_class:
        missing = sorted(set(range(num_classes)) - set(np.unique(labels).tolist()))
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise DataError(
                f"{where}: no training image of class {shown} ({len(missing)} of "
                f"{num_classes} classes missing); the backbone's head and every class-"
                "conditional detector need each class. Fix the labels or the entry's "
                "num_classes.")
