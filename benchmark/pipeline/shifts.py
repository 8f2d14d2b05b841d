"""Covariate-shift sets built from an ID test set: the "corrupted upload" threats, and noise.

Each shift maps uint8 N x H x W x C images to images of the same shape, seeded, with five
severities (1 = mild ... 5 = strong), in the spirit of CIFAR-10-C; ``invert``, ``rotate90``
and ``rotate180`` are deterministic (inverted / rotated MNIST, severity unused). The result is
an ``ImageSet`` whose identity records the parent, the shift, its severity and seed, so caches
stay correct.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import numpy as np
import torch
import torchvision.transforms.functional as TF

from benchmark.pipeline.data import DataError, ImageSet

SEVERITY = (1, 2, 3, 4, 5)
DETERMINISTIC = frozenset({"invert", "rotate90", "rotate180"})  # no seed, no severity


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1] * 2
    x = images / 255.0 + rng.normal(0, sigma, images.shape)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.4, 0.6, 0.8, 1.0, 1.5)[severity - 1]
    return _to_uint8(TF.gaussian_blur(_to_tensor(images), kernel_size=5, sigma=sigma))


def jpeg(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    quality = (80, 65, 50, 30, 15)[severity - 1]
    out = np.empty_like(images)
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(
            buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(buf))
        out[i] = dec[..., None] if dec.ndim == 2 else dec
    return out


def rotation(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    max_angle = (10, 20, 30, 45, 60)[severity - 1]
    x = _to_tensor(images)
    angles = torch.from_numpy(np.deg2rad(rng.uniform(-max_angle, max_angle, len(images))))
    cos, sin = torch.cos(angles).float(), torch.sin(angles).float()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    return _to_uint8(out)


def crop(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop keeping a fraction of each side, resized back: zoomed-in uploads."""
    keep = (0.9, 0.8, 0.7, 0.6, 0.5)[severity - 1]
    x = _to_tensor(images)
    _, _, h, w = x.shape
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    tops = rng.integers(0, h - ch + 1, len(images))
    lefts = rng.integers(0, w - cw + 1, len(images))
    out = torch.stack([TF.resized_crop(img, int(t), int(left), ch, cw, [h, w], antialias=True)
                       for img, t, left in zip(x, tops, lefts, strict=True)])
    return _to_uint8(out)


def line_dropout(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Transmission-style damage: runs of image rows lost (black) or repeated from the row
    above, as a dropped or stalled line of a transmitted frame; every image gets at least one
    lost run (an undamaged "anomaly" would be a wrong label)."""
    share = (0.05, 0.10, 0.15, 0.25, 0.35)[severity - 1]  # expected share of damaged rows
    out = images.copy()
    n, h = images.shape[:2]
    for i in range(n):
        row = 0
        while row < h:
            if rng.random() < share / 2:
                length = int(rng.integers(1, 4))
                lost = slice(row, min(h, row + length))
                out[i, lost] = 0 if rng.random() < 0.5 or row == 0 else out[i, row - 1]
                row += length
            else:
                row += 1
        if (out[i] == images[i]).all():  # every image is damaged: at least one lost run
            top = int(rng.integers(0, h))
            out[i, top:top + int(rng.integers(1, 4))] = 0
    return out


UPLOAD_CORRUPTIONS = ("gaussian_noise", "jpeg", "blur", "rotation", "crop", "line_dropout")


def mixed_uploads(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Corrupted uploads: each image gets one corruption of ``UPLOAD_CORRUPTIONS`` at one
    severity 1-5, both drawn per image (seeded; ``severity`` unused)."""
    kinds = rng.integers(0, len(UPLOAD_CORRUPTIONS), len(images))
    levels = rng.integers(1, 6, len(images))
    out = np.empty_like(images)
    for k, name in enumerate(UPLOAD_CORRUPTIONS):
        for level in SEVERITY:
            rows = np.flatnonzero((kinds == k) & (levels == level))
            if len(rows):
                out[rows] = SHIFTS[name](images[rows], level, rng)
    return out


def uniform_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pure noise images of the same shape (severity unused)."""
    return rng.integers(0, 256, images.shape, dtype=np.uint8)


def gaussian_noise_images(images: np.ndarray, severity: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Pure Gaussian noise around mid-grey (severity unused)."""
    return (np.clip(rng.normal(0.5, 0.25, images.shape), 0, 1) * 255).round().astype(np.uint8)


def invert(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Negative images (255 - x): deterministic (severity unused)."""
    return (255 - images).astype(np.uint8)


def rotate90(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Every image turned 90 degrees counter-clockwise: deterministic (severity unused)."""
    return np.ascontiguousarray(np.rot90(images, k=1, axes=(1, 2)))


def rotate180(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Every image turned upside down: deterministic (severity unused)."""
    return np.ascontiguousarray(np.rot90(images, k=2, axes=(1, 2)))


SHIFTS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "blur": blur,
    "jpeg": jpeg,
    "rotation": rotation,
    "crop": crop,
    "line_dropout": line_dropout,
    "mixed_uploads": mixed_uploads,
    "uniform_noise": uniform_noise,
    "gaussian_noise_images": gaussian_noise_images,
    "invert": invert,
    "rotate90": rotate90,
    "rotate180": rotate180,
}


def shifted(data: ImageSet, kind: str, severity: int = 3, seed: int = 0) -> ImageSet:
    """``data`` under shift ``kind`` at ``severity``; labels kept (ID classes, shifted inputs)."""
    if kind not in SHIFTS:
        raise DataError(f"unknown shift {kind!r}; valid: {', '.join(SHIFTS)}")
    if severity not in SEVERITY:
        raise DataError(f"shift severity must be one of {SEVERITY}, got {severity}")
    rng = np.random.default_rng([seed, severity, sum(map(ord, kind))])
    images = SHIFTS[kind](data.images, severity, rng)
    what = kind if kind in DETERMINISTIC else f"{kind}|{severity}|{seed}"
    ident = hashlib.sha256(f"{data.content_hash}|{what}".encode()).hexdigest()
    level = "" if kind in DETERMINISTIC else str(severity)
    return ImageSet(name=f"{data.name}-{kind}{level}", split=data.split, images=images,
                    labels=data.labels.copy(),
                    source=f"{data.source} + shift {kind}" + (f"@{level}" if level else ""),
                    origin=data.origin, _hash=ident)


def grayscale(data: ImageSet) -> ImageSet:
    """``data`` as one-channel luma (ITU-R 601, as PIL's "L"): the uploads of the anomaly
    track are grayscale. Labels kept; the identity records the conversion."""
    images = np.asarray(data.images)
    if images.shape[-1] == 1:
        return data
    luma = np.rint(images[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114],
                                                                  np.float32))
    ident = hashlib.sha256(f"{data.content_hash}|grayscale".encode()).hexdigest()
    return ImageSet(name=data.name, split=data.split,
                    images=np.clip(luma, 0, 255).astype(np.uint8)[..., None],
                    labels=data.labels.copy(), source=f"{data.source} + grayscale",
                    origin=data.origin, _hash=ident)
