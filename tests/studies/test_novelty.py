"""Novelty discovery: the measures, the new-class rule, the protocols and the stream monitor
on synthetic features whose truth is known; the known-class pair on real MNIST."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from benchmark.config_groups import CONFIG_DIR
from benchmark.runner.prepare import backbone_spec, known_classes, load_sets, relabelled
from benchmark.studies.novelty.discovery import AlarmRule, cluster, discover, kmeans_bic
from benchmark.studies.novelty.protocols import ID, JUNK, NOVEL, Pool, batch, stream
from benchmark.studies.novelty.scoring import agreement, cluster_accuracy, purity
from benchmark.studies.novelty.space import ClusterSpace
from benchmark.studies.novelty.stream import Monitor, delay

DIM = 12


def _blob(rng, center: np.ndarray, n: int, sd: float) -> np.ndarray:
    return center + sd * rng.standard_normal((n, DIM))


def _world(seed: int = 0):
    """Features like a classifier's: 3 known classes and 2 new ones far from the origin along
    their own directions (strong activations), junk near the origin (weak activations);
    p-values uniform for ID, small for novel and junk."""
    rng = np.random.default_rng(seed)
    centers = 20 * np.eye(DIM)[:5]
    fit = np.concatenate([_blob(rng, centers[c], 300, 1.5) for c in range(3)])
    val = np.concatenate([_blob(rng, centers[c], 200, 1.5) for c in range(3)])
    val_labels = np.repeat(np.arange(3), 200)

    def pool(n_id: int, n_novel: int, n_junk: int) -> Pool:
        ids = np.concatenate([_blob(rng, centers[c], n_id, 1.5) for c in range(3)])
        novel = np.concatenate([_blob(rng, centers[c], n_novel, 1.5) for c in (3, 4)])
        junk = 2.0 * rng.standard_normal((n_junk, DIM))
        p = np.concatenate([rng.uniform(size=len(ids)),
                            rng.uniform(0, 1e-4, size=len(novel) + len(junk))])
        return Pool(p, np.concatenate([ids, novel, junk]),
                    np.repeat([ID, NOVEL, JUNK], [len(ids), len(novel), len(junk)]),
                    np.concatenate([np.full(len(ids), -1), np.repeat([8, 9], n_novel),
                                    np.full(n_junk, -1)]))

    space = ClusterSpace(variance=0.999).fit(fit, val, val_labels)
    return space, pool


def test_measures_read_a_relabelled_partition_as_perfect() -> None:
    truth = np.array([8, 8, 8, 9, 9, 9])
    assert cluster_accuracy(truth, np.array([1, 1, 1, 0, 0, 0])) == 1.0
    assert agreement(truth, np.array([5, 5, 5, 2, 2, 2]))["nmi"] == pytest.approx(1.0)
    one = np.zeros(6, dtype=int)  # one cluster for both classes: half right at best
    assert cluster_accuracy(truth, one) == 0.5 and purity(truth, one) == 0.5
    assert agreement(truth, one)["nmi"] == pytest.approx(0.0)


def test_kmeans_bic_prefers_the_true_count() -> None:
    rng = np.random.default_rng(1)
    z = np.concatenate([_blob(rng, 10 * np.eye(DIM)[c], 60, 1.0) for c in range(3)])
    labels = cluster(z, "kmeans_bic", 5, seed=0)
    assert len(np.unique(labels)) == 3
    from sklearn.cluster import KMeans
    bic = {k: kmeans_bic(z, (km := KMeans(k, n_init=4, random_state=0).fit(z)).labels_,
                         km.cluster_centers_) for k in (2, 3, 6)}
    assert bic[3] < bic[2] and bic[3] < bic[6]


@pytest.mark.parametrize("method", ["hdbscan", "kmeans_silhouette", "kmeans_bic"])
def test_the_rule_calls_the_two_new_classes_and_not_the_junk(method) -> None:
    space, pool = _world()
    buf = batch(pool(600, 100, 400), 1500, 200, 150, seed=0)
    d = discover(buf.pvalues, buf.features, space, AlarmRule(min_size=10), 0.1, method)
    kind = buf.kind[d.selected]
    assert (kind == ID).mean() < 0.1  # BH keeps the selection's ID share near q or below
    assert len(d.new_classes) == 2
    for c in d.new_classes:  # each new class is one held-out class, no junk inside
        members = np.flatnonzero(d.selected)[c.members]
        assert (buf.kind[members] == NOVEL).mean() > 0.95
        assert len(np.unique(buf.truth[members][buf.kind[members] == NOVEL])) == 1
    novel = kind == NOVEL
    assert agreement(buf.truth[d.selected][novel], d.labels[novel])["nmi"] > 0.9


def test_the_domain_gate_is_what_keeps_compact_junk_out() -> None:
    """Junk made compact (one tight blob near the origin) is a cluster; only its weak
    activations stop it from being called a new class."""
    space, pool = _world()
    p = pool(600, 100, 400)
    junk = p.kind == JUNK
    p.features[junk] = 0.3 * np.random.default_rng(3).standard_normal((junk.sum(), DIM)) + 2.0
    buf = batch(p, 1500, 200, 150, seed=1)
    d = discover(buf.pvalues, buf.features, space, AlarmRule(min_size=10), 0.1, "hdbscan")
    assert any(c.reason == "out of domain" for c in d.clusters)
    space.min_norm_ = 0.0  # without the gate the junk blob is a "new class"
    d = discover(buf.pvalues, buf.features, space, AlarmRule(min_size=10), 0.1, "hdbscan")
    assert len(d.new_classes) == 3


def test_the_point_gate_leaves_junk_out_of_the_clustering() -> None:
    """gate=points: a selected input below the domain gate gets no cluster (it stays
    unassigned, counted so by the measures); the new classes are still found."""
    space, pool = _world()
    buf = batch(pool(600, 100, 400), 1500, 200, 150, seed=0)
    space.gate = "points"
    d = discover(buf.pvalues, buf.features, space, AlarmRule(min_size=10), 0.1, "hdbscan")
    kind = buf.kind[d.selected]
    assert (kind == JUNK).sum() > 100 and (d.labels[kind == JUNK] == -1).all()
    assert len(d.new_classes) == 2
    assert not any(c.reason == "out of domain" for c in d.clusters)  # none was clustered
    with pytest.raises(ValueError, match="gate"):
        ClusterSpace(gate="inputs").fit(buf.features, buf.features, np.zeros(len(buf)))


def test_one_group_among_scattered_selections_is_a_cluster() -> None:
    """A stream window often holds a single new group and a few false selections: HDBSCAN
    must be allowed to answer with one cluster."""
    space, pool = _world()
    p = pool(100, 12, 0)
    rows = np.concatenate([p.rows_of(ID)[[0, 1, 100, 101, 200, 201]], p.rows_of(NOVEL, 8)[:12]])
    w = p.take(rows)
    w.pvalues[:6] = 1e-4  # six ID inputs selected too, each near its own class
    z = space.transform(w.features)
    labels = cluster(z, "hdbscan", 6, seed=0, single=True)
    grouped = labels[6:][labels[6:] >= 0]
    assert len(grouped) >= 6 and len(set(grouped)) == 1 and (labels[:6] == -1).all()
    assert (cluster(z, "hdbscan", 6, seed=0) == -1).all()  # the buffer default: none


def test_the_id_background_test_rejects_where_id_selections_gather() -> None:
    """A compact group of selected inputs in a region where flagged ID validation images
    gather is ID background; the same group where none gather is a new class."""
    from benchmark.studies.novelty.discovery import Background

    space, pool = _world()
    rng = np.random.default_rng(3)
    atypical = 20 * np.eye(DIM)[5]  # no known class here: only atypical ID images
    known = pool(200, 0, 0)
    ref_f = np.concatenate([known.features, _blob(rng, atypical, 60, 1.5)])
    ref_p = np.concatenate([known.pvalues, np.full(60, 1e-4)])
    background = Background().fit(ref_p, ref_f, space)
    rule = AlarmRule(min_size=5, background_alpha=1e-3)
    window = pool(60, 0, 0)
    for centre, expected in ((atypical, "ID background"), (20 * np.eye(DIM)[3], "")):
        f = np.concatenate([window.features, _blob(rng, centre, 10, 1.5)])
        p = np.concatenate([window.pvalues, np.full(10, 1e-4)])
        d = discover(p, f, space, rule, 0.2, "hdbscan", seed=0, single=True,
                     background=background)
        group = [c for c in d.clusters if len(c.members) >= 5]
        assert len(group) == 1 and group[0].reason == expected
        plain = discover(p, f, space, AlarmRule(min_size=5), 0.2, "hdbscan", seed=0,
                         single=True)
        assert len(plain.new_classes) == 1  # without the test both groups are new
    with pytest.raises(ValueError, match="background"):
        discover(p, f, space, rule, 0.2, "hdbscan")


def test_a_whitened_space_gives_every_kept_axis_unit_id_variance() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 6)) * np.array([10, 5, 2, 1, 0.5, 0.3])
    y = rng.integers(0, 3, 2000)
    plain = ClusterSpace(variance=0.9999, normalize=False).fit(x, x, y).transform(x)
    white = ClusterSpace(variance=0.9999, normalize=False, whiten=True).fit(x, x, y)
    assert white.dims == 6
    assert np.allclose(white.transform(x).var(axis=0), 1.0, atol=1e-9)
    assert plain.var(axis=0)[0] > 500 * plain.var(axis=0)[-1]


def test_the_stream_spaces_are_the_batch_space_under_each_choice() -> None:
    from types import SimpleNamespace

    from benchmark.runner.prepare import VALIDATION
    from benchmark.studies.novelty.study import stream_spaces

    rng = np.random.default_rng(1)
    reps = {k: SimpleNamespace(features=rng.standard_normal((400, DIM)) * np.arange(1, DIM + 1),
                               labels=rng.integers(0, 3, 400)) for k in ("fit", VALIDATION)}
    prep = SimpleNamespace(reps=reps)
    batch_space = ClusterSpace(variance=0.95, norm_quantile=0.005, gate="points")
    batch_space.fit(reps["fit"].features, reps[VALIDATION].features, reps[VALIDATION].labels)
    assert stream_spaces({"stream": {}}, prep, batch_space) == [batch_space]
    spec = {"stream": {"space": {"norm_quantile": 0.05}},
            "choices": {"stream_space": [{}, {"whiten": True, "norm_quantile": 0.01}]}}
    first, second = stream_spaces(spec, prep, batch_space)
    assert (first.whiten, first.norm_quantile, first.gate) == (False, 0.05, "points")
    assert (second.whiten, second.norm_quantile, second.variance) == (True, 0.01, 0.95)
    assert second.min_norm_ < first.min_norm_  # the lower quantile of the same norms


def test_the_alarm_size_is_the_smallest_within_the_validation_budget() -> None:
    """min_size comes from the novelty-free validation streams: a budget of zero alarms
    needs a larger size than a budget that tolerates a few."""
    from benchmark.studies.novelty.study import pick_min_size

    space, pool = _world()
    p = pool(900, 50, 400)
    # ID inputs with small p-values that gather at one spot outside the known classes: the
    # false selections a loose rule would call a new class
    odd = p.rows_of(ID)[:60]
    p.pvalues[odd] = 1e-4
    p.features[odd] = 20 * np.eye(DIM)[6] + 1.5 * np.random.default_rng(5).standard_normal(
        (60, DIM))
    s = {"min_size_grid": [4, 8, 40], "validation_streams": 2, "junk_rate": 0.05,
         "validation_length": 1200, "check_every": 20}
    rule = AlarmRule(min_size=4, resamples=4)
    strict, trials = pick_min_size(space, rule, {**s, "validation_false_alarms_per_10k": 0.0},
                                   0.1, 600, p)
    loose, _ = pick_min_size(space, rule, {**s, "validation_false_alarms_per_10k": 1e4},
                             0.1, 600, p)
    assert loose == 4 and strict == 40
    assert [t["quiet"] for t in trials] == [False, False, True]
    assert trials[0]["validation_alarms"] > 0


def test_batches_and_streams_draw_without_repeats_in_set_proportions() -> None:
    _, pool = _world()
    p = pool(600, 300, 800)
    buf = batch(p, 1000, 101, 50, seed=2)
    assert np.bincount(buf.kind, minlength=3).tolist() == [1000, 101, 50]
    assert sorted(np.bincount(buf.truth[buf.kind == NOVEL])[[8, 9]].tolist()) == [50, 51]
    assert len(np.unique(buf.features[:, 0])) == len(buf)  # no input drawn twice
    st = stream(p, 1500, 0.05, seed=3, novel_rate=0.2, onset_range=(500, 700))
    assert 500 <= st.onset < 720 and (st.inputs.kind[: st.onset] != NOVEL).all()
    after = st.inputs.kind[st.onset:]
    assert 0.15 < (after == NOVEL).mean() < 0.25
    assert set(st.inputs.truth[st.inputs.kind == NOVEL]) == {st.novel_class}
    assert stream(p, 1500, 0.05, seed=3, novel_rate=0.2).onset == stream(
        p, 1500, 0.05, seed=3, novel_rate=0.2).onset  # seeded
    with pytest.raises(ValueError, match="pool has"):
        batch(p, 5000, 10, 10, seed=0)


def test_the_monitor_alarms_after_the_onset_and_stays_quiet_without_novelty() -> None:
    space, pool = _world()
    p = pool(700, 300, 300)
    mon = Monitor(space, AlarmRule(min_size=8), q=0.1, window=500, check_every=10)
    quiet = stream(p, 1500, 0.05, seed=4)
    assert mon.alarms(quiet) == []
    st = stream(p, 1500, 0.05, seed=4, novel_rate=0.2, onset_range=(600, 700))
    alarms = mon.alarms(st, stop_at=st.onset)
    lag, before = delay(st, alarms)
    assert before == 0 and lag <= 100  # ~8 novel inputs in 40-50 arrivals at rate 0.2


def _cfg(root, overrides):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[f"data.root={root}", *overrides])


def test_relabelled_keeps_the_order_of_the_kept_classes(root) -> None:
    cfg = _cfg(root, ["pair=mnist_novelty", "data.max_id_test=300", "data.max_ood=200"])
    assert known_classes(cfg) == list(range(8))
    assert backbone_spec(cfg).params["num_classes"] == 8
    sets, _, _ = load_sets(cfg)
    assert set(np.unique(sets["train"].labels)) == set(range(8))
    assert set(np.unique(sets["ood/novel"].labels)) == {8, 9}
    assert set(np.unique(sets["ood/novel_val"].labels)) == {8, 9}
    sub = sets["id_test"]
    moved = relabelled(sub, [5, 2, 0, 1, 3, 4, 6, 7])
    assert (moved.labels[sub.labels == 5] == 0).all() and (moved.labels[sub.labels == 0] == 2).all()
    assert moved.content_hash != sub.content_hash  # other labels, another identity
    # an anomaly pair's classes pick its normal class: no classifier renumbering
    assert known_classes(_cfg(root, ["pair=oneclass_cifar10"])) is None



def test_the_study_runs_under_the_configs_compute_settings(monkeypatch) -> None:
    """Checkpoints and representations are keyed by the compute settings: the study must run
    under the config's, as the runner does, or it retrains instead of reusing the cache."""
    import torch

    from benchmark.studies.novelty import study

    seen = {}

    def record(name, spec, cfgs, out_root, argv):
        seen["threads"] = torch.get_num_threads()
        seen["onednn"] = torch.backends.mkldnn.enabled
        return out_root

    monkeypatch.setattr(study, "_run", record)
    before = torch.get_num_threads(), torch.backends.mkldnn.enabled
    want = 1 if before[0] != 1 else 2
    study.run("mnist", [f"compute.threads={want}", "compute.onednn=false"])
    assert seen == {"threads": want, "onednn": False}
    assert (torch.get_num_threads(), torch.backends.mkldnn.enabled) == before


