"""The CIFAR-10 pairs are grouped like OpenOOD v1.5, with covariate shifts in their own group."""

from __future__ import annotations

import yaml
from omegaconf import OmegaConf

from benchmark.config_groups import CONFIG_DIR
from benchmark.pipeline.catalog import entry_names, find_entry
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
    offline = {"mnist", "fashionmnist", "notmnist", "cifar10", "tinyimagenet", "dtd"}
    for path in (CONFIG_DIR / "pair").glob("*.yaml"):
        # resolved as the pair group sees it (e.g. mvtec_ad's "${pair.category}_test")
        pair = OmegaConf.to_container(OmegaConf.create({"pair": yaml.safe_load(
            path.read_text())}), resolve=True)["pair"]
        for name, spec in [("id", pair["id"]), *pair["ood"].items()]:
            assert spec["dataset"] in entry_names([CONFIG_DIR]), (path.name, name)
            splits = find_entry(spec["dataset"], [CONFIG_DIR]).splits
            for split in (spec.get("split"), spec.get("test_split"), spec.get("train_split")):
                assert split is None or split in splits, (path.name, name)
            if "shift" in spec:
                assert spec["shift"]["kind"] in SHIFTS, (path.name, name)
        downloads_only = [n for n, s in pair["ood"].items() if s["dataset"] not in offline]
        if pair["id"]["dataset"] in offline:  # else the whole pair needs its download
            assert all(pair["ood"][n].get("optional") for n in downloads_only), path.name


def test_every_dataset_entry_parses_and_every_download_is_checksummed() -> None:
    """Built-in entries are data like a user's; a `url` download without a checksum would let
    a changed or damaged file through."""
    for name in entry_names([CONFIG_DIR]):
        entry = find_entry(name, [CONFIG_DIR])
        assert entry.splits, name
        steps = entry.download if isinstance(entry.download, list) else [entry.download or {}]
        for item in [f for step in steps for f in step.get("files") or []]:
            assert item.get("md5") or item.get("sha256"), (name, item["url"])
