"""A failure is a result: a detector raising anything (``SystemExit`` included) is a failed
row; ^C stops the run but writes what finished; the console mean never mixes set counts."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from adapters.base import Consumes
from benchmark.config_groups import CONFIG_DIR
from benchmark.runner import evaluate
from benchmark.runner.summary import auroc_matrix
from tests.commands import SMALL


class _Exits:
    consumes = Consumes.LOGITS

    def fit(self, *args, **kwargs) -> None:
        raise SystemExit("a library called sys.exit()")


@pytest.mark.parametrize("where", ["fit", "score"])
def test_a_detector_raising_systemexit_is_a_failed_result(world, monkeypatch, where) -> None:
    det = _Exits()
    if where == "score":
        det.fit = lambda *a, **k: None
        det.score = lambda *a, **k: (_ for _ in ()).throw(SystemExit(3))
    monkeypatch.setattr(evaluate, "build", lambda spec: det)
    monkeypatch.setattr(evaluate, "private_network", lambda prep, batch_size: None)
    prep = SimpleNamespace(reps={"fit": world.fit, "calibration": world.calibration,
                                 "id_test": world.id, "ood/x": world.ood},
                           scored_keys=["id_test", "ood/x"])
    out = evaluate.evaluate_detector({"library": "fake", "name": "exits"}, prep, 64)
    assert set(out.errors) == {"id_test", "ood/x"}
    assert all(e.startswith("SystemExit") for e in out.errors.values())


def test_keyboard_interrupt_writes_what_finished(root, tmp_path, monkeypatch) -> None:
    """^C during the second detector: the first one's rows and the manifest (marked
    interrupted) are written, then the interrupt goes on."""
    import benchmark.runner.run as run_mod

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            *SMALL, f"data.root={root}", f"cache_dir={tmp_path / 'cache'}",
            "detector=pytorch_ood/msp", "+detectors.second={library: pytorch_ood, "
            "name: EnergyBased, params: {}}", "analysis.inhouse=false",
            "bootstrap.resamples=0"])
    calls = []
    original = run_mod.cached_outcome

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(run_mod, "cached_outcome", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run(cfg, tmp_path / "out")
    frame = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert set(frame.detector) == {"pytorch_ood_msp"} and (frame.status == "ok").all()
    import json

    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["interrupted"] is True


def test_console_mean_only_over_detectors_with_every_set() -> None:
    rows = []
    for det, sets in (("full", {"a": 0.9, "b": 0.5}), ("partial", {"a": 0.99})):
        for name in ("a", "b"):
            ok = name in sets
            rows.append({"detector": det, "ood_dataset": name, "auroc": sets.get(name),
                         "status": "ok" if ok else "failed"})
    table = auroc_matrix(pd.DataFrame(rows))
    assert table.loc["full", "mean"] == pytest.approx(0.7)
    assert pd.isna(table.loc["partial", "mean"]) and table.loc["partial", "sets"] == "1/2 partial"
    assert list(table.index) == ["full", "partial"]  # a partial row never outranks by its mean
