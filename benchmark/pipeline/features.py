"""One forward pass per (backbone, split): logits, penultimate features, per-layer statistics.

Results are cached on disk under a content key (checkpoint sha256 + data hash + transform +
extraction settings), written atomically with a checksum, and reused by every detector and run.
Feature maps are large, so they are stored in a separate file and only extracted on request
(from the same forward pass as everything else).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.atomic import load_npz, save_npz
from benchmark.locks import entry_lock
from benchmark.pipeline.data import ImageSet, InputTransform, batches
from benchmark.pipeline.wrapper import ClassifierNetwork, wrap
from benchmark.representations import Representations

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REDUCTIONS = ("max", "mean")


def representation_key(checkpoint_sha: str, data: ImageSet, transform: InputTransform,
                       network: dict | None = None) -> str:
    """The cache key of one forward pass; ``network`` is what the wrapper found in a model that
    did not name its own layers (then the chosen layers are part of what was computed)."""
    ident = {
        "checkpoint": checkpoint_sha,
        "data": data.content_hash,
        "transform": transform.describe(),
        "reductions": REDUCTIONS,
        "format": FORMAT_VERSION,
    }
    if network is not None:
        ident["network"] = network
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


@torch.no_grad()
def _forward(model: ClassifierNetwork, data: ImageSet, transform: InputTransform,
             device: torch.device, batch_size: int, with_maps: bool, desc: str
             ) -> dict[str, np.ndarray]:
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach()))
        for name, module in model.monitored_layers().items()
    ]
    parts: dict[str, list[np.ndarray]] = {}

    def keep(name: str, t: torch.Tensor) -> None:
        parts.setdefault(name, []).append(t.float().cpu().numpy())

    model.eval()
    try:
        n_batches = (len(data) + batch_size - 1) // batch_size
        for x, _ in tqdm(batches(data, transform, batch_size), total=n_batches, desc=desc,
                         leave=False, mininterval=2):
            x = x.to(device)
            _, feats, maps = model.forward_all(x, with_maps=with_maps)  # one pass, all of it
            if with_maps:
                keep("feature_maps", maps)
            keep("logits", model.forward_head(feats))
            keep("features", feats)
            for name, act in captured.items():
                flat = act.flatten(2) if act.dim() > 2 else act.unsqueeze(-1)
                keep(f"stats/{name}/max", flat.amax(-1))
                keep(f"stats/{name}/mean", flat.mean(-1))
            captured.clear()
    finally:
        for h in hooks:
            h.remove()
    return {k: np.concatenate(v) for k, v in parts.items()}


def extract(
    model: nn.Module,
    data: ImageSet,
    transform: InputTransform,
    checkpoint_sha: str,
    cache_dir: Path,
    device: torch.device,
    batch_size: int = 512,
    with_maps: bool = False,
) -> tuple[Representations, bool]:
    """Representations of ``data`` and whether they came from the cache. Feature maps are
    extracted only when asked for and the model has them (else ``feature_maps`` stays None)."""
    if not isinstance(model, ClassifierNetwork):
        model = wrap(model, (transform.channels, transform.size, transform.size))
    named = model.layers_from_hint
    key = representation_key(checkpoint_sha, data, transform,
                             None if named else model.describe())
    with_maps = with_maps and model.has_feature_maps
    folder = cache_dir / "representations"
    folder.mkdir(parents=True, exist_ok=True)
    core_path = folder / f"{key}.npz"
    maps_path = folder / f"{key}.maps.npz"
    core, maps = _cached(core_path, maps_path, with_maps)
    hit = core is not None and maps is not None
    if not hit:
        with entry_lock(core_path, f"the representations of {data.name}/{data.split}"):
            core, maps = _cached(core_path, maps_path, with_maps)  # another job's, meanwhile
            hit = core is not None and maps is not None
            if not hit:
                core, maps = _compute(model, data, transform, device, batch_size, with_maps,
                                      core_path, maps_path)
    reps = _representations(core, maps.get("feature_maps") if with_maps else None, key,
                            f"{data.name}/{data.split}")
    return reps, hit


def forward_pass(model: ClassifierNetwork, data: ImageSet, transform: InputTransform,
                 device: torch.device, batch_size: int = 512, with_maps: bool = False
                 ) -> Representations:
    """One forward pass over ``data``, cached nowhere: what each call of a library's own
    ``fit(loader)`` / ``predict(x)`` costs (``scripts/bench_sweep.py`` measures it)."""
    arrays, fmap = _pass(model, data, transform, device, batch_size, with_maps, "forward")
    return _representations(arrays, fmap, "", f"{data.name}/{data.split}")


def _pass(model: ClassifierNetwork, data: ImageSet, transform: InputTransform,
          device: torch.device, batch_size: int, with_maps: bool, verb: str
          ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The core arrays of one forward pass (labels included) and the feature maps apart."""
    arrays = _forward(model, data, transform, device, batch_size, with_maps,
                      desc=f"{verb} {data.name}/{data.split}")
    fmap = arrays.pop("feature_maps", None)
    arrays["labels"] = data.labels
    return arrays, fmap


def _representations(core: dict[str, np.ndarray], maps: np.ndarray | None, key: str,
                     name: str) -> Representations:
    stats: dict[str, dict[str, np.ndarray]] = {}
    for array_name, arr in core.items():
        if array_name.startswith("stats/"):
            _, layer, red = array_name.split("/")
            stats.setdefault(layer, {})[red] = arr
    return Representations(logits=core["logits"], features=core["features"],
                           labels=core["labels"], layer_stats=stats, feature_maps=maps,
                           key=key, name=name)


def _cached(core_path: Path, maps_path: Path, with_maps: bool
            ) -> tuple[dict[str, np.ndarray] | None, dict[str, np.ndarray] | None]:
    return load_npz(core_path), (load_npz(maps_path) if with_maps else {})


def _compute(model: ClassifierNetwork, data: ImageSet, transform: InputTransform,
             device: torch.device, batch_size: int, with_maps: bool, core_path: Path,
             maps_path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One forward pass over ``data``, written to the cache (core arrays, feature maps apart)."""
    arrays, fmap = _pass(model, data, transform, device, batch_size, with_maps, "extract")
    save_npz(core_path, arrays)
    maps: dict[str, np.ndarray] = {}
    if with_maps:
        save_npz(maps_path, {"feature_maps": fmap})
        maps = {"feature_maps": fmap}
    return arrays, maps
