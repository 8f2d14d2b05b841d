"""Selection, clustering and the "new class" rule: the batch pipeline (the stream monitor
runs it on a window).

A cluster of selected inputs is called a new class when it is
- large: at least ``min_size`` inputs;
- stable: its mean best Jaccard overlap with the clusters found on random 80 % subsets is at
  least ``stability`` (Hennig 2007's clusterwise stability, subsets instead of the bootstrap
  because a density clustering reads repeated rows as dense spots);
- compact: its median distance to its centroid is at most ``spread_factor`` times that of the
  loosest known class (ID data);
- in the domain: its median feature norm is at least the ID norm quantile (far-OOD junk
  activates the classifier weakly);
- not a known class: its centroid is not inside a known class (closer to that class's
  centroid than the class's median spread), where a detector's false selections of that
  class would gather;
- above the ID background (when ``background_alpha`` is set): more inputs than ID data would
  put in its ball. ID images a detector flags are not spread evenly: atypical images of a known
  class gather beside it, and a handful of them in one window looks like a small new class.
  The rate at which ID validation images are selected (p-value at most the window's selection
  threshold), pass the domain gate and fall within the cluster's radius of its centroid, times
  the window's size, is the count ID data alone would bring; the cluster is new only when its
  size is beyond that count's Poisson tail at ``background_alpha`` (a scan statistic).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import poisson
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.metrics import silhouette_score

from benchmark.inhouse.conformal import benjamini_hochberg
from benchmark.studies.novelty.space import ClusterSpace, median_spread

METHODS = ("hdbscan", "kmeans_silhouette", "kmeans_bic")


@dataclass
class AlarmRule:
    """The thresholds of a new-class call (``min_size`` is set on validation streams)."""

    min_size: int = 10
    stability: float = 0.6
    spread_factor: float = 2.0
    resamples: int = 10
    subsample: float = 0.8
    max_k: int = 8
    # Poisson tail level of the ID-background test; None: no test
    background_alpha: float | None = None


@dataclass
class Background:
    """ID validation images as the yardstick of how many selected inputs ID data alone puts
    in a ball of the cluster space: ``fit`` on their p-values and features."""

    def fit(self, pvalues: np.ndarray, features: np.ndarray, space: ClusterSpace
            ) -> Background:
        kept = space.clustered(features)
        self.pvalues_ = np.asarray(pvalues, dtype=np.float64)[kept]
        self.z_ = space.transform(np.asarray(features)[kept])
        self.n_ = len(features)
        return self

    def tail(self, z: np.ndarray, threshold: float, inputs: int) -> float:
        """P(Poisson >= len(z)) with the mean ID data would give: ``inputs`` times the rate
        of ID images selected at ``threshold`` within the group's radius of its centroid."""
        centre = z.mean(axis=0)
        radius = float(np.max(np.linalg.norm(z - centre, axis=1)))
        near = np.linalg.norm(self.z_ - centre, axis=1) <= radius
        rate = float(np.sum(near & (self.pvalues_ <= threshold))) / max(self.n_, 1)
        return float(poisson.sf(len(z) - 1, inputs * rate))


@dataclass
class Found:
    """One cluster among the selected inputs and the rule's verdict on it."""

    members: np.ndarray  # rows of the selected set
    stability: float
    spread: float
    norm: float
    new_class: bool
    reason: str = ""


@dataclass
class Discovery:
    """What the pipeline found in one buffer."""

    selected: np.ndarray  # bool per buffer row
    labels: np.ndarray  # cluster per selected row (-1: left unassigned)
    clusters: list[Found] = field(default_factory=list)

    @property
    def new_classes(self) -> list[Found]:
        return [c for c in self.clusters if c.new_class]


def select(pvalues: np.ndarray, q: float) -> np.ndarray:
    """The rows a Benjamini-Hochberg procedure at level ``q`` rejects (flags as OOD)."""
    return benjamini_hochberg(np.asarray(pvalues, dtype=np.float64), q)


