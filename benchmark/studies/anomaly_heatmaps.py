"""FCDD's explanations, written next to the tables of a run that includes it: a PNG grid of
the most and the least anomalous test images (ID test and every OOD set pooled) with their
heatmaps (the anomaly map upsampled through the receptive field, FCDD's own explanation)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.representations import Representations
from benchmark.results import ID_TEST, OOD_PREFIX
from benchmark.studies.pictures import show

TITLE = ("# Anomaly detectors: FCDD heatmaps\n\n"
         "Each heatmap is FCDD's anomaly map upsampled with a Gaussian over each output cell's "
         "receptive field (Liznerski et al., ICLR 2021); brighter = more anomalous, on one colour "
         "scale for the whole grid. Images are shown contrast-stretched per channel.\n\n")
PER_ROW = 8


def applies(spec: Mapping[str, Any]) -> bool:
    """Only FCDD explains itself."""
    return spec.get("name") == "FCDD"


def _test_rows(detector, reps: dict[str, Representations]
               ) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Every test input (ID test, then each OOD set), its score and its set's name."""
    xs, scores, names = [], [], []
    for key in [ID_TEST, *[k for k in reps if k.startswith(OOD_PREFIX)]]:
        if reps[key].inputs is None:
            continue
        xs.append(torch.cat([b.float() for b, _ in reps[key].inputs()]))
        scores.append(detector.score(reps[key], None))
        names += ["normal" if key == ID_TEST else key.removeprefix(OOD_PREFIX)] * len(xs[-1])
    return torch.cat(xs), np.concatenate(scores), names


def heatmap_grid(detector, reps: dict[str, Representations], path: Path) -> dict[str, Any]:
    """The PNG of the ``PER_ROW`` most and least anomalous test images, each above its heatmap,
    every heatmap on one colour scale (so a dark map is a low score, not a rescaled one);
    returns what it shows (scores and sets of the chosen rows)."""
    x, scores, names = _test_rows(detector, reps)
    order = np.argsort(-scores, kind="stable")
    picks = {"most anomalous": order[:PER_ROW], "least anomalous": order[::-1][:PER_ROW].copy()}
    maps = {title: np.asarray(detector.heatmaps(x[rows])) for title, rows in picks.items()}
    vmax = max(float(m.max()) for m in maps.values()) or 1.0
    fig = Figure(figsize=(PER_ROW * 1.3 + 0.8, 4 * 1.6), layout="constrained")
    for sub, (title, rows) in zip(fig.subfigures(2, 1), picks.items(), strict=True):
        sub.suptitle(f"{title} (set and score above each image)", x=0.01, ha="left", fontsize=8)
        axes = sub.subplots(2, PER_ROW)
        for j, r in enumerate(rows):
            axes[0, j].imshow(show(x[r].numpy()), cmap="gray")
            axes[0, j].set_title(f"{names[r]}\n{scores[r]:.3f}", fontsize=6)
            image = axes[1, j].imshow(maps[title][j], cmap="inferno", vmin=0.0, vmax=vmax)
            axes[0, j].axis("off")
            axes[1, j].axis("off")
        sub.colorbar(image, ax=list(axes[1]), shrink=0.9, label="anomaly map")
    FigureCanvasAgg(fig).print_png(str(path))
    return {title: [(names[r], float(scores[r])) for r in rows] for title, rows in picks.items()}


def analyse(det_id: str, detector, reps: dict[str, Representations], folder: Path, link: str,
            settings: Mapping[str, Any]) -> str:
    shown = heatmap_grid(detector, reps, folder / "heatmaps.png")
    sets = {title: sorted({n for n, _ in rows}) for title, rows in shown.items()}
    return (f"## {det_id}\n\n![heatmaps]({link}/heatmaps.png)\n\n"
            f"Top rows: the {PER_ROW} most anomalous test images (from: "
            f"{', '.join(sets['most anomalous'])}); bottom rows: the {PER_ROW} least anomalous "
            f"(from: {', '.join(sets['least anomalous'])}); above each image its set and "
            "score.\n")
