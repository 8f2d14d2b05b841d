"""Done-when of "bring your own data": six OOD sets from a user config folder run against the
default MNIST backbone, without touching the package, with their true names and sources."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.commands import SMALL, run_module
from tests.conftest import REPO, unavailable

SETS = {"sklearn_digits", "inverted_mnist", "mnist_rot90", "glyphs", "scribbles",
        "skimage_patches"}


def test_six_user_sets_run_from_a_user_config_folder(root, tmp_path) -> None:
    try:
        import skimage  # noqa: F401
    except ImportError:
        unavailable("examples", "scikit-image not installed (pip install -e '.[examples]')")
    run = tmp_path / "run"
    proc = run_module("scripts.user_datasets", [
        "--out", str(tmp_path / "user"), "--run", *SMALL, "detector=pytorch_ood/msp",
        "analysis.inhouse=false", f"hydra.run.dir={run}"], tmp_path / "cache", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(run / "metrics.csv")
    assert set(frame.ood_dataset) == SETS and (frame.status == "ok").all()
    datasets = json.loads((run / "manifest.json").read_text())["datasets"]
    conf = tmp_path / "user" / "conf" / "dataset"
    assert datasets["ood/glyphs"]["dataset"] == "glyphs"
    assert datasets["ood/glyphs"]["source"] == f"image_folder:{tmp_path / 'user/data/glyphs'}"
    assert datasets["ood/glyphs"]["entry"] == str(conf / "glyphs.yaml")
    assert datasets["ood/scribbles"]["source"].startswith("npz:")
    assert datasets["ood/inverted_mnist"]["dataset"] == "mnist-invert"
    assert datasets["ood/inverted_mnist"]["source"].endswith("+ shift invert")
    assert not (REPO / "configs" / "dataset" / "glyphs.yaml").exists()
    # the model is the same on every set, so the inverted/rotated sets differ from ID only by
    # their pixels: MSP must see something (a constant detector would be 0.5)
    auroc = frame.set_index("ood_dataset").auroc
    assert auroc["inverted_mnist"] > 0.6 and auroc["mnist_rot90"] > 0.6, auroc.to_dict()
    with pytest.raises(KeyError):
        _ = datasets["ood/fashionmnist"]
