"""Which detectors run on which architecture families: every detector of every library, fitted
and scored once on each wrapped architecture of tests/adapters/test_architectures.py (briefly
trained on 2,000 CIFAR-10 images, fitted on 300, scored on 60 CIFAR-10 + 60 DTD images) plus a
torchvision DenseNet-121 (a functional pool). Writes results/architectures/coverage.{csv,md}.

    python scripts/architecture_coverage.py [--out results/architectures]

A cell is ``ok`` or the first words of the error; what the wrapper found for each model is listed
above the table. The numbers are not OOD results (tiny, weak backbones): only whether it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the models

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from adapters import registry  # noqa: E402
from adapters.checks import check_fit_then_score  # noqa: E402
from benchmark.atomic import atomic_path  # noqa: E402
from benchmark.pipeline.model_sources import ModelSpec  # noqa: E402
from benchmark.render import markdown_table  # noqa: E402
from tests.adapters.test_architectures import ARCHS, CHEAPER, build_archs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMMAND = "python scripts/architecture_coverage.py"
FAMILY = {"tv_resnet18": "CNN", "tv_mobilenet_v3_small": "CNN", "custom_tinycnn": "CNN (user)",
          "tv_densenet121": "CNN, functional pool", "vit": "transformer"}


def _cell(library: str, name: str, arch) -> str:
    params = CHEAPER.get((library, name), {})
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            check_fit_then_score(lambda: registry.build_detector(library, name, params),
                                 arch.contract)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the failure is the finding
        text = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:90]}"
        return text.replace("|", "/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "architectures")
    args = parser.parse_args()
    root = Path(os.environ.get("OOD_BENCH_DATA_ROOT", REPO.parent / "shared" / "data"))
    specs = {**ARCHS, "tv_densenet121": ModelSpec(arch="densenet121",
                                                  params={"num_classes": 10},
                                                  source="torchvision")}
    with tempfile.TemporaryDirectory() as cache:
        archs = build_archs(root, Path(cache), specs)
        rows = []
        cases = [(lib, n) for lib in registry.libraries() for n in registry.available(lib)]
        for lib, name in tqdm(cases, desc="detectors"):
            rows.append({"library": lib, "detector": name,
                         **{a: _cell(lib, name, arch) for a, arch in archs.items()}})
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "coverage.csv") as tmp:
        frame.to_csv(tmp, index=False)
    found = [(a, FAMILY[a], str(arch.network.describe()["model"]),
              str(arch.network.describe()["feature_maps"]),
              str(arch.network.describe()["maps_to_logits"]),
              "; ".join(arch.network.missing()) or "-") for a, arch in archs.items()]
    ok = {a: int((frame[a] == "ok").sum()) for a in archs}
    lines = [
        "# Which detectors run on which architecture", "",
        f"Command: `{COMMAND}`. {len(frame)} detectors x {len(archs)} architectures, each "
        "fitted and scored once (one finite score per row, the shared model untouched). "
        "Tiny briefly trained backbones: whether a detector runs, not how well.", "",
        "## What the wrapper found", "",
        markdown_table(["architecture", "family", "model", "feature maps", "maps -> logits",
                        "missing"], found), "",
        "## Detectors that run (ok) per architecture", "",
        markdown_table(["architecture", "ok", "of"],
                       [(a, str(ok[a]), str(len(frame))) for a in archs]), "",
        "## Every cell", "",
        markdown_table(["library", "detector", *archs],
                       frame.astype(str).values.tolist()), ""]
    with atomic_path(args.out / "coverage.md") as tmp:
        tmp.write_text("\n".join(lines))
    print(f"wrote {args.out / 'coverage.md'}")


if __name__ == "__main__":
    main()
