"""Paper tables: our numbers from real runs beside published ones; missing sets say so."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.config_groups import CONFIG_DIR, group_options
from benchmark.studies.paper_tables import (
    TableError,
    agreement_pairs,
    build,
    load_table,
    method_option,
    row_detector,
)
from tests import markdown

SMALL = ["data.train_size=3000", "data.fit_size=1000", "data.calibration_size=1000",
         "data.max_id_test=300", "data.max_ood=300", "backbone.recipe.epochs=1"]


def test_committed_table_configs_load() -> None:
    spec = load_table("neuralfp")
    assert len(spec["columns"]) == 6
    assert spec["published"]["NeuralFP (in-house reimplementation)"][0] == 0.9826
    cifar = load_table("openood_cifar10")
    assert cifar["published"]["KNN (OpenOOD)"][:2] == [0.9064, 0.9296]
    assert cifar["published"]["KNN (pytorch-ood)"][:2] == [0.9064, 0.9296]
    # tuned rows name the option and ask for its tuned detector (the run tunes)
    assert row_detector(cifar["detectors"]["KNN (OpenOOD, tuned)"]) == ("openood/knn",
                                                                       "openood_knn_tuned")
    assert "tune=true" in cifar["runs"]["cifar10"]["overrides"]


@pytest.mark.parametrize("name", group_options("table"))
def test_every_table_names_existing_options(name: str) -> None:
    """Rows and columns point at detector options and runs that exist (typos fail here)."""
    spec = load_table(name)
    options = ([o for pair in agreement_pairs(spec).values() for o in pair]
               if spec.get("kind") == "agreement"
               else [row_detector(r)[0] for r in spec["detectors"].values()])
    for option in options:
        assert (CONFIG_DIR / "detector" / f"{option}.yaml").exists(), option
    for col in spec.get("columns", []):
        assert col["run"] in spec["runs"]
    for label, values in spec.get("published", {}).items():
        assert label in spec["detectors"] and len(values) == len(spec["columns"])


def test_unknown_table_lists_valid_ones() -> None:
    with pytest.raises(TableError, match="Valid table options: .*neuralfp"):
        load_table("nope")


def test_agreement_methods_resolve_to_each_librarys_option() -> None:
    """Canonical method ids (LIBRARY_INFO.methods) pick the option in each library."""
    spec = load_table("library_agreement")
    assert spec["libraries"] == ["pytorch_ood", "openood", "oodeel"]
    pairs = agreement_pairs(spec)
    assert pairs["Energy"] == ("pytorch_ood/energy", "openood/ebo", "oodeel/energy")
    # a mapping overrides one library's option (Oodeel's default perturbs the input)
    assert pairs["Mahalanobis"] == ("pytorch_ood/mahalanobis", "openood/mds",
                                    "oodeel/mahalanobis_eps0")
    assert pairs["MSP"] == ("pytorch_ood/msp", "openood/msp", "oodeel/msp")
    assert pairs["KNN"][2] == "oodeel/knn" and pairs["RMDS"][1] == "openood/rmds"
    assert method_option("openood", "rmd") == "openood/rmds"
    with pytest.raises(TableError, match="no detector option for method 'clip'"):
        method_option("pytorch_ood", "clip")


def test_table_from_a_real_run(root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OOD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    spec = {
        "name": "tiny", "metric": "auroc",
        "runs": {"m": {"overrides": ["pair=mnist_neuralfp", "backbone=lenet"]}},
        "detectors": {"MSP": "pytorch_ood/msp", "Energy": "pytorch_ood/energy"},
        "columns": [{"run": "m", "ood": "cifar10", "label": "MNIST / CIFAR-10"},
                    {"run": "m", "ood": "svhn", "label": "MNIST / SVHN"}],
        "published": {"MSP": [0.9, 0.8]},
    }
    md = build("tiny", SMALL, out_root=tmp_path / "tables", spec=spec,
               runs_root=tmp_path / "runs")
    long = pd.read_csv(tmp_path / "tables" / "tiny.csv")
    msp = long[(long.row == "MSP") & (long.column == "MNIST / CIFAR-10")].iloc[0]
    run_rows = pd.read_csv(tmp_path / "tables" / "tiny_runs" / "m" / "metrics.csv")
    ours = run_rows[(run_rows.detector == "pytorch_ood_msp")
                    & (run_rows.ood_dataset == "cifar10")].auroc.iloc[0]
    assert msp.ours == pytest.approx(ours) and msp.difference == pytest.approx(ours - 0.9)
    svhn = long[long.column == "MNIST / SVHN"]
    if "svhn" not in set(run_rows.ood_dataset):  # offline: the set is skipped, never invented
        assert svhn.ours.isna().all() and svhn.status.str.startswith("missing").all()
    text = md.read_text()
    assert "MNIST / CIFAR-10" in text and "manifest.json" in text
    assert (tmp_path / "tables" / "tiny.tex").read_text().count(r"\\") == 3
    # the rendered table shows each CSV cell under its own row and column, with the run's
    # bootstrap interval (one seed); a one-set column's interval is the one in metrics.csv
    (rows, *_) = markdown.tables(text)
    cell = {r["row"]: r for r in rows}
    lo, hi = (run_rows[(run_rows.detector == "pytorch_ood_msp")
                       & (run_rows.ood_dataset == "cifar10")][["auroc_lo", "auroc_hi"]].iloc[0])
    assert (msp.lo, msp.hi) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert cell["MSP"]["MNIST / CIFAR-10"] == (
        f"{ours:.4f} [{lo:.3f}, {hi:.3f}] (0.9000, {ours - 0.9:+.4f})")
    energy = long[(long.row == "Energy") & (long.column == "MNIST / CIFAR-10")].iloc[0]
    assert cell["Energy"]["MNIST / CIFAR-10"] == (
        f"{energy.ours:.4f} [{energy.lo:.3f}, {energy.hi:.3f}]")


def test_group_columns_average_the_groups_sets(root, tmp_path, monkeypatch) -> None:
    """A near/far column is the mean of that group's sets in the run, per metric."""
    monkeypatch.setenv("OOD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    spec = {
        "name": "groups",
        "runs": {"m": {"overrides": ["pair=mnist", "backbone=lenet"]}},
        "detectors": {"Energy": "pytorch_ood/energy"},
        "columns": [{"run": "m", "group": "near", "metric": "auroc", "label": "near AUROC"},
                    {"run": "m", "group": "far", "metric": "fpr95tpr", "label": "far FPR"},
                    {"run": "m", "group": "covariate", "label": "covariate AUROC"}],
        "published": {"Energy": [0.5, None, None]},
    }
    md = build("groups", SMALL, out_root=tmp_path / "tables", spec=spec,
               runs_root=tmp_path / "runs")
    long = pd.read_csv(tmp_path / "tables" / "groups.csv").set_index("column")
    rows = pd.read_csv(tmp_path / "tables" / "groups_runs" / "m" / "metrics.csv")
    near = rows[rows.ood_group == "near"]
    far = rows[rows.ood_group == "far"]
    assert len(near) == 2 and len(far) == 1  # Fashion-MNIST + notMNIST; CIFAR-10
    assert long.loc["near AUROC", "ours"] == pytest.approx(near.auroc.mean())
    assert long.loc["near AUROC", "difference"] == pytest.approx(near.auroc.mean() - 0.5)
    assert long.loc["far FPR", "ours"] == pytest.approx(far.fpr95tpr.iloc[0])
    assert long.loc["far FPR", "metric"] == "fpr95tpr"
    assert pd.isna(long.loc["covariate AUROC", "ours"])  # the pair has no such set
    assert long.loc["covariate AUROC", "status"].startswith("missing: no covariate")
    assert "near OOD sets: fashionmnist, notmnist" in md.read_text()


