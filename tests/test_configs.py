"""The CIFAR-10 pairs are grouped like OpenOOD v1.5, with covariate shifts in their own group."""

from __future__ import annotations

import yaml

from benchmark.config_groups import CONFIG_DIR
from benchmark.pipeline.data import DATASETS
from benchmark.pipeline.shifts import SHIFTS


def _pair(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / "pair" / f"{name}.yaml").read_text())


def _groups(pair: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, spec in pair["ood"].items():
        out.setdefault(spec["group"], set()).add(name)
    return out


def test_cifar10_groups_follow_openood_v15() -> None:
    groups = _groups(_pair("cifar10"))
    assert groups["near"] == {"cifar100", "tinyimagenet"}
    assert groups["far"] == {"mnist", "svhn", "dtd", "places365"}
    assert groups["covariate"] == {"noise", "blur", "jpeg", "rotation", "crop"}
    assert groups["synthetic"] == {"uniform_noise"}


def test_openood_pair_is_exactly_the_leaderboard_sets() -> None:
    full, openood = _pair("cifar10"), _pair("cifar10_openood")
    semantic = {k: v for k, v in full["ood"].items() if v["group"] in ("near", "far")}
    assert openood["ood"] == semantic


def test_every_pair_names_known_datasets_splits_and_shifts() -> None:
    for path in (CONFIG_DIR / "pair").glob("*.yaml"):
        pair = yaml.safe_load(path.read_text())
        for name, spec in [("id", pair["id"]), *pair["ood"].items()]:
            assert spec["dataset"] in DATASETS, (path.name, name)
            for split in (spec.get("split"), spec.get("test_split"), spec.get("train_split")):
                assert split is None or split in DATASETS[spec["dataset"]].splits, (path.name, name)
            if "shift" in spec:
                assert spec["shift"]["kind"] in SHIFTS, (path.name, name)
        downloads_only = [n for n, s in pair["ood"].items()
                          if s["dataset"] in ("cifar100", "svhn", "places365")]
        assert all(pair["ood"][n].get("optional") for n in downloads_only), path.name