def test_the_detector_comes_from_the_protocol_unless_the_command_names_one() -> None:
    from benchmark.studies.novelty.study import detector_options

    spec = {"detectors": ["inhouse/grouped_knn", "inhouse/grouped"]}
    assert detector_options(spec, ["compute.threads=1"]) == spec["detectors"]
    assert detector_options(spec, ["detector=pytorch_ood/msp"]) == [None]
    assert detector_options(spec, ["+detector=pytorch_ood/msp"]) == [None]
    assert detector_options({}, []) == [None]


def test_the_detector_pick_reads_the_validation_streams_then_the_median_then_nmi() -> None:
    from benchmark.studies.novelty.study import Candidate, StreamChoice, pick_detector

    def cand(name: str, within: float, median: float, nmi: float) -> Candidate:
        choice = StreamChoice(0.2, 200, AlarmRule(), None, None, within, median, [])
        return Candidate(name, None, None, None, None, 0.2, [{"validation_nmi": nmi}], choice)

    assert pick_detector([cand("a", 0.6, 90, 0.9), cand("b", 0.7, 150, 0.1)]).det_id == "b"
    assert pick_detector([cand("a", 0.7, 160, 0.9), cand("b", 0.7, 150, 0.1)]).det_id == "b"
    assert pick_detector([cand("a", 0.7, 150, 0.4), cand("b", 0.7, 150, 0.5)]).det_id == "b"
    assert pick_detector([cand("a", 0.7, 150, 0.5), cand("b", 0.7, 150, 0.5)]).det_id == "a"