def _agreement_spec(methods: dict, libraries: list[str]) -> dict:
    return {"name": "agree", "kind": "agreement", "libraries": libraries,
            "agree_if": {"spearman": 0.99, "auroc_difference": 0.005},
            "runs": {"m": {"overrides": ["pair=mnist", "backbone=lenet"]}},
            "methods": methods}


def test_agreement_table_separates_equal_and_different_scores(root, tmp_path,
                                                               monkeypatch) -> None:
    """Identical detectors agree (rho = 1, difference 0); MSP vs KNN is flagged."""
    monkeypatch.setenv("OOD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    spec = _agreement_spec({"same": ["pytorch_ood/msp", "pytorch_ood/msp"],
                            "different": ["pytorch_ood/msp", "pytorch_ood/knn"],
                            "broken": ["pytorch_ood/msp", "pytorch_ood/mcd"]}, ["a", "b"])
    md = build("agree", SMALL, out_root=tmp_path / "tables", spec=spec,
               runs_root=tmp_path / "runs")
    long = pd.read_csv(tmp_path / "tables" / "agree.csv").set_index("method")
    same, diff = long.loc["same"], long.loc["different"]
    assert same["Spearman rho (all samples)"] == pytest.approx(1.0)
    assert same["AUROC difference"] == 0 and same.verdict == "agree"
    rows = pd.read_csv(tmp_path / "tables" / "agree_runs" / "m" / "metrics.csv")
    knn = rows[(rows.detector == "pytorch_ood_knn") & (rows.status == "ok")].auroc.mean()
    assert diff["AUROC B"] == pytest.approx(knn)
    assert (diff["library A"], diff["library B"]) == ("a", "b")
    assert diff["Spearman rho (all samples)"] < 0.99 and diff.verdict == "DISAGREE"
    assert long.loc["broken"].status.startswith("failed: b: ")  # MCD: LeNet has no dropout
    text = md.read_text()
    assert "DISAGREE" in text and "failed: b:" in text and "manifest.json" in text


