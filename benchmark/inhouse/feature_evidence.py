"""Feature-space evidences that use the classes: class-relative Mahalanobis and class-wise PPCA.

Both read the penultimate (globally pooled) features and are fitted with a class per input (the
training labels when given, else the predictions); their ``needs_classes`` flag tells the
detector to pass them. Scores are higher = more OOD.

- :class:`RMDEvidence`: relative Mahalanobis distance (Ren et al. 2021): distance to the closest
  class Gaussian (shared covariance) minus the distance to one background Gaussian.
- :class:`LayerMahalanobisEvidence`: class-conditional Mahalanobis distance (shared
  covariance, closest class) on each monitored layer's channel vector, the layers combined by
  Fisher over their chi-square tails (a statistic; the detector references it conformally):
  the per-layer evidence of MDS-ensemble and Oodeel's Fisher aggregator.
- :class:`OpenPCSEvidence`: one probabilistic PCA per class (Tipping & Bishop 1999), score =
  minus the largest class log-likelihood: the feature-space detector of Carvalho, Vellasco and
  Amaral (IJCNN 2023), called OpenPCS-Class in their public code.
"""

from __future__ import annotations

import numpy as np
from scipy import special
from scipy import stats as sps

from .reference import class_groups

_RIDGE = 1e-6  # relative to the mean variance: keeps covariances invertible


def chi2_logsf(x: np.ndarray, df: int) -> np.ndarray:
    """``log P(chi2_df >= x)``, finite far in the tail (where scipy's underflows to -inf: the
    leading term of the asymptotic series, ``(k - 1) log(x/2) - x/2 - lgamma(k)``, k = df/2)."""
    out = sps.chi2.logsf(x, df)
    far = ~np.isfinite(out)
    if far.any():
        k = df / 2.0
        xf = np.maximum(x[far], 1e-300)
        out[far] = (k - 1.0) * np.log(xf / 2.0) - xf / 2.0 - special.gammaln(k)
    return out


def _classes_or_raise(classes: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if classes is None or len(classes) != n:
        raise ValueError(f"evidence {name!r} needs one class per fit input")
    return np.asarray(classes, dtype=np.int64)


def _precision(centred: np.ndarray) -> np.ndarray:
    cov = centred.T @ centred / max(1, len(centred) - 1)
    cov += _RIDGE * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
    return np.linalg.inv(cov)


def _mahalanobis(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = x - mean
    return ((d @ precision) * d).sum(1)


class RMDEvidence:
    """Relative Mahalanobis distance: ``min_c MD_c(x) - MD_0(x)``."""

    needs_classes = True

    def __init__(self, source: str = "features") -> None:
        self.source = source
        self.name = "rmd"

    def fit(self, x: np.ndarray, classes: np.ndarray | None = None) -> RMDEvidence:
        x = np.asarray(x, dtype=np.float64)
        classes = _classes_or_raise(classes, len(x), self.name)
        order, groups = class_groups(classes)
        self.means_ = np.stack([x[order[a:b]].mean(0) for _, a, b in groups])
        centred = np.concatenate([x[order[a:b]] - self.means_[i]
                                  for i, (_, a, b) in enumerate(groups)])
        self.precision_ = _precision(centred)
        self.background_mean_ = x.mean(0)
        self.background_precision_ = _precision(x - self.background_mean_)
        return self

    def closest_class_distance(self, x: np.ndarray) -> np.ndarray:
        """``min_c MD_c(x)``, expanded as ``x'Px - 2 x'P mu_c + mu_c'P mu_c`` (one matrix product
        for all classes)."""
        x = np.asarray(x, dtype=np.float64)
        xp = x @ self.precision_
        per_class = ((xp * x).sum(1)[:, None] - 2.0 * xp @ self.means_.T
                     + np.einsum("kd,de,ke->k", self.means_, self.precision_, self.means_))
        return per_class.min(1)

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return self.closest_class_distance(x) - _mahalanobis(x, self.background_mean_,
                                                             self.background_precision_)


class OpenPCSEvidence:
    """Class-wise probabilistic PCA with ``n_components``; score = ``-max_c log p(x | c)``."""

    needs_classes = True

    def __init__(self, n_components: int = 8, source: str = "features") -> None:
        if n_components < 1:
            raise ValueError("n_components must be >= 1")
        self.n_components = n_components
        self.source = source
        self.name = "openpcs"

    def fit(self, x: np.ndarray, classes: np.ndarray | None = None) -> OpenPCSEvidence:
        x = np.asarray(x, dtype=np.float64)
        classes = _classes_or_raise(classes, len(x), self.name)
        order, groups = class_groups(classes)
        d = x.shape[1]
        q = min(self.n_components, d - 1)
        self.models_ = []
        for _, a, b in groups:
            rows = x[order[a:b]]
            if len(rows) <= q + 1:
                raise ValueError(f"evidence 'openpcs': a class has {len(rows)} fit inputs, "
                                 f"fewer than n_components + 2 = {q + 2}")
            mean = rows.mean(0)
            cov = np.cov(rows - mean, rowvar=False)
            vals, vecs = np.linalg.eigh(cov)
            vals, vecs = vals[::-1], vecs[:, ::-1]
            sigma2 = max(float(vals[q:].mean()), 1e-12)
            top = np.maximum(vals[:q], sigma2 * (1 + 1e-9))
            log_det = float(np.log(top).sum() + (d - q) * np.log(sigma2))
            self.models_.append((mean, vecs[:, :q], top, sigma2, log_det))
        self.dim_ = d
        return self

    def log_likelihoods(self, x: np.ndarray) -> np.ndarray:
        """``m x K`` Gaussian log-likelihoods under each class's PPCA."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), len(self.models_)))
        for k, (mean, basis, top, sigma2, log_det) in enumerate(self.models_):
            d = x - mean
            z = d @ basis
            resid = np.maximum((d * d).sum(1) - (z * z).sum(1), 0.0)
            quad = (z * z / top).sum(1) + resid / sigma2
            out[:, k] = -0.5 * (self.dim_ * np.log(2 * np.pi) + log_det + quad)
        return out

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.log_likelihoods(x).max(axis=1)


class LayerMahalanobisEvidence:
    """Per-layer closest-class Mahalanobis distance on the layers' spatial-mean vectors, the
    layers combined by Fisher over ``P(chi2_C >= d)`` (C = the layer's channels). Reads the
    per-layer statistics (``source="layer_stats"``: ``{layer: {"mean": N x C}}``)."""

    needs_classes = True

    def __init__(self, reduction: str = "mean", source: str = "layer_stats") -> None:
        self.reduction = reduction
        self.source = source
        self.name = "layer_mahalanobis"

    def _layers(self, stats) -> dict[str, np.ndarray]:
        return {k: np.asarray(v[self.reduction], dtype=np.float64) for k, v in stats.items()}

    def fit(self, stats, classes: np.ndarray | None = None) -> LayerMahalanobisEvidence:
        self.models_ = {name: RMDEvidence().fit(x, classes)
                        for name, x in self._layers(stats).items()}
        return self

    def score(self, stats) -> np.ndarray:
        total = None
        for name, x in self._layers(stats).items():
            d = self.models_[name].closest_class_distance(x)
            term = -2.0 * chi2_logsf(np.maximum(d, 0.0), x.shape[1])
            total = term if total is None else total + term
        return total
