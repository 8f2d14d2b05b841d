"""Library import time is charged to ``import_seconds`` of the first detector that needs it,
never to a fit."""

from __future__ import annotations

import pandas as pd

from adapters.registry import import_library, library_modules
from tests.commands import ood_bench
from tests.conftest import SWEEP_SMALL


def test_the_first_detector_of_a_library_pays_its_import_not_its_fit(openood, root,
                                                                     tmp_path) -> None:
    # OpenOOD's postprocessors are imported lazily by the adapter (about 1.5 s here)
    assert "openood.postprocessors" in library_modules("openood")
    proc = ood_bench(["detector=openood/default", *SWEEP_SMALL, "cache_scores=false",
                      f"hydra.run.dir={tmp_path}"], tmp_path / "cache", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "metrics.csv").drop_duplicates("detector")
    first, rest = frame.iloc[0], frame.iloc[1:]
    assert first.import_seconds > 0.2 > first.fit_seconds, first  # MSP's fit is trivial
    assert (rest.import_seconds < 0.05).all(), rest[["detector", "import_seconds"]]
    import_library("openood")
    assert import_library("openood") < 0.05  # once imported, nothing to pay
