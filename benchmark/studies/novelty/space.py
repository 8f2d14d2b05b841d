"""The space the selected inputs are clustered in, and the ID-only yardsticks of a class there.

Penultimate features, projected on the principal axes of the ID fit features (the variance
share kept is a parameter) and scaled to unit length, so distances compare directions, not
activation strength. Activation strength is kept apart as the *domain* yardstick: a new class
of the classifier's own domain drives its features about as hard as the known classes do,
while far-OOD junk gives weak activations (MNIST LeNet: ID median norm 46, held-out digits 37,
Fashion-MNIST 20). A group that sits inside a known class (its centroid within that class's median
spread) is that class's outliers, not a new class. All yardsticks are measured on ID data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClusterSpace:
    """``fit`` on ID features (and their labels) -> ``transform`` any features."""

    variance: float = 0.9
    normalize: bool = True
    norm_quantile: float = 0.05
    # "points": selected inputs below the domain gate are left out of the clustering (junk
    # cannot pull new-class candidates into its clusters); "clusters": the gate judges whole
    # clusters only
    gate: str = "clusters"
    # scale every principal axis to unit ID variance: a new class's own direction counts as
    # much as the known classes' main axes (without it, its inputs spread along those axes)
    whiten: bool = False

    def fit(self, features: np.ndarray, reference: np.ndarray,
            reference_labels: np.ndarray) -> ClusterSpace:
        """Axes from ``features`` (the ID fit split); yardsticks from ``reference`` (ID images
        the detector did not fit on: the validation split) and its class labels."""
        if self.gate not in ("points", "clusters"):
            raise ValueError(f"space gate {self.gate!r}: valid: points, clusters")
        x = np.asarray(features, dtype=np.float64)
        self.mean_ = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        share = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(share, self.variance) + 1)
        self.components_ = vt[:k]
        self.scales_ = s[:k] / np.sqrt(len(x)) if self.whiten else np.ones(k)
        z = self.transform(reference)
        classes = np.unique(reference_labels)
        self.class_centroids_ = np.stack([z[reference_labels == c].mean(axis=0)
                                          for c in classes])
        self.class_spreads_ = np.array([median_spread(z[reference_labels == c])
                                        for c in classes])
        self.class_spread_ = float(np.max(self.class_spreads_))  # the loosest known class
        self.min_norm_ = float(np.quantile(np.linalg.norm(reference, axis=1),
                                           self.norm_quantile))
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean_) @ self.components_.T
        z /= np.maximum(self.scales_, 1e-12)
        if self.normalize:
            z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return z

    def in_domain(self, features: np.ndarray) -> np.ndarray:
        """Per input: does it drive the classifier's features at least as hard as the gate?"""
        return np.linalg.norm(np.asarray(features), axis=1) >= self.min_norm_

    def clustered(self, features: np.ndarray) -> np.ndarray:
        """Per input: does it enter the clustering (the point gate keeps weak ones out)?"""
        if self.gate == "points":
            return self.in_domain(features)
        return np.ones(len(features), dtype=bool)

    def known_class(self, centroid: np.ndarray) -> int | None:
        """The known class a group centred at ``centroid`` (in this space) sits inside: closer
        to that class's centroid than the class's own median spread; None = none."""
        dist = np.linalg.norm(self.class_centroids_ - centroid, axis=1)
        inside = np.flatnonzero(dist < self.class_spreads_)
        return int(inside[np.argmin(dist[inside])]) if len(inside) else None

    @property
    def dims(self) -> int:
        return int(self.components_.shape[0])


def median_spread(points: np.ndarray) -> float:
    """Median distance of a group's points to their centroid: how loose the group is."""
    if len(points) == 0:
        return float("nan")
    return float(np.median(np.linalg.norm(points - points.mean(axis=0), axis=1)))
