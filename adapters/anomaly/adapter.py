"""The anomaly track's detectors behind the harness interface.

Shallow (scikit-learn) on the backbone's penultimate features, standardised on the fit split:
``OCSVM`` (score = minus the decision function) and ``LOF`` (novelty mode; score = minus its
``score_samples``). Deep, trained on the fit split's pixels (the model-ready inputs; the
backbone is never run): ``AE``, ``DAE``, ``VAE`` (score = reconstruction error) and ``FCDD``
(score = mean of its anomaly map; ``heatmaps`` gives the upsampled maps). Scores are higher =
more anomalous, like every detector of the harness.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from adapters.anomaly import models
from adapters.base import DetectorError, FeatureDetector, ModelDetector
from benchmark.representations import Network, Representations
from benchmark.seeding import seeded

SHALLOW_PARAMS = {"standardize", "max_fit_samples", "seed"}


class _Shallow(FeatureDetector):
    library = "anomaly"
    own: ClassVar[set[str]] = set()

    def __init__(self, name: str, **params: Any) -> None:
        unknown = set(params) - self.own - SHALLOW_PARAMS
        if unknown:
            raise DetectorError(f"anomaly {name}: unknown parameter(s) {sorted(unknown)}; "
                                f"valid: {', '.join(sorted(self.own | SHALLOW_PARAMS))}")
        super().__init__(name, **params)

    def _estimator(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, id_fit: Representations, network: Network,
            calibration: Representations | None = None) -> _Shallow:
        x = np.asarray(id_fit.features, dtype=np.float64)
        cap = self.params.get("max_fit_samples")
        if cap is not None and len(x) > cap:
            rows = np.random.default_rng(self.params.get("seed", 0)).choice(len(x), cap,
                                                                            replace=False)
            x = x[np.sort(rows)]
        if self.params.get("standardize", True):
            self.mean_, self.scale_ = x.mean(0), x.std(0) + 1e-8
        else:
            self.mean_, self.scale_ = np.zeros(x.shape[1]), np.ones(x.shape[1])
        self.estimator_ = self._estimator().fit((x - self.mean_) / self.scale_)
        self.fitted_ = True
        return self

    def _inputs(self, split: Representations) -> np.ndarray:
        self.check_fitted()
        return (np.asarray(split.features, dtype=np.float64) - self.mean_) / self.scale_


class OCSVM(_Shallow):
    """One-class SVM (Schölkopf et al. 2001): ``nu`` bounds the share of fit rows outside."""

    own: ClassVar[set[str]] = {"nu", "kernel", "gamma"}

    def _estimator(self):
        from sklearn.svm import OneClassSVM

        return OneClassSVM(nu=self.params.get("nu", 0.1), kernel=self.params.get("kernel", "rbf"),
                           gamma=self.params.get("gamma", "scale"))

    def score(self, split: Representations, network: Network) -> np.ndarray:
        inputs = self._inputs(split)  # checks fit first
        return -self.estimator_.decision_function(inputs).astype(np.float64)


class LOF(_Shallow):
    """Local outlier factor (Breunig et al. 2000) in novelty mode: density of a row's
    ``n_neighbors`` nearest fit rows against their own."""

    own: ClassVar[set[str]] = {"n_neighbors"}

    def _estimator(self):
        from sklearn.neighbors import LocalOutlierFactor

        return LocalOutlierFactor(n_neighbors=self.params.get("n_neighbors", 20), novelty=True)

    def score(self, split: Representations, network: Network) -> np.ndarray:
        inputs = self._inputs(split)  # checks fit first
        return -self.estimator_.score_samples(inputs).astype(np.float64)


RECIPE_PARAMS = {"epochs", "batch_size", "lr", "weight_decay", "max_fit_samples", "seed",
                 "resume"}


def state_dir() -> Path:
    """Where interrupted trainings keep their state (the harness cache, ``OOD_BENCH_CACHE``)."""
    return Path(os.environ.get("OOD_BENCH_CACHE", "~/.cache/ood-bench")).expanduser() / "anomaly"


class _Deep(ModelDetector):
    """A network trained on the fit split's inputs; the backbone is not used."""

    library = "anomaly"
    own: ClassVar[dict[str, Any]] = {}

    def __init__(self, name: str, **params: Any) -> None:
        unknown = set(params) - set(self.own) - RECIPE_PARAMS
        if unknown:
            raise DetectorError(f"anomaly {name}: unknown parameter(s) {sorted(unknown)}; "
                                f"valid: {', '.join(sorted(set(self.own) | RECIPE_PARAMS))}")
        super().__init__(name, **params)

    def param(self, key: str) -> Any:
        return self.params.get(key, self.own[key])

    @property
    def recipe(self) -> models.Recipe:
        p = self.params
        return models.Recipe(epochs=int(p.get("epochs", 15)),
                             batch_size=int(p.get("batch_size", 128)),
                             lr=float(p.get("lr", 1e-3)),
                             weight_decay=float(p.get("weight_decay", 1e-6)),
                             max_samples=p.get("max_fit_samples"), seed=int(p.get("seed", 0)))

    def _network(self, shape: tuple[int, int, int]) -> torch.nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _loss(self) -> models.StepLoss:  # pragma: no cover
        raise NotImplementedError

    def _per_image(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _batches(split: Representations, what: str):
        if split.inputs is None:
            raise DetectorError(f"anomaly detectors train on pixels: the {what} split has no "
                                "inputs attached")
        return split.inputs()

    def _state_path(self, id_fit: Representations, shape: tuple[int, ...]) -> Path | None:
        """The resumable-training file of this fit, when the fit split has a content key."""
        if not id_fit.key or not self.params.get("resume", True):
            return None
        ident = json.dumps({"name": self.name, "params": self.params, "fit": id_fit.key,
                            "shape": list(shape)}, sort_keys=True, default=str)
        return state_dir() / f"{hashlib.sha256(ident.encode()).hexdigest()[:24]}.partial"

    def fit(self, id_fit: Representations, network: Network,
            calibration: Representations | None = None) -> _Deep:
        inputs = models.gather(self._batches(id_fit, "fit"))
        shape = tuple(inputs.shape[1:])
        recipe = self.recipe
        with seeded(recipe.seed):
            net = self._network(shape)  # type: ignore[arg-type]
        self.model_ = models.train(net, inputs, self._loss(), recipe,
                                   self._state_path(id_fit, shape))
        self.fitted_ = True
        return self

    def score(self, split: Representations, network: Network) -> np.ndarray:
        self.check_fitted()
        return models.per_image(self._per_image, self._batches(split, "scored"))


class AE(_Deep):
    """Convolutional autoencoder; score = reconstruction error."""

    own: ClassVar[dict[str, Any]] = {"latent": 64}

    def _network(self, shape):
        return models.ConvAE(shape, latent=int(self.param("latent")))

    def _loss(self):
        return models.ae_loss()

    def _per_image(self, x):
        return models.reconstruction_error(self.model_, x)


class DAE(AE):
    """Denoising autoencoder: rebuilds the clean input from a noisy copy (``noise``: standard
    deviation in the normalised input's units); score = reconstruction error of clean input."""

    own: ClassVar[dict[str, Any]] = {"latent": 64, "noise": 0.5}

    def _loss(self):
        return models.ae_loss(float(self.param("noise")))


class VAE(_Deep):
    """Variational autoencoder (latent 16, as the lab's study); score = reconstruction error
    of the latent mean."""

    own: ClassVar[dict[str, Any]] = {"latent": 16, "beta": 1.0}

    def _network(self, shape):
        return models.ConvAE(shape, latent=int(self.param("latent")), variational=True)

    def _loss(self):
        return models.vae_loss(float(self.param("beta")))

    def _per_image(self, x):
        return models.reconstruction_error(self.model_, x)


class FCDD(_Deep):
    """Fully convolutional data description with confetti anomalies (its offline outlier
    exposure); score = mean of the anomaly map."""

    own: ClassVar[dict[str, Any]] = {"width": 32}

    def _network(self, shape):
        return models.FCDDNet(shape[0], width=int(self.param("width")))

    def _loss(self):
        return models.fcdd_step()

    def _per_image(self, x):
        return self.model_(x).flatten(1).mean(1)

    @torch.no_grad()
    def heatmaps(self, x: torch.Tensor) -> np.ndarray:
        """The anomaly maps of inputs ``x``, upsampled to the input size through the receptive
        field (FCDD's explanation): N x H x W."""
        self.check_fitted()
        maps = self.model_(x.float())
        up = models.receptive_upsample(maps, tuple(x.shape[-2:]), self.model_.receptive_field,
                                       self.model_.stride)
        return up[:, 0].numpy()


DETECTORS: dict[str, type] = {"OCSVM": OCSVM, "LOF": LOF, "AE": AE, "DAE": DAE, "VAE": VAE,
                              "FCDD": FCDD}


def build(name: str, params: dict[str, Any] | None = None):
    if name not in DETECTORS:
        raise DetectorError(f"unknown anomaly detector {name!r}; valid: "
                            f"{', '.join(sorted(DETECTORS))}")
    return DETECTORS[name](name, **dict(params or {}))