def test_the_background_images_are_kept_apart_from_the_validation_streams() -> None:
    from benchmark.studies.novelty.study import NoveltyError, set_aside

    _, pool = _world()
    p = pool(100, 20, 30)
    rest, apart = set_aside(p, 120)
    assert len(apart) == 120 and (apart.kind == ID).all()
    assert len(rest) == len(p) - 120 and (rest.kind == ID).sum() == 300 - 120
    assert not set(apart.features[:, 0]) & set(rest.features[:, 0])  # disjoint images
    same, also = set_aside(p, 0)
    assert same is p and also is p
    with pytest.raises(NoveltyError, match="background_images"):
        set_aside(p, 300)


def test_the_median_interval_brackets_the_median_as_often_as_it_says() -> None:
    from benchmark.stats.binomial import median_interval

    assert median_interval(np.arange(1.0, 21.0)) == (6.0, 15.0)  # n = 20: 6th and 15th
    assert median_interval([1.0, 2.0, 3.0]) == (-np.inf, np.inf)  # too few for 95 %
    assert median_interval([*range(1, 13), *[np.inf] * 8]) == (6.0, np.inf)  # 8 never alarmed
    rng = np.random.default_rng(0)
    hits = [lo <= np.log(2) <= hi for lo, hi in
            (median_interval(rng.exponential(size=25)) for _ in range(2000))]
    assert 0.94 <= np.mean(hits) <= 0.99


