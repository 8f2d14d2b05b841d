"""MVTec-AD as a user with internet gets it: pytorch-ood's MVTechAD downloads the archive
(here from a file server on loopback), the harness reads a category's MVTec layout (label 0 =
good, defects after it) and the anomaly pair holds defect-free images as normal and defective
ones as anomalies, with validation defects removed from the test pool. A small synthetic tree
in MVTec's layout stands in for the 4.9 GB archive."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.pipeline import data
from benchmark.pipeline.errors import DataError
from tests.commands import ood_bench
from tests.pipeline.test_downloads import server  # noqa: F401 - the loopback file server

COUNTS = {("train", "good"): 60, ("test", "good"): 15, ("test", "crack"): 15,
          ("test", "broken_large"): 15}


def _image(rng: np.random.Generator, defect: bool) -> np.ndarray:
    """A smooth grey 'bottle' (a radial gradient with noise); defects add a bright blotch."""
    yy, xx = np.mgrid[:96, :96]
    base = 120 + 60 * np.cos(np.hypot(yy - 48, xx - 48) / 12) + rng.normal(0, 4, (96, 96))
    if defect:
        y, x = rng.integers(10, 70, 2)
        base[y:y + 22, x:x + 22] = 255
    return np.clip(np.repeat(base[..., None], 3, 2), 0, 255).astype(np.uint8)


def mvtec_tree(where: Path, category: str = "bottle") -> Path:
    rng = np.random.default_rng(0)
    for (split, kind), n in COUNTS.items():
        folder = where / category / split / kind
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_image(rng, kind != "good")).save(folder / f"{i:03d}.png")
    return where


def test_the_reader_puts_good_first_and_defects_after_it(tmp_path) -> None:
    mvtec_tree(tmp_path / "mvtech-ad")
    test = data.load("mvtec_ad", "bottle_test", tmp_path)
    assert test.images.shape == (45, 64, 64, 3)  # resized and centre-cropped to 64
    # good = 0, then the defect kinds sorted: broken_large = 1, crack = 2
    assert np.bincount(test.labels).tolist() == [15, 15, 15]
    train = data.load("mvtec_ad", "bottle_train", tmp_path)
    assert set(train.labels.tolist()) == {0}


def test_a_folder_without_good_is_not_mvtec(tmp_path) -> None:
    (tmp_path / "mvtech-ad" / "bottle" / "test" / "crack").mkdir(parents=True)
    with pytest.raises(DataError, match="no good/ sub-folder"):
        data.load("mvtec_ad", "bottle_test", tmp_path)


def test_mvtec_downloads_through_pytorch_ood(server, tmp_path, monkeypatch) -> None:  # noqa: F811
    from pytorch_ood.dataset.img import MVTechAD

    served, base = server
    tree = mvtec_tree(tmp_path / "tree")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tf:
        tf.add(tree / "bottle", arcname="bottle")
    (served / MVTechAD.filename).write_bytes(buf.getvalue())
    monkeypatch.setattr(MVTechAD, "url", f"{base}/{MVTechAD.filename}")
    got = data.load("mvtec_ad", "bottle_test", roots=[], download=True,
                    download_dir=tmp_path / "dl")
    assert len(got) == 45 and got.labels.max() == 2
    assert (tmp_path / "dl" / "mvtech-ad" / "bottle" / "train" / "good").is_dir()


def test_offline_without_the_files_says_what_to_do(tmp_path) -> None:
    with pytest.raises(DataError, match="not found.*data=download"):
        data.load("mvtec_ad", "bottle_train", roots=[tmp_path], download_dir=tmp_path / "dl")


def test_the_mvtec_pair_end_to_end(tmp_path) -> None:
    mvtec_tree(tmp_path / "data" / "mvtech-ad")
    out = tmp_path / "run"
    proc = ood_bench(["pair=mvtec_ad", "backbone=resnet20_tin", "detector=anomaly/ocsvm",
                      "bootstrap.resamples=50", "store=null", f"hydra.run.dir={out}"],
                     tmp_path / "cache", tmp_path / "data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sets = json.loads((out / "manifest.json").read_text())["datasets"]
    # 60 good training images: 10 validation, 20 calibration, 30 to fit on; of the 30 test
    # defects, 10 are validation anomalies and the other 20 stay in the test set
    assert sets["fit"]["n"] == 30 and sets["validation"]["n"] == 10
    assert sets["validation_ood"]["n"] == 10 and sets["ood/defects"]["n"] == 20
    assert sets["id_test"]["n"] == 15
    row = pd.read_csv(out / "metrics.csv").iloc[0]
    assert row.status == "ok" and row.auroc > 0.8  # a bright blotch is easy to see
