"""Add the training-rows record to the JSON of a checkpoint exported before records existed.

    python scripts/record_training_rows.py results/checkpoints/resnet20_cifar10.json

Reads the overrides of the JSON's ``command`` (``scripts/train_backbone.py ...``), draws the ID
training split those overrides give (the split is a pure function of them; the checkpoint's cache
key included the training rows' hash) and writes its ``train_rows`` into the JSON, so that a run
holding any of those images out for calibration or testing is refused.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from benchmark.config_groups import CONFIG_DIR
from benchmark.pipeline.training_rows import rows_record
from benchmark.runner.prepare import load_sets, split_record


def overrides_of(command: str) -> list[str]:
    words = shlex.split(command)
    start = next(i for i, w in enumerate(words) if w.endswith("train_backbone.py")) + 1
    out, skip = [], False
    for w in words[start:]:
        if skip or w == "--export":
            skip = not skip
            continue
        out.append(w)
    return out


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        info = json.loads(path.read_text())
        overrides = overrides_of(info["command"])
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, "~detector"])
        sets, _, _ = load_sets(cfg)
        if len(sets["train"]) != info.get("n_train"):
            sys.exit(f"{path}: the overrides give {len(sets['train'])} training images, the "
                     f"record says {info.get('n_train')}; not writing")
        info["train_rows"] = rows_record(sets["train"], split_record(cfg))
        path.write_text(json.dumps(info, indent=2) + "\n")
        print(f"{path}: {info['train_rows']['count']} training rows recorded "
              f"(indices sha256 {info['train_rows']['indices_sha256'][:12]})")


if __name__ == "__main__":
    main(sys.argv[1:])
