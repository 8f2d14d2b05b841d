"""Postprocessor configs from the repository's YAML, and the ID-dataset bookkeeping OpenOOD wants.

``adapters/openood/postprocessor_configs/<name>.yml`` holds the values of OpenOOD's own
``configs/postprocessors/<name>.yml`` at the pinned commit (the ``postprocessor`` section:
``name``, ``APS_mode``, ``postprocessor_args``, ``postprocessor_sweep``). OpenOOD's evaluation
API would download a missing file from GitHub; here a missing file is an error.

Several postprocessors look up ``num_classes_dict[config.dataset.name]`` (MDS, RMDS, KLM, SHE,
Gram, MDS ensemble, OpenMax, GradNorm) and ODIN looks up the input std in
``normalization_dict``; both dicts only know cifar10/cifar100/imagenet200/imagenet.
:func:`registered_dataset` adds the harness's ID dataset to them while a postprocessor is being
constructed (those lookups happen in ``__init__``) and removes it afterwards, so the real
dataset name and class count are used for any ID dataset.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from adapters.openood.compat import ensure_importable

CONFIG_DIR = Path(__file__).resolve().parent / "postprocessor_configs"  # package data


def config_path(name: str, config_dir: Path | None = None) -> Path:
    return (config_dir or CONFIG_DIR) / f"{name}.yml"


def load_postprocessor_section(name: str, config_dir: Path | None = None) -> dict[str, Any]:
    """The ``postprocessor`` section of ``<name>.yml`` (``postprocessor_args`` always a dict)."""
    path = config_path(name, config_dir)
    if not path.exists():
        raise FileNotFoundError(f"no OpenOOD postprocessor config {path}")
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    section = dict(raw.get("postprocessor") or {})
    if not section.get("name"):
        raise ValueError(f"{path}: missing postprocessor.name")
    section["postprocessor_args"] = dict(section.get("postprocessor_args") or {})
    section["postprocessor_sweep"] = dict(section.get("postprocessor_sweep") or {})
    section.setdefault("APS_mode", False)
    return section


def build_config(section: Mapping[str, Any], args: Mapping[str, Any], dataset: str,
                 num_classes: int) -> Any:
    """An ``openood.utils.Config`` (attribute dict) with the keys postprocessors read."""
    ensure_importable()
    from openood.utils import Config

    post = copy.deepcopy(dict(section))
    post["postprocessor_args"] = {**post["postprocessor_args"], **copy.deepcopy(dict(args))}
    # hyper-parameter search needs OOD validation data; the harness never runs it
    post["APS_mode"] = False
    return Config({
        "postprocessor": post,
        "dataset": {"name": dataset, "num_classes": int(num_classes)},
        "num_gpus": 1,
        "num_workers": 0,
    })


def dataset_key(name: str, num_classes: int) -> str:
    """The ``dataset.name`` to use: the ID name itself unless OpenOOD knows it with another
    class count (e.g. a 10-class subset called 'cifar100')."""
    ensure_importable()
    from openood.postprocessors.info import num_classes_dict

    name = (name or "id").lower()
    known = num_classes_dict.get(name)
    if known is None or known == num_classes:
        return name
    return f"{name}@{num_classes}classes"


@contextmanager
def registered_dataset(name: str, num_classes: int,
                       input_std: list[float] | None = None) -> Iterator[None]:
    """Temporarily teach OpenOOD's lookup tables the ID dataset ``name``."""
    ensure_importable()
    from openood.postprocessors.info import num_classes_dict
    from openood.preprocessors.transform import normalization_dict

    added: list[tuple[dict, str, Any]] = []

    def put(table: dict, key: str, value: Any) -> None:
        added.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    try:
        if num_classes_dict.get(name) != num_classes:
            put(num_classes_dict, name, int(num_classes))
        if input_std is not None:
            std = [float(s) for s in input_std]
            std = (std * 3)[:3] if len(std) < 3 else std
            put(normalization_dict, name, [[0.0] * len(std), std])
        yield
    finally:
        for table, key, old in reversed(added):
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old


_MISSING = object()