def test_committed_agreement_table_runs_with_every_library(root, openood, oodeel, tmp_path,
                                                           monkeypatch) -> None:
    """MSP and Energy from all three libraries on the same cached logits rank identically
    (every pair: pytorch-ood/OpenOOD, pytorch-ood/Oodeel, OpenOOD/Oodeel)."""
    monkeypatch.setenv("OOD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    committed = load_table("library_agreement")
    methods = {m: committed["methods"][m] for m in ("MSP", "Energy")}  # canonical ids
    build("agree", SMALL, out_root=tmp_path / "tables",
          spec=_agreement_spec(methods, committed["libraries"]), runs_root=tmp_path / "runs")
    long = pd.read_csv(tmp_path / "tables" / "agree.csv")
    assert len(long) == 2 * 3
    assert {tuple(p) for p in long[["library A", "library B"]].values} == {
        ("pytorch_ood", "openood"), ("pytorch_ood", "oodeel"), ("openood", "oodeel")}
    assert (long["Spearman rho (all samples)"] > 0.9999).all()
    assert (long.verdict == "agree").all()


def test_seeds_give_mean_and_sd_per_cell(root, tmp_path, monkeypatch) -> None:
    """``seeds: [0, 1]`` runs the table's run once per backbone seed; a cell is the mean over
    them with their sd, and an agreement table checks every seed."""
    monkeypatch.setenv("OOD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    spec = {"name": "seeded", "seeds": [0, 1],
            "runs": {"m": {"overrides": ["pair=mnist", "backbone=lenet"]}},
            "detectors": {"MSP": "pytorch_ood/msp"},
            "columns": [{"run": "m", "group": "near", "label": "near AUROC"}]}
    md = build("seeded", SMALL, out_root=tmp_path / "tables", spec=spec,
               runs_root=tmp_path / "runs")
    cell = pd.read_csv(tmp_path / "tables" / "seeded.csv").iloc[0]
    per_seed = []
    for seed in (0, 1):
        rows = pd.read_csv(tmp_path / "tables" / "seeded_runs" / "m" / f"seed_{seed}"
                           / "metrics.csv")
        per_seed.append(rows[(rows.detector == "pytorch_ood_msp")
                             & (rows.ood_group == "near")].auroc.mean())
    assert per_seed[0] != per_seed[1]  # two networks
    assert cell.seeds == 2 and cell.ours == pytest.approx(sum(per_seed) / 2)
    assert cell.sd == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)
    (rows, *_) = markdown.tables(md.read_text())
    assert rows[0]["near AUROC"] == f"{cell.ours:.4f} ± {cell.sd:.4f}"
    assert "m/seed_1" in md.read_text()
    agree = {**_agreement_spec({"same": ["pytorch_ood/msp", "pytorch_ood/msp"]}, ["a", "b"]),
             "seeds": [0, 1]}
    build("agree", SMALL, out_root=tmp_path / "tables", spec=agree, runs_root=tmp_path / "runs")
    long = pd.read_csv(tmp_path / "tables" / "agree.csv")
    assert sorted(long.seed) == [0, 1] and (long.verdict == "agree").all()
    assert "| 2 |" in (tmp_path / "tables" / "agree.md").read_text()  # the seeds column


def test_a_seed_without_its_checkpoint_is_left_out_and_said() -> None:
    from benchmark.studies.paper_tables import missing_checkpoint, run_seeds

    seeds = run_seeds({"overrides": [], "seeds": {0: ["backbone.checkpoint=a.pt"]}}, {})
    assert seeds == {0: ["backbone.recipe.seed=0", "backbone.checkpoint=a.pt"]}
    assert run_seeds({"overrides": []}, {"seeds": [3]}) == {3: ["backbone.recipe.seed=3"]}
    assert run_seeds({"overrides": []}, {}) == {None: []}
    assert missing_checkpoint(["backbone.checkpoint=results/checkpoints/resnet20_cifar10.pt"]
                              ) is None  # committed: found from any directory
    why = missing_checkpoint(["backbone.checkpoint=results/checkpoints/nope_s9.pt"])
    assert "nope_s9.pt not found" in why and "train_backbone.py" in why
    assert missing_checkpoint(["pair=mnist"]) is None  # trained by the harness


def test_tuned_rows_come_from_the_runs_tuned_detector(root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OOD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    spec = {"name": "tuned",
            "runs": {"m": {"overrides": ["pair=mnist", "backbone=lenet", "tune=true",
                                         "data.validation_size=300"]}},
            "detectors": {"KNN": "pytorch_ood/knn",
                          "KNN (tuned)": {"option": "pytorch_ood/knn", "tuned": True}},
            "columns": [{"run": "m", "ood": "notmnist", "label": "notMNIST"}]}
    build("tuned", SMALL, out_root=tmp_path / "tables", spec=spec, runs_root=tmp_path / "runs")
    long = pd.read_csv(tmp_path / "tables" / "tuned.csv").set_index("row")
    rows = pd.read_csv(tmp_path / "tables" / "tuned_runs" / "m" / "metrics.csv")
    for label, det in (("KNN", "pytorch_ood_knn"), ("KNN (tuned)", "pytorch_ood_knn_tuned")):
        ours = rows[(rows.detector == det) & (rows.ood_dataset == "notmnist")].auroc.iloc[0]
        assert long.loc[label, "ours"] == pytest.approx(ours)