def kmeans_bic(z: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> float:
    """BIC of a k-means partition read as identical spherical Gaussians (X-means)."""
    n, d = z.shape
    k = len(centers)
    sse = float(((z - centers[labels]) ** 2).sum())
    var = max(sse / max(n - k, 1) / d, 1e-12)
    counts = np.bincount(labels, minlength=k)
    counts = counts[counts > 0]
    ll = float(np.sum(counts * np.log(counts / n))) - n * d / 2 * np.log(2 * np.pi * var) \
        - sse / (2 * var)
    return -2 * ll + k * (d + 1) * np.log(n)


def cluster(z: np.ndarray, method: str, min_size: int, seed: int, max_k: int = 8,
            single: bool = False) -> np.ndarray:
    """Cluster labels of ``z`` (-1 = unassigned; only HDBSCAN leaves points out). ``single``:
    HDBSCAN may answer with one cluster (a stream window often holds a single new group
    among scattered false selections; in a buffer it would merge neighbouring classes)."""
    n = len(z)
    if n < max(min_size + 1, 4):
        return np.full(n, -1, dtype=np.int64)
    if method == "hdbscan":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return HDBSCAN(min_cluster_size=min_size, copy=True,
                           allow_single_cluster=single).fit(z).labels_.astype(np.int64)
    if method not in METHODS:
        raise ValueError(f"clustering {method!r}: valid: {', '.join(METHODS)}")
    best, best_labels = -np.inf, np.zeros(n, dtype=np.int64)
    for k in range(2, min(max_k, n - 1) + 1):
        km = KMeans(k, n_init=4, random_state=seed).fit(z)
        if len(np.unique(km.labels_)) < 2:
            continue
        value = (silhouette_score(z, km.labels_) if method == "kmeans_silhouette"
                 else -kmeans_bic(z, km.labels_, km.cluster_centers_))
        if value > best:
            best, best_labels = value, km.labels_.astype(np.int64)
    return best_labels


def stability(z: np.ndarray, labels: np.ndarray, method: str, rule: AlarmRule,
              seed: int, single: bool = False) -> dict[int, float]:
    """Mean over random subsets of each cluster's best Jaccard overlap with a cluster found
    on the subset (points outside the subset ignored)."""
    ids = [c for c in np.unique(labels) if c >= 0]
    scores: dict[int, list[float]] = {c: [] for c in ids}
    rng = np.random.default_rng(seed)
    n = len(z)
    for r in range(rule.resamples):
        rows = np.sort(rng.choice(n, size=max(int(rule.subsample * n), 2), replace=False))
        sub = cluster(z[rows], method, max(int(rule.subsample * rule.min_size), 2),
                      seed + r + 1, rule.max_k, single)
        for c in ids:
            mine = set(np.flatnonzero(labels[rows] == c).tolist())
            if not mine:
                continue
            best = 0.0
            for s in (s for s in np.unique(sub) if s >= 0):
                theirs = set(np.flatnonzero(sub == s).tolist())
                best = max(best, len(mine & theirs) / len(mine | theirs))
            scores[c].append(best)
    return {c: float(np.mean(v)) if v else 0.0 for c, v in scores.items()}


def discover(pvalues: np.ndarray, features: np.ndarray, space: ClusterSpace, rule: AlarmRule,
             q: float, method: str = "hdbscan", seed: int = 0, single: bool = False,
             background: Background | None = None) -> Discovery:
    """The pipeline on one buffer: select at ``q``, cluster, judge every cluster (the
    ID-background test needs ``background`` when the rule sets ``background_alpha``)."""
    if rule.background_alpha is not None and background is None:
        raise ValueError("the rule sets background_alpha: pass the ID background")
    chosen = select(pvalues, q)
    raw = np.asarray(features)[chosen]
    clustered = space.clustered(raw)
    raw = raw[clustered]
    z = space.transform(raw) if len(raw) else np.zeros((0, space.dims))
    inner = cluster(z, method, rule.min_size, seed, rule.max_k, single)
    labels = np.full(len(clustered), -1, dtype=np.int64)
    labels[clustered] = inner
    rows_of = np.flatnonzero(clustered)  # clustered row -> row of the selected set
    found: list[Found] = []
    ids = [c for c in np.unique(inner) if c >= 0]
    norms = np.linalg.norm(raw, axis=1) if len(raw) else np.zeros(0)
    limit = rule.spread_factor * space.class_spread_
    # the background test's selection threshold: the largest selected p-value of the window
    threshold = float(np.max(np.asarray(pvalues)[chosen])) if chosen.any() else 0.0
    candidates = {}
    for c in ids:
        rows = np.flatnonzero(inner == c)
        spread, norm = median_spread(z[rows]), float(np.median(norms[rows]))
        reason = ("small" if len(rows) < rule.min_size else "loose" if spread > limit
                  else "out of domain" if norm < space.min_norm_
                  else "known class" if space.known_class(z[rows].mean(axis=0)) is not None
                  else "")
        if not reason and rule.background_alpha is not None:
            if background.tail(z[rows], threshold, len(pvalues)) > rule.background_alpha:
                reason = "ID background"
        candidates[c] = (rows, spread, norm, reason)
    # stability is the costly test: only clusters that pass the others need it
    need = [c for c, v in candidates.items() if not v[3]]
    stab = stability(z, inner, method, rule, seed, single) if need else {}
    for c, (rows, spread, norm, reason) in candidates.items():
        s = stab.get(c, float("nan"))
        if not reason and s < rule.stability:
            reason = "unstable"
        found.append(Found(rows_of[rows], s, spread, norm, new_class=not reason,
                           reason=reason))
    return Discovery(chosen, labels, found)
