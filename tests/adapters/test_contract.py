"""One contract, every detector of every registered library (``adapters.checks``): fit then
score gives one finite float per row, scoring before fit raises the harness error, a refit
starts fresh, the shared model is untouched, scores do not depend on batch size or row order,
same seed gives the same scores.

A library whose detectors cannot be built here (not installed) is skipped with the reason, or
fails where it is required (``OOD_BENCH_REQUIRE``). The per-library test files keep only each
library's quirks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters import registry
from adapters.base import DetectorError
from adapters.checks import ContractData, check_detector
from tests.conftest import unavailable
from tests.world import N_FIT, with_rows

# cheaper than the pinned defaults, only where the cost is linear in a sampling count or epochs
CHEAPER = {("pytorch_ood", "MCD"): {"samples": 8}, ("inhouse", "NeuralFP"): {"epochs": 4},
           **{("anomaly", deep): {"epochs": 1} for deep in ("AE", "DAE", "VAE", "FCDD")}}
CASES = [(lib, name) for lib in registry.libraries() for name in registry.available(lib)]


def test_every_registered_library_offers_detectors() -> None:
    assert {"pytorch_ood", "openood", "oodeel", "inhouse", "anomaly"} <= set(registry.libraries())
    counts = {lib: len(registry.available(lib)) for lib in registry.libraries()}
    assert counts["pytorch_ood"] == 34 and counts["openood"] == 32 and counts["inhouse"] == 4
    assert counts["oodeel"] == 15 and counts["anomaly"] == 6


@pytest.fixture(scope="module")
def contract_data(world) -> ContractData:
    x, y = world.tensors["test"]
    other = world.calibration.subset(np.arange(N_FIT // 2))  # a different ID split to fit on
    xc, yc = world.tensors["calibration"]
    other.inputs = with_rows(world.calibration, np.arange(N_FIT // 2), xc, yc).inputs
    return ContractData(fit=world.fit, calibration=world.calibration, other_fit=other,
                        test=world.test, rows=lambda idx, bs: with_rows(world.test, idx, x, y, bs),
                        network=world.network)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one intra-op thread is faster on a shared, busy CPU; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("library", "name"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_detector_contract(library: str, name: str, contract_data: ContractData) -> None:
    params = CHEAPER.get((library, name), {})

    def make():
        return registry.build_detector(library, name, params)

    try:
        make()
    except DetectorError as exc:
        if "not importable" in str(exc):
            unavailable(library, f"{library} cannot build detectors here: {exc}")
        raise
    deviations = registry.library_info(library).known_deviations.get(name, {})
    check_detector(make, contract_data, deviations)