TINY_PROTOCOL = {
    "name": "tiny", "run": ["pair=mnist_novelty", "backbone=lenet"],
    "detectors": ["inhouse/grouped_knn", "inhouse/grouped_features"],
    "novel_sets": ["novel"], "validation_novel_sets": ["novel_val"], "junk_sets": ["junk"],
    "q": 0.2, "space": {"variance": 0.9, "norm_quantile": 0.05, "gate": "points"},
    "rule": {"min_size": 5, "resamples": 3, "max_k": 4},
    "batch": {"seeds": 2, "n_id": 300, "n_novel": 60, "n_junk": 40,
              "methods": ["hdbscan", "kmeans_silhouette"]},
    "stream": {"length": 500, "check_every": 20, "junk_rate": 0.05, "rates": [0.2],
               "streams": 3, "onset": [100, 200], "min_size_grid": [4, 8, 40],
               "validation_false_alarms_per_10k": 50, "validation_streams": 2,
               "background_images": 200,
               "validation_length": 500, "validation_onset": [100, 200]},
    "choices": {"buffers": 2, "n_id": 300, "variance": [0.95], "norm_quantile": [0.05],
                "batch_q": [0.2], "stream_q": [0.2], "stream_window": [200],
                "stream_space": [{}, {"whiten": True}],
                "spread_factor": [2.0], "background_alpha": [1.0e-3]},
    "done": {"nmi": 0.6, "rate": 0.2, "delay_within": 200, "false_alarms_per_10k": 1},
    "literature": [],
}


