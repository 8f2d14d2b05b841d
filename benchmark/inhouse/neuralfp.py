"""NeuralFP: one small autoencoder per monitored layer; flag inputs whose reconstruction error
leaves the ID band in any layer.

Each layer's input is its per-channel statistics vector (the chosen reductions, concatenated,
standardised on the fit split). The band is two-sided (OOD errors are not always larger): per
layer, the two-sided rank p-value of the error against the calibration split's errors; an input is
flagged when any layer's p-value is at most ``alpha / L`` (Bonferroni over layers, so the ID
false-alarm rate is at most alpha). Ranking score: ``-log(min_l p_l)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .conformal import tie_break
from .layout import Stats, plan_units
from .ranks import SortedReference, pvalues_from_counts
from .reductions import check_reductions


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny matrices: intra-op threading costs more than it saves (badly so on a busy machine).

    The previous setting is restored on exit.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _autoencoder(dim: int, hidden: int, bottleneck: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, bottleneck),
        nn.ReLU(),
        nn.Linear(bottleneck, hidden),
        nn.ReLU(),
        nn.Linear(hidden, dim),
    )


class NeuralFP:
    """Per-layer autoencoder fingerprints with conformal two-sided bands.

    Parameters: ``reductions`` concatenated per layer; ``layers`` (None = all); autoencoder
    ``hidden`` width (capped at the input size) and ``bottleneck`` (None = input size // 8, at
    least 2); ``epochs``, ``batch_size``, ``lr``; ``max_fit_samples`` caps training inputs (seeded
    subsample) to keep fitting to seconds; ``seed`` makes training deterministic.
    """

    def __init__(
        self,
        reductions: Sequence[str] = ("max", "mean"),
        layers: Sequence[str] | None = None,
        hidden: int = 64,
        bottleneck: int | None = None,
        epochs: int = 10,
        batch_size: int = 512,
        lr: float = 3e-3,
        max_fit_samples: int | None = 20000,
        seed: int = 0,
    ) -> None:
        self.reductions = reductions
        self.layers = layers
        self.hidden = hidden
        self.bottleneck = bottleneck
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_fit_samples = max_fit_samples
        self.seed = seed

    # ------------------------------------------------------------------ data
    def _layer_inputs(self, stats: Stats) -> list[np.ndarray]:
        return [
            np.concatenate(
                [np.asarray(stats[layer][r], dtype=np.float32) for r in self.reductions_], axis=1
            )
            for layer in self.layer_names_
        ]

    def _standardised(self, j: int, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((x - self.means_[j]) / self.scales_[j])

    # ------------------------------------------------------------------ fit / calibrate
    def fit(self, stats: Stats) -> NeuralFP:
        """Train one autoencoder per layer on the fit split's statistics."""
        self.reductions_ = check_reductions(self.reductions)
        units = plan_units(stats, self.layers, self.reductions_)
        self.layer_names_ = list(dict.fromkeys(u.layer for u in units))
        inputs = self._layer_inputs(stats)
        n = len(inputs[0])
        rng = np.random.default_rng(self.seed)
        if self.max_fit_samples is not None and n > self.max_fit_samples:
            keep = np.sort(rng.choice(n, self.max_fit_samples, replace=False))
            inputs = [x[keep] for x in inputs]
        self.means_ = [x.mean(axis=0) for x in inputs]
        self.scales_ = [np.maximum(x.std(axis=0), 1e-6).astype(np.float32) for x in inputs]
        self.models_ = [self._train(j, x) for j, x in enumerate(inputs)]
        self.calibration_: SortedReference | None = None
        return self

    def _train(self, j: int, x: np.ndarray) -> nn.Module:
        data = self._standardised(j, x)
        dim = data.shape[1]
        with torch.random.fork_rng(devices=[]), _one_thread():
            torch.manual_seed(self.seed + j)
            model = _autoencoder(dim, min(self.hidden, dim), self.bottleneck or max(2, dim // 8))
            gen = torch.Generator().manual_seed(self.seed + j)
            opt = torch.optim.Adam(model.parameters(), lr=self.lr)
            model.train()
            for _ in range(self.epochs):
                perm = torch.randperm(len(data), generator=gen)
                for start in range(0, len(data), self.batch_size):
                    batch = data[perm[start : start + self.batch_size]]
                    loss = ((model(batch) - batch) ** 2).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        model.eval()
        return model

    def errors(self, stats: Stats) -> np.ndarray:
        """``m x L`` reconstruction errors (mean squared, standardised units, float32)."""
        if not hasattr(self, "models_"):
            raise RuntimeError("call fit() first")
        out = []
        with torch.no_grad(), _one_thread():
            for j, x in enumerate(self._layer_inputs(stats)):
                parts = [
                    ((self.models_[j](b) - b) ** 2).mean(dim=1)
                    for b in self._standardised(j, x).split(8192)
                ]
                out.append(torch.cat(parts).numpy() if parts else np.zeros(0, np.float32))
        return np.stack(out, axis=1)

    def calibrate(self, stats: Stats) -> NeuralFP:
        """Keep the calibration split's errors: they define each layer's two-sided band."""
        err = self.errors(stats)
        self.calibration_ = SortedReference.from_values(err)
        self.calibration_errors_ = np.sort(err, axis=0)
        log_err = np.log(np.maximum(err, 1e-30))
        self.log_median_ = np.median(log_err, axis=0)
        self.log_spread_ = np.maximum(np.median(np.abs(log_err - self.log_median_), axis=0), 1e-12)
        return self

    # ------------------------------------------------------------------ scoring
    def _check_calibrated(self) -> None:
        if getattr(self, "calibration_", None) is None:
            raise RuntimeError("call calibrate() on held-out ID data before scoring")

    def layer_pvalues(self, stats: Stats, errors: np.ndarray | None = None) -> np.ndarray:
        """``m x L`` two-sided conformal p-values of each layer's error."""
        self._check_calibrated()
        err = self.errors(stats) if errors is None else errors
        return pvalues_from_counts(self.calibration_.tail_counts(err), self.calibration_.n)

    def pvalues(self, stats: Stats) -> np.ndarray:
        """Bonferroni-adjusted ``min(1, L * min_l p_l)``: a valid p-value per input."""
        p = self.layer_pvalues(stats)
        return np.minimum(1.0, p.shape[1] * p.min(axis=1))

    def score(self, stats: Stats) -> np.ndarray:
        """``-log(min_l p_l)`` (higher = more OOD); ties broken by the most atypical log-error."""
        err = self.errors(stats)
        p = self.layer_pvalues(stats, err)
        z = np.abs(np.log(np.maximum(err, 1e-30)) - self.log_median_) / self.log_spread_
        return tie_break(-np.log(p.min(axis=1)), z.max(axis=1))

    def decide(self, stats: Stats, alpha: float) -> np.ndarray:
        """OOD iff some layer's error leaves its band at level ``alpha / L``."""
        p = self.layer_pvalues(stats)
        return (p <= alpha / p.shape[1]).any(axis=1)

    def bands(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer ``(lower, upper)``: :meth:`decide` flags ``e < lower`` or ``e > upper``."""
        self._check_calibrated()
        errs = self.calibration_errors_
        n, n_layers = errs.shape
        k = int(np.floor(alpha / n_layers * (n + 1) / 2 - 1 + 1e-12))
        if k < 0:
            return np.full(n_layers, -np.inf), np.full(n_layers, np.inf)
        return errs[k].astype(np.float64), errs[n - 1 - k].astype(np.float64)
