"""The score cache: its key changes with everything that decides scores, and only then."""

from __future__ import annotations

import numpy as np

from benchmark.runner import score_cache

SPEC = {"library": "pytorch_ood", "name": "ReAct", "params": {"percentile": 0.9}}
REPS = {"fit": "a", "id_test": "b", "ood/x": "c"}


def test_key_tracks_params_representations_device_and_library() -> None:
    key = score_cache.score_key(SPEC, REPS, "cpu")
    assert key == score_cache.score_key(dict(SPEC), dict(REPS), "cpu")  # stable
    assert len(key) == 32 and int(key, 16) >= 0
    other_param = {**SPEC, "params": {"percentile": 0.95}}
    assert key != score_cache.score_key(other_param, REPS, "cpu")
    assert key != score_cache.score_key({**SPEC, "name": "ASH"}, REPS, "cpu")
    assert key != score_cache.score_key({**SPEC, "library": "openood"}, REPS, "cpu")
    assert key != score_cache.score_key(SPEC, {**REPS, "ood/x": "d"}, "cpu")
    assert key != score_cache.score_key(SPEC, REPS, "cuda")


def test_key_tracks_the_source_and_version_of_its_own_library(monkeypatch) -> None:
    """Editing (or upgrading) the detector's library changes its key; another library's does
    not."""
    def keyed(sources: dict[str, str], versions: dict[str, str]) -> str:
        monkeypatch.setattr(score_cache, "source_hash", lambda lib: sources.get(lib, "same"))
        monkeypatch.setattr(score_cache, "installed_version", lambda lib: versions.get(lib, "1"))
        return score_cache.score_key(SPEC, REPS, "cpu")

    key = keyed({}, {})
    assert keyed({"pytorch_ood": "edited"}, {}) != key
    assert keyed({"openood": "edited"}, {}) == key
    assert keyed({}, {"pytorch_ood": "9.9"}) != key
    assert keyed({}, {"openood": "9.9"}) == key


def test_key_does_not_depend_on_dict_order() -> None:
    """Hydra may hand the same config with its keys in another order."""
    spec = {"library": "pytorch_ood", "name": "ReAct", "params": {"a": 1, "b": 2}}
    reordered = {"params": {"b": 2, "a": 1}, "name": "ReAct", "library": "pytorch_ood"}
    reps = dict(reversed(list(REPS.items())))
    assert score_cache.score_key(spec, REPS, "cpu") == score_cache.score_key(reordered, reps,
                                                                           "cpu")


def test_source_hash_is_a_digest_of_the_files(tmp_path, monkeypatch) -> None:
    digest = score_cache.source_hash("pytorch_ood")
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert digest != score_cache.source_hash("inhouse")
    assert score_cache.source_hash("no_such_library_module") == "unavailable"
    source = tmp_path / "adapter.py"
    source.write_text("x = 1\n")
    monkeypatch.setattr(score_cache, "source_files", lambda library: [source])
    first = score_cache.source_hash("anything")
    source.write_text("x = 2\n")
    assert score_cache.source_hash("anything") != first  # an edit is a new key
    monkeypatch.setattr(score_cache, "source_files", lambda library: [])
    assert score_cache.source_hash("anything") == "unavailable"


def test_in_house_scores_are_keyed_by_the_package_source_too() -> None:
    """The in-house library ships with ood-bench (no distribution version to tell an edit)."""
    from adapters.registry import source_files

    names = {f.name for f in source_files("inhouse")}
    assert {"inhouse.py", "statistical.py", "conformal.py", "combiners.py"} <= names
    assert {f.name for f in source_files("pytorch_ood")} == {"__init__.py", "adapter.py"}


def test_round_trip_keeps_split_keys_and_timings(tmp_path) -> None:
    scores = {"id_test": np.arange(3.0), "ood/fashion mnist": np.ones(2)}
    meta = {"fit_seconds": 1.5, "score_seconds": {"id_test": 0.1}, "consumes": "logits"}
    score_cache.save(tmp_path, "k", scores, meta)
    back, meta_back = score_cache.load(tmp_path, "k")
    assert set(back) == set(scores) and np.array_equal(back["ood/fashion mnist"], np.ones(2))
    assert meta_back == meta
    assert score_cache.load(tmp_path, "other") is None
    path = tmp_path / "scores" / "k.npz"
    path.write_bytes(path.read_bytes()[:-40])
    assert score_cache.load(tmp_path, "k") is None  # damaged: recomputed, never half-read
