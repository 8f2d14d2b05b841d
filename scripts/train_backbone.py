"""Train (or resume training) a backbone into the cache, with per-epoch logs; no detectors.

    python scripts/train_backbone.py pair=cifar10 backbone=resnet20

Takes the same Hydra overrides as ``ood-bench``; the checkpoint lands where ``ood-bench`` looks
for it, so a later benchmark run reuses it. Interrupted runs continue from the last epoch.

    python scripts/train_backbone.py pair=cifar10 backbone=resnet20 \
        --export results/checkpoints/resnet20_cifar10.pt

also copies the checkpoint out of the cache with a sidecar ``.json`` (sha256, ID test accuracy,
recipe, this command), so it can be committed and used with ``backbone.checkpoint=<path>``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmark import compute
from benchmark.config_groups import CONFIG_DIR, check_overrides
from benchmark.pipeline.backbones import Recipe, get_backbone, training_record
from benchmark.pipeline.data import batches
from benchmark.pipeline.training_rows import rows_record
from benchmark.runner.prepare import (
    backbone_spec,
    cache_root,
    input_transform,
    load_sets,
    resolve_device,
    split_record,
)


def main(args: list[str]) -> None:
    export = None
    if "--export" in args:
        i = args.index("--export")
        export = Path(args[i + 1])
        args = args[:i] + args[i + 2:]
    overrides = args
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    problem = check_overrides(overrides)
    if problem:
        sys.exit(problem)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "~detector"])
    sets, _, _ = load_sets(cfg)
    transform = input_transform(cfg)
    t0 = time.perf_counter()
    with compute.pinned(compute.ComputeSettings.from_config(cfg)):
        _train_and_export(cfg, sets, transform, overrides, export, t0)


def _train_and_export(cfg, sets, transform, overrides, export, t0) -> None:
    bb = cfg.backbone
    spec = backbone_spec(cfg)
    backbone = get_backbone(spec, {}, Recipe(**bb.recipe), sets["train"], transform,
                            cache_root(cfg), resolve_device(cfg.device), bb.checkpoint,
                            split=split_record(cfg))
    import torch

    # a dataset with one split (Tiny ImageNet here) trains on it less the calibration block:
    # its accuracy is measured on that held-out block, never on training images
    held_out = cfg.pair.id.train_split == cfg.pair.id.test_split
    measured = "calibration" if held_out else "id_test"
    correct = 0
    with torch.no_grad():
        for x, y in batches(sets[measured], transform, 512):
            correct += (backbone.model(x.to(backbone.model.fc.weight.device)).argmax(1).cpu()
                        == y).sum().item()
    acc = correct / len(sets[measured])
    print(f"{bb.name}: checkpoint {backbone.checkpoint}\n  sha256 {backbone.sha256}\n"
          f"  accuracy on {measured} ({len(sets[measured])} images) {acc:.4f}; "
          f"trained now: {backbone.trained_now} "
          f"({time.perf_counter() - t0:.0f} s)")
    if export is not None:
        export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(backbone.checkpoint, export)
        command = "python scripts/train_backbone.py " + " ".join(
            [*overrides, "--export", str(export)])
        info = {"architecture": spec.key_arch, "params": spec.params,
                "recipe": OmegaConf.to_container(bb.recipe), "sha256": backbone.sha256,
                "parameters": sum(p.numel() for p in backbone.model.parameters()),
                "bytes": export.stat().st_size, "id_dataset": cfg.pair.id.dataset,
                "id_test_accuracy": acc, "n_train": len(sets["train"]),
                "n_id_test": len(sets[measured]),
                **({"accuracy_measured_on": "the held-out calibration block of the training "
                    "split (the dataset has one split)"} if held_out else {}),
                "compute": (training_record(backbone.checkpoint, backbone.sha256)
                            or {}).get("compute"),
                # the rows it was trained on: runs that hold any of them out are refused
                **({} if bb.checkpoint else
                   {"train_rows": rows_record(sets["train"], split_record(cfg))}),
                "command": command,
                "use": f"ood-bench {' '.join(overrides)} backbone.checkpoint={export}"}
        export.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"exported to {export} (+ {export.with_suffix('.json').name})")


if __name__ == "__main__":
    main(sys.argv[1:])
