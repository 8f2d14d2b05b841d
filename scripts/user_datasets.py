"""Six OOD sets a user brings, against the default MNIST backbone, without touching the package.

Writes a user folder with the data and a config folder (``conf/pair/mnist_user.yaml`` and
``conf/dataset/*.yaml``), then prints (or runs, ``--run``) the command:

    ood-bench --config-dir <out>/conf pair=mnist_user

The sets: scikit-learn's digits (8x8, upsampled to 28x28), natural-image patches from
``skimage.data``, inverted MNIST and MNIST rotated 90 degrees (the built-in MNIST entry with a
deterministic shift), glyphs rendered with Pillow's font as an image folder (one sub-folder
per letter), and procedural pen scribbles as the user's own ``.npz`` (float32 in [0, 1],
declared with ``range``). Needs scikit-learn and scikit-image (``pip install -e '.[examples]'``).

Usage: python scripts/user_datasets.py [--out outputs/user_data] [--run] [ood-bench overrides]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

SIZE = 28
SKIMAGE_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "coins", "moon", "grass",
                  "gravel", "brick", "rocket", "hubble_deep_field", "immunohistochemistry",
                  "text", "page", "clock", "cell")


def digits_28(n_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (values 0..16) as 28x28 uint8, bilinear."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images[:n_max] / 16.0).float().unsqueeze(1)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return images, d.target[:n_max].astype(np.int64)


def skimage_patches(per_image: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 56x56 grayscale crops of ``skimage.data``'s bundled photos, halved to 28x28;
    the label is the source photo's index."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    patches, labels = [], []
    for label, name in enumerate(SKIMAGE_IMAGES):
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 3:
            img = np.asarray(Image.fromarray(img[..., :3]).convert("L"))
        h, w = img.shape
        for _ in range(per_image):
            top, left = rng.integers(0, h - 2 * SIZE), rng.integers(0, w - 2 * SIZE)
            crop = Image.fromarray(img[top:top + 2 * SIZE, left:left + 2 * SIZE])
            patches.append(np.asarray(crop.resize((SIZE, SIZE), Image.BILINEAR)))
            labels.append(label)
    return np.stack(patches)[..., None], np.asarray(labels, dtype=np.int64)


def glyph_folder(folder: Path, per_letter: int = 40, seed: int = 0) -> None:
    """Letters K-T drawn with Pillow's default font at random sizes and positions, one PNG per
    image, one sub-folder per letter."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    for letter in "KLMNOPQRST":
        (folder / letter).mkdir(parents=True, exist_ok=True)
        for i in range(per_letter):
            font = ImageFont.load_default(size=int(rng.integers(16, 26)))
            img = Image.new("L", (SIZE, SIZE), 0)
            xy = (int(rng.integers(2, 10)), int(rng.integers(-2, 6)))
            ImageDraw.Draw(img).text(xy, letter, fill=255, font=font)
            img.save(folder / letter / f"{letter}_{i:03d}.png")


def scribbles(n: int = 500, seed: int = 0) -> np.ndarray:
    """Random pen strokes (3-6 segments, soft edges), float32 in [0, 1]: N x 28 x 28."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    out = np.empty((n, SIZE, SIZE), np.float32)
    for i in range(n):
        img = Image.new("L", (SIZE, SIZE), 0)
        points = [tuple(int(v) for v in rng.integers(3, SIZE - 3, 2))
                  for _ in range(int(rng.integers(4, 8)))]
        ImageDraw.Draw(img).line(points, fill=255, width=int(rng.integers(2, 4)))
        out[i] = np.asarray(img.filter(ImageFilter.GaussianBlur(0.6)), np.float32) / 255
    return out


def write(out: Path) -> Path:
    """The six sets under ``out/data`` and their config under ``out/conf``; returns conf."""
    data, conf = out / "data", out / "conf"
    (conf / "dataset").mkdir(parents=True, exist_ok=True)
    (conf / "pair").mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    images, labels = digits_28()
    np.savez(data / "sklearn_digits_28.npz", images=images, labels=labels)
    images, labels = skimage_patches()
    np.savez(data / "skimage_patches_28.npz", images=images, labels=labels)
    glyph_folder(data / "glyphs")
    np.savez(data / "scribbles.npz", strokes=scribbles())
    entries = {
        "sklearn_digits": {"kind": "npz", "splits": {"test": str(data / "sklearn_digits_28.npz")},
                           "description": "scikit-learn load_digits, 8x8 -> 28x28 bilinear"},
        "skimage_patches": {"kind": "npz",
                            "splits": {"test": str(data / "skimage_patches_28.npz")},
                            "description": "56x56 crops of skimage.data photos -> 28x28"},
        "glyphs": {"kind": "image_folder", "channels": 1,
                   "splits": {"test": str(data / "glyphs")},
                   "description": "letters K-T in Pillow's default font, one folder each"},
        "scribbles": {"kind": "npz", "images_key": "strokes", "labels_key": None,
                      "layout": "NHW", "range": [0, 1],
                      "splits": {"test": str(data / "scribbles.npz")},
                      "description": "procedural pen strokes, float32 in [0, 1]"},
    }
    for name, body in entries.items():
        (conf / "dataset" / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    pair = {
        "name": "mnist_user",
        "id": {"dataset": "mnist", "train_split": "train", "test_split": "test"},
        "ood": {
            "sklearn_digits": {"dataset": "sklearn_digits", "group": "near"},
            "inverted_mnist": {"dataset": "mnist", "split": "test", "group": "covariate",
                               "shift": {"kind": "invert"}},
            "mnist_rot90": {"dataset": "mnist", "split": "test", "group": "covariate",
                            "shift": {"kind": "rotate90"}},
            "glyphs": {"dataset": "glyphs", "group": "near"},
            "scribbles": {"dataset": "scribbles", "group": "far"},
            "skimage_patches": {"dataset": "skimage_patches", "group": "far"},
        },
    }
    (conf / "pair" / "mnist_user.yaml").write_text(yaml.safe_dump(pair, sort_keys=False))
    return conf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/user_data"))
    parser.add_argument("--run", action="store_true", help="run ood-bench on them")
    args, overrides = parser.parse_known_args()
    conf = write(args.out.absolute())
    command = [sys.executable, "-m", "benchmark.cli", "--config-dir", str(conf),
               "pair=mnist_user", *overrides]
    print("ood-bench --config-dir", conf, "pair=mnist_user", *overrides)
    if args.run:
        raise SystemExit(subprocess.call(command))


if __name__ == "__main__":
    main()
