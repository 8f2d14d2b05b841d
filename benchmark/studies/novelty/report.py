"""``novelty.md`` and ``projection.png``: rendered from the study's own rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from benchmark.atomic import atomic_path
from benchmark.render import markdown_table
from benchmark.stats.binomial import clopper_pearson, median_interval
from benchmark.studies.novelty import BATCH_CSV, REPORT_MD, STREAM_CSV, THRESHOLDS_JSON
from benchmark.studies.novelty.discovery import Discovery
from benchmark.studies.novelty.protocols import JUNK, NOVEL, Pool
from benchmark.studies.novelty.space import ClusterSpace

BATCH_MEASURES = ("selected_id", "selected_novel", "selected_junk", "clusters", "new_classes",
                  "nmi", "ari", "purity", "cluster_accuracy", "novel_discovered",
                  "junk_share_in_new", "fdr")


def mean_sd(values: pd.Series, digits: int = 3) -> str:
    v = values.dropna().astype(float)
    if not len(v):
        return "—"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def poisson_upper(count: int, level: float = 0.95) -> float:
    """Exact one-sided upper confidence bound of a Poisson mean seen as ``count``."""
    return float(chi2.ppf(level, 2 * (count + 1)) / 2)


def batch_table(frame: pd.DataFrame) -> str:
    head = ["method", *BATCH_MEASURES]
    rows = [[m, *(mean_sd(g[c], 1 if c.startswith(("selected", "clusters", "new_")) else 3)
                  for c in BATCH_MEASURES)] for m, g in frame.groupby("method", sort=False)]
    return markdown_table(head, rows)


def share_text(k: int, n: int) -> str:
    """``k / n`` as a share with its exact 95 % interval."""
    lo, hi = clopper_pearson(k, n)
    return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}]" if n else "—"


def median_text(delays: pd.Series) -> str:
    """The median delay with its distribution-free 95 % interval (inf = never alarmed)."""
    lo, hi = median_interval(delays.to_numpy())
    return f"{np.median(delays):.0f} [{lo:.0f}, {hi:.0f}]".replace("inf", "∞")


def stream_tables(frame: pd.DataFrame, limit: int) -> tuple[str, str]:
    novel = frame[frame.novel_rate > 0]
    rows = []
    for rate, g in novel.groupby("novel_rate"):
        hit = np.isfinite(g.delay)
        rows.append([f"{rate:g}", str(len(g)), share_text(int(hit.sum()), len(g)),
                     share_text(int((g.delay <= limit).sum()), len(g)), median_text(g.delay),
                     mean_sd(g.delay[hit], 0), str(int(g.false_alarms.sum()))])
    delays = markdown_table(["novel rate", "streams", "detected [95 % CI]",
                             f"within {limit} [95 % CI]", "median delay [95 % CI]",
                             "delay mean ± sd (detected)", "alarms before onset"], rows)
    free = frame[frame.novel_rate == 0]
    rows = []
    for junk, g in free.groupby("junk_rate"):
        n, inputs = int(g.false_alarms.sum()), int(g.inputs_watched.sum())
        rows.append(["ID only" if junk == 0 else f"ID + junk {junk:g}", str(len(g)), str(inputs),
                     str(n), f"{1e4 * n / inputs:.2f}",
                     f"{1e4 * poisson_upper(n) / inputs:.2f}"])
    alarms = markdown_table(["stream", "streams", "inputs", "alarms", "per 10,000",
                             "95 % upper bound per 10,000"], rows)
    return delays, alarms


def space_line(sp: dict[str, Any]) -> str:
    return (f"{sp['dims']} principal axes of the ID fit features ({sp['variance']:g} of the "
            "variance)" + (", each scaled to unit ID variance" if sp.get("whiten") else "")
            + f", unit length; loosest known class spread {sp['class_spread']:.3f}; "
            f"domain gate: feature norm >= {sp['min_norm']:.2f} (the ID validation "
            f"{sp['norm_quantile']:g} quantile), "
            + ("applied to every selected input before clustering (inputs below it stay "
               "unassigned)." if sp.get("gate") == "points"
               else "applied to a cluster's median norm."))


def rule_line(rule: dict[str, Any]) -> str:
    return (f"new class = cluster of >= {rule['min_size']} inputs, stability >= "
            f"{rule['stability']:g} (mean best Jaccard over {rule['resamples']} "
            f"{rule['subsample']:g} subsets), spread <= {rule['spread_factor']:g} x the loosest "
            "known class, in the domain, not inside a known class"
            + ("." if rule["background_alpha"] is None else
               f", above the ID background (its size beyond the Poisson tail at "
               f"{rule['background_alpha']:g} of the count the ID validation images selected "
               "at the window's threshold put within its radius, scaled to the window)."))


def stream_trials_table(trials: list[dict[str, Any]], limit: int) -> str:
    """The stream choices tried on validation streams, one row per (setting, min_size)."""
    rows = [[t.get("space", ""), f"{t['q']:g}", str(t["window"]), f"{t['spread_factor']:g}",
             "none" if t["background_alpha"] is None else f"{t['background_alpha']:g}",
             str(t["min_size"]),
             f"{t['validation_alarms']} / {t['validation_inputs']}",
             "yes" if t["quiet"] else "no",
             f"{t['validation_within']:.2f}" if "validation_within" in t else "",
             f"{t['validation_median_delay']:.0f}" if "validation_median_delay" in t else ""]
            for t in trials]
    return markdown_table(["space", "q", "window", "spread factor", "background level", "min_size",
                           "validation alarms / inputs", "within budget",
                           f"validation streams alarmed within {limit}",
                           "median validation delay"], rows)


def detector_line(record: dict[str, Any], limit: int) -> str:
    """Which detector the run picked on validation, beside the others it tried."""
    trials = record.get("detector_trials") or []
    if len(trials) < 2:
        return f"- Detector: {record['detector']} (named by the run)."
    return ("- Detector, picked on validation (validation novelty streams alarmed within "
            f"{limit} / median validation delay / validation NMI): "
            + "; ".join(f"{t['detector']} {t['validation_within']:.2f} / "
                        f"{t['validation_median_delay']:.0f} / {t['validation_nmi']:.3f}"
                        for t in trials)
            + f" → {record['detector']}.")


def write_report(out: Path, spec: dict[str, Any], record: dict[str, Any], batch: pd.DataFrame,
                 streams: pd.DataFrame) -> None:
    limit = int(spec.get("done", {}).get("delay_within", 200))
    delays, alarms = stream_tables(streams, limit)
    rule, sp = record["rule"], record["space"]
    lines = [
        f"# Novelty discovery: {record['pair']} / {record['backbone']} / {record['detector']}",
        "",
        f"Command: `{record['command']}` (commit {record['git_commit']}). Files here: "
        f"{BATCH_CSV}, {STREAM_CSV}, {THRESHOLDS_JSON} (every setting and threshold), "
        "projection.png.",
        "",
        "> p-values: the detector's conformal p-values (small = OOD; OOD is the positive "
        "class). Inputs are *selected* by Benjamini-Hochberg at level q over the buffer (the "
        "stream: over its last window). Cluster measures are computed on the selected novel "
        "inputs against their true class (unassigned inputs form one group). The classifier "
        "is frozen: nothing is trained on the unlabelled inputs.",
        "",
        f"- Backbone: {record['checkpoint']} (sha256 {record['checkpoint_sha256'][:12]}…"
        + (f", {record['backbone_recipe']['epochs']} epochs" if record.get("backbone_recipe")
           else "")
        + f"), ID test accuracy on the known classes {record['id_accuracy']:.4f}.",
        detector_line(record, limit),
        f"- Pools: test {record['pools']['test']}, validation {record['pools']['validation']}"
        + (f"; the ID background: {record['pools']['background_id']} ID validation images"
           + (" kept apart from the validation streams"
              if record["protocol"]["stream"].get("background_images") else
              " (the validation streams' own)")
           if "background_id" in record["pools"] else "") + ".",
        f"- Cluster space (batch): {space_line(sp)}",
        f"- Cluster space (stream): {space_line(record['stream_space'])}",
        f"- Rule (batch): {rule_line(rule)} Selection: BH at q = {record['q']:g} over the "
        "buffer.",
        f"- Rule (stream): {rule_line(record['stream_rule'])} Selection: BH at q = "
        f"{record['stream_q']:g} over the window; HDBSCAN may answer with one cluster.",
        "- Chosen on validation data only (ID validation images, the held-out classes' "
        "*training* images, the validation junk): the space's variance share, the domain "
        "gate's quantile and the batch's q by the mean validation NMI of the clusterings ("
        + ", ".join(f"{t['variance']:g} ({t['dims']} dims) / {t['norm_quantile']:g} / "
                    f"{t['q']:g}: {t['validation_nmi']:.3f}"
                    for t in record["space_trials"]) + "); per stream setting (space, q, "
        "window, spread factor, ID-background level) the smallest min_size within the validation "
        "false-alarm budget of "
        f"{spec['stream'].get('validation_false_alarms_per_10k', 0.0):g} per 10,000 inputs, "
        f"then the setting whose validation novelty streams alarm within {limit} inputs most "
        "often (ties: the shorter median validation delay; table below).",
        "",
        stream_trials_table(record["stream_trials"], limit),
        "",
        f"## Batch: {spec['batch']['n_id']} ID + {spec['batch']['n_novel']} novel (held-out "
        f"classes in equal parts) + {spec['batch']['n_junk']} junk, {spec['batch']['seeds']} "
        "seeded buffers (mean ± sd)",
        "",
        f"True number of novel classes: {int(batch.true_classes.iloc[0])}. `new_classes` = "
        "clusters the rule calls new; `novel_discovered` = share of the buffer's novel inputs "
        "inside them; `junk_share_in_new` = share of junk among their members; `fdr` = share "
        "of ID among the selected.",
        "",
        batch_table(batch),
        "",
        "![projection](projection.png)",
        "",
        f"## Stream: {spec['stream']['length']} inputs, junk rate "
        f"{spec['stream']['junk_rate']:g}, one held-out class from a seeded onset in "
        f"{spec['stream']['onset']}; window {record['stream_window']}, checked every "
        f"{spec['stream']['check_every']} inputs, BH at q = {record['stream_q']:g}",
        "",
        "Delay = inputs from the first novel one to the alarm (inclusive); a stream never "
        "alarmed counts as not detected (delay inf). Intervals: exact (Clopper-Pearson) for "
        "the shares, the sign test's order statistics for the median.",
        "",
        delays,
        "",
        "False alarms on novelty-free streams (every alarm counts; the window restarts after "
        "each):",
        "",
        alarms,
        "",
        "## Done-criteria check",
        "",
        *done_lines(spec, batch, streams),
        "",
        "## Beside the literature",
        "",
        *literature_lines(spec),
    ]
    with atomic_path(out / REPORT_MD) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def done_lines(spec: dict[str, Any], batch: pd.DataFrame, streams: pd.DataFrame) -> list[str]:
    done = spec.get("done", {})
    out = []
    for method, g in batch.groupby("method", sort=False):
        within = (abs(g.new_classes - g.true_classes) <= 1).mean()
        out.append(f"- {method}: cluster count within ±1 of the truth in {within:.0%} of "
                   f"buffers; NMI {g.nmi.mean():.3f} (target >= {done.get('nmi', 0.6):g}).")
    rate = float(done.get("rate", 0.05))
    g = streams[streams.novel_rate == rate]
    if len(g):
        limit = int(done.get("delay_within", 200))
        out.append(f"- Stream at rate {rate:g}: alarm within {limit} inputs in "
                   f"{share_text(int((g.delay <= limit).sum()), len(g))} of {len(g)} streams "
                   f"(95 % CI); median delay {median_text(g.delay)}.")
    free = streams[streams.novel_rate == 0]
    if len(free):
        n, inputs = int(free.false_alarms.sum()), int(free.inputs_watched.sum())
        out.append(f"- Novelty-free streams: {1e4 * n / inputs:.2f} false alarms per 10,000 "
                   f"inputs (95 % upper bound {1e4 * poisson_upper(n) / inputs:.2f}; target "
                   f"<= {done.get('false_alarms_per_10k', 1):g}).")
    return out


def literature_lines(spec: dict[str, Any]) -> list[str]:
    lit = spec.get("literature") or []
    if not lit:
        return ["(none configured)"]
    rows = [[r["method"], r["setting"], f"{r['cluster_accuracy']:.3f}", r["source"]]
            for r in lit]
    return [markdown_table(["method", "setting", "cluster accuracy", "source"], rows), "",
            "These methods train the network on the unlabelled novel data (and know that "
            "every input given to them is novel, task-aware); this pipeline keeps the "
            "classifier frozen and first has to find the novel inputs among ID and junk."]


def write_projection(out: Path, buf: Pool, d: Discovery, space: ClusterSpace) -> None:
    """t-SNE of the selected inputs of one buffer: coloured by cluster and by truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    z = space.transform(buf.features[d.selected])
    if len(z) < 5:
        return
    xy = TSNE(2, perplexity=min(30, len(z) - 1), init="pca", random_state=0).fit_transform(z)
    kind, truth = buf.kind[d.selected], buf.truth[d.selected]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    new = {int(i) for c in d.new_classes for i in c.members}
    colors = plt.get_cmap("tab10")
    for c in np.unique(d.labels):
        rows = np.flatnonzero(d.labels == c)
        label = "unassigned" if c < 0 else f"cluster {c}" + (
            " (new class)" if rows[0] in new else "")
        axes[0].scatter(*xy[rows].T, s=9, color="lightgrey" if c < 0 else colors(c % 10),
                        label=label)
    groups = [("ID", kind == 0, "grey"), ("junk", kind == JUNK, "black")]
    groups += [(f"novel class {c}", (kind == NOVEL) & (truth == c), colors(i + 2))
               for i, c in enumerate(buf.novel_classes)]
    for label, mask, color in groups:
        axes[1].scatter(*xy[mask].T, s=9, color=color, label=label)
    axes[0].set_title("clusters (HDBSCAN) of the selected inputs")
    axes[1].set_title("truth")
    for ax in axes:
        ax.legend(fontsize=7, markerscale=1.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(out / "projection.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)

