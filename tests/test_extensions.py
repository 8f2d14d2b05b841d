"""Extending the harness without editing it: a detector library from a module outside the
package (dotted path or entry point) and a pair from the user's own config folder, through the
real command line; the contract checks run on the outside adapter too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from adapters.registry import BUILTIN
from benchmark.config_groups import check_overrides, group_options, search_dirs
from tests.commands import SMALL, ood_bench

ADAPTER = '''
"""A detector library that lives outside ood-bench: the negated max logit."""

import numpy as np

from adapters.base import LibraryInfo, LogitDetector

LIBRARY_INFO = LibraryInfo(name="my_ood_adapter", title="mine", package="my_ood_adapter",
                           distribution=None, pinned=None, install_hint="put it on PYTHONPATH",
                           methods={"NegMaxLogit": "maxlogit"})


class NegMaxLogit(LogitDetector):
    library = "my_ood_adapter"

    def fit(self, id_fit, network, calibration=None):
        self.fitted_ = True
        return self

    def score(self, split, network):
        self.check_fitted()
        return -split.logits.max(axis=1).astype(np.float64)


def available():
    return ["NegMaxLogit"]


def build(name, params):
    return NegMaxLogit(name, **params)
'''


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> dict[str, Path]:
    """A user's code folder (adapter module + an entry-point registration) and config folder."""
    base = tmp_path_factory.mktemp("user")
    code, configs = base / "code", base / "configs"
    (code / "my_ood_adapter.py").parent.mkdir(parents=True)
    (code / "my_ood_adapter.py").write_text(ADAPTER)
    dist = code / "my_ood_ext-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-ood-ext\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ood_bench.adapters]\nmyext = my_ood_adapter\n")
    (configs / "pair").mkdir(parents=True)
    (configs / "pair" / "mine.yaml").write_text(textwrap.dedent("""\
        name: mine
        id: {dataset: mnist, train_split: train, test_split: test}
        ood:
          letters: {dataset: notmnist, split: test, group: near}
        """))
    (configs / "detector").mkdir()
    (configs / "detector" / "mine.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        detectors:
          mine_dotted: {library: my_ood_adapter, name: NegMaxLogit, params: {}}
          mine_entry_point: {library: myext, name: NegMaxLogit, params: {}}
          pytorch_ood_maxlogit: {library: pytorch_ood, name: MaxLogit, params: {}}
        """))
    return {"code": code, "configs": configs}


def test_user_config_folders_pass_the_option_check(user) -> None:
    folder = str(user["configs"])
    assert "mine" in group_options("pair", search_dirs(["--config-dir", folder]))
    assert check_overrides(["pair=mine"]) is not None  # not known without the folder
    for args in (["--config-dir", folder, "pair=mine"], [f"--config-dir={folder}", "pair=mine"],
                 ["-cd", folder, "pair=mine"], [f"hydra.searchpath=[file://{folder}]",
                                                "pair=mine"]):
        assert check_overrides(args) is None, args


def test_outside_detector_and_user_pair_through_the_real_cli(user, root, cache_dir,
                                                             tmp_path) -> None:
    env = {"PYTHONPATH": str(user["code"])}
    proc = ood_bench(["--config-dir", str(user["configs"]), "pair=mine", "detector=mine",
                      *SMALL, f"hydra.run.dir={tmp_path}"], cache_dir, root, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "metrics.csv")
    assert set(frame.ood_dataset) == {"letters"} and (frame.status == "ok").all()
    auroc = frame.set_index("detector").auroc
    # the negated max logit ranks exactly as pytorch-ood's MaxLogit: same AUROC to the last bit
    assert auroc["mine_dotted"] == auroc["mine_entry_point"] == auroc["pytorch_ood_maxlogit"]
    assert frame.set_index("detector").library["mine_entry_point"] == "myext"


def test_unknown_library_is_a_clear_error(tmp_path, root, cache_dir) -> None:
    proc = ood_bench([*SMALL, "detector=pytorch_ood/msp",
                      "+detectors.x={library: no_such_adapter_module, name: A, params: {}}",
                      f"hydra.run.dir={tmp_path}"], cache_dir, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = pd.read_csv(tmp_path / "metrics.csv").set_index("detector").loc["x"]
    assert (row.status == "failed").all()
    assert row.error.str.contains("unknown detector library 'no_such_adapter_module'").all()


def test_a_module_that_is_not_an_adapter_is_named() -> None:
    from adapters.base import DetectorError
    from adapters.registry import build_detector

    with pytest.raises(DetectorError, match="'json' is not a detector adapter: it has no "
                       "build or available"):
        build_detector("json", "x")


def test_the_contract_checks_run_on_an_outside_adapter(user, world, monkeypatch) -> None:
    from adapters import registry
    from adapters.checks import ContractData, check_detector
    from tests.world import with_rows

    monkeypatch.syspath_prepend(str(user["code"]))
    x, y = world.tensors["test"]
    data = ContractData(fit=world.fit, calibration=world.calibration, other_fit=world.calibration,
                        test=world.test, rows=lambda idx, bs: with_rows(world.test, idx, x, y, bs),
                        network=world.network)
    check_detector(lambda: registry.build_detector("my_ood_adapter", "NegMaxLogit"), data)
    info = registry.library_info("my_ood_adapter")
    assert info.title == "mine" and info.method("NegMaxLogit") == "maxlogit"


def test_entry_point_adapters_are_listed(user) -> None:
    code = "from adapters.registry import libraries; print(','.join(libraries()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(user["code"])}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().split(",") == [*BUILTIN, "myext"]