def test_the_study_runs_end_to_end_on_small_mnist(root, tmp_path) -> None:
    """The whole protocol on a 2-epoch LeNet and small splits: both candidate detectors are
    fitted and judged on validation, the picked one is scored on the test pools, and the
    report states every done criterion with its interval."""
    import json

    import pandas as pd

    from benchmark.studies.novelty.study import run_protocol

    extra = [f"data.root={root}", f"cache_dir={tmp_path / 'cache'}", "data.train_size=8000",
             "data.fit_size=1000", "backbone.recipe.epochs=2",
             "pair.data.calibration_size=2900", "pair.data.validation_size=900",
             "data.max_id_test=600", "data.max_ood=400", "pair.validation.size=300"]
    report = run_protocol("tiny", TINY_PROTOCOL, extra, tmp_path / "out", ["novelty=tiny"])
    record = json.loads((report.parent / "thresholds.json").read_text())
    trials = record["detector_trials"]
    assert [t["detector"] for t in trials] == ["inhouse_grouped_knn",
                                               "inhouse_grouped_features"]
    best = min(trials, key=lambda t: (-t["validation_within"], t["validation_median_delay"],
                                      -t["validation_nmi"]))
    assert record["detector"] == best["detector"] == report.parent.name
    assert record["stream_rule"]["min_size"] in (4, 8, 40)
    picked = [t for t in record["stream_trials"] if "validation_within" in t]
    assert 1 <= len(picked) <= 2 and all(t["quiet"] for t in picked)
    spaces = {t["space"] for t in record["stream_trials"]}
    assert len(spaces) == 2 and sum("whitened" in s for s in spaces) == 1
    chosen = min(picked, key=lambda t: (-t["validation_within"], t["validation_median_delay"]))
    assert record["stream_space"]["whiten"] == ("whitened" in chosen["space"])
    assert record["backbone_recipe"]["epochs"] == 2
    batch = pd.read_csv(report.parent / "batch.csv")
    assert len(batch) == 4 and set(batch.method) == {"hdbscan", "kmeans_silhouette"}
    assert ((batch.selected_novel > 0) & (batch.selected_novel <= batch.novel_in_buffer)).all()
    streams = pd.read_csv(report.parent / "streams.csv")
    assert sorted(streams.novel_rate.unique()) == [0.0, 0.2]
    assert len(streams) == 3 + 2 * 3  # novelty streams + (ID only, ID + junk) per seed
    assert np.isfinite(streams.delay[streams.novel_rate > 0]).any()
    text = report.read_text()
    assert not re.search(r"\{[a-z_]+\[['\"]", text)  # no template left unformatted
    assert "Cluster space (stream): " in text and "loosest known class spread 0." in text
    assert "Stream at rate 0.2: alarm within 200 inputs in" in text
    assert "95 % upper bound" in text and "picked on validation" in text
    assert record["pools"]["validation"]["id"] == 700 and record["pools"]["background_id"] == 200
    assert "200 ID validation images kept apart" in text
    assert (report.parent / "projection.png").stat().st_size > 10_000
