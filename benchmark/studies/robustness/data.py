"""The data the robustness probes score: a run's own splits, small, plus odd inputs.

The run's resolved config is reused with small evaluation sets, ``prepare`` gives the same data
and the same cached backbone, and the odd inputs (NaN/inf pixels, constant images) go through
the real extraction into a throwaway cache.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmark.paths import in_repo
from benchmark.pipeline import data as data_mod
from benchmark.pipeline.features import extract
from benchmark.representations import InputBatches, Representations
from benchmark.results import OOD_PREFIX, Run
from benchmark.runner.evaluate import needs_feature_maps
from benchmark.runner.prepare import Prepared, input_batches, prepare


@dataclass(frozen=True)
class ProbeSettings:
    """Sizes and tolerances of the probes (small, so the study stays cheap)."""

    n_id: int = 500
    n_ood: int = 500
    fit_cap: int = 2000
    tiny_per_class: int = 10
    missing_class: int = 0
    n_perturbed: int = 60
    n_constant_each: int = 10
    batch_sizes: tuple[int, int] = (128, 37)
    rtol: float = 1e-5
    seed: int = 0


def tensor_inputs(x: torch.Tensor, y: torch.Tensor, batch_size: int
                  ) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """Model-ready batches of already transformed tensors."""
    def gen() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]

    return gen


class PerturbedTransform:
    """The backbone's transform, then 10 % of each image's pixels set to NaN, +inf or -inf.

    Which value and which pixels depend only on the image's bytes, so every batching of the
    same images gets the same inputs.
    """

    VALUES = (float("nan"), float("inf"), float("-inf"))

    def __init__(self, base: data_mod.InputTransform, fraction: float = 0.1) -> None:
        self.base = base
        self.fraction = fraction

    def describe(self) -> dict:
        return {**self.base.describe(), "perturb": f"nan/inf {self.fraction}"}

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        x = self.base(images).clone()
        for i, img in enumerate(images):
            code = zlib.crc32(np.ascontiguousarray(img).tobytes())
            rng = np.random.default_rng(code)
            mask = torch.from_numpy(rng.random(tuple(x[i].shape)) < self.fraction)
            x[i][mask] = self.VALUES[code % 3]
        return x


def run_config(run: Run, settings: ProbeSettings) -> DictConfig:
    """The run's resolved config with small evaluation sets and no score cache."""
    cfg = OmegaConf.create(copy.deepcopy(run.config))
    OmegaConf.set_struct(cfg, False)
    cfg.data.max_id_test = settings.n_id
    cfg.data.max_ood = settings.n_ood
    cfg.cache_scores = False
    if cfg.data.get("root"):  # the run was started from the repository root
        cfg.data.root = in_repo(str(cfg.data.root))
    return cfg


@dataclass
class ProbeData:
    """Every split the probes score, with model-ready inputs attached."""

    fit: Representations
    mixed: Representations  # ID test subset then OOD subset
    mixed_x: torch.Tensor
    mixed_y: torch.Tensor
    n_id: int
    ood_name: str
    nan: Representations
    constant: Representations
    prep: Prepared  # backbone, device, transform: what the runner hands detectors

    def mixed_split(self, batch_size: int, perm: np.ndarray | None = None) -> Representations:
        """ID test then OOD rows (optionally permuted), batched by ``batch_size``."""
        reps = self.mixed if perm is None else self.mixed.subset(perm)
        x, y = (self.mixed_x, self.mixed_y) if perm is None else (self.mixed_x[perm],
                                                                  self.mixed_y[perm])
        reps.inputs = tensor_inputs(x, y, batch_size)
        return reps


def _with_inputs(reps: Representations, inputs: InputBatches) -> Representations:
    reps.inputs = inputs
    return reps


def build_probe_data(cfg: DictConfig, specs: dict[str, dict[str, Any]], settings: ProbeSettings,
                     tmp_cache: Path) -> ProbeData:
    need_maps = needs_feature_maps(specs)
    prep = prepare(cfg, need_maps)
    bs = settings.batch_sizes[0]
    rng = np.random.default_rng(settings.seed)
    fit_all = prep.reps["fit"]
    n_fit = min(settings.fit_cap, len(fit_all))
    fit_idx = np.sort(rng.choice(len(fit_all), size=n_fit, replace=False))
    fit_set = prep.sets["fit"].take(fit_idx, split="fit")
    fit = _with_inputs(fit_all.subset(fit_idx), input_batches(fit_set, prep.transform, bs))
    id_reps, id_set = prep.reps["id_test"], prep.sets["id_test"]
    ood_key = prep.ood_keys[0]
    ood_reps, ood_set = prep.reps[ood_key], prep.sets[ood_key]
    mixed = id_reps.concat(ood_reps)
    mixed_x = torch.cat([prep.transform(id_set.images), prep.transform(ood_set.images)])
    mixed_y = torch.from_numpy(np.concatenate([id_set.labels, ood_set.labels]))
    n_bad = min(settings.n_perturbed, len(id_set))
    bad_set = id_set.take(np.arange(n_bad), split="probe-nan")
    bad_tf = PerturbedTransform(prep.transform)
    nan_reps, _ = extract(prep.backbone.model, bad_set, bad_tf, prep.backbone.sha256, tmp_cache,
                          prep.device, bs, with_maps=need_maps)
    nan_reps = _with_inputs(nan_reps, input_batches(bad_set, bad_tf, bs))
    shape = id_set.images.shape[1:]
    k = settings.n_constant_each
    const_images = np.concatenate([np.full((k, *shape), v, np.uint8) for v in (0, 128, 255)])
    const_set = data_mod.ImageSet("constant", "probe", const_images,
                                  np.zeros(len(const_images), np.int64), "generated")
    const_reps, _ = extract(prep.backbone.model, const_set, prep.transform,
                            prep.backbone.sha256, tmp_cache, prep.device, bs,
                            with_maps=need_maps)
    const_reps = _with_inputs(const_reps, input_batches(const_set, prep.transform, bs))
    return ProbeData(fit=fit, mixed=mixed, mixed_x=mixed_x, mixed_y=mixed_y,
                     n_id=len(id_reps), ood_name=ood_key.removeprefix(OOD_PREFIX),
                     nan=nan_reps, constant=const_reps, prep=prep)
