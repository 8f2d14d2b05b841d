"""Forward-hook extraction of per-channel statistics from any torch classifier.

The detector only ever sees ``{layer: {reduction: N x C}}`` numpy arrays; this module produces
them from a model and a dict of monitored modules, without changing the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType

import numpy as np
import torch
from torch import nn

from .reductions import check_reductions, reduce_activation

LayerStats = dict[str, dict[str, np.ndarray]]


class LayerStatsExtractor:
    """Registers forward hooks on ``layers`` and collects their per-channel reductions.

    Use as a context manager so hooks are always removed::

        with LayerStatsExtractor(model, model.monitored_layers()) as ex:
            stats, logits = ex.run(batches)
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        reductions: Sequence[str] = ("max", "mean"),
    ) -> None:
        if not layers:
            raise ValueError("no layers to monitor")
        self.model = model
        self.layers = dict(layers)
        self.reductions = check_reductions(reductions)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._batch: dict[str, dict[str, torch.Tensor]] = {}

    def __enter__(self) -> LayerStatsExtractor:
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            self._batch[name] = reduce_activation(output, self.reductions)

        return hook

    @torch.no_grad()
    def run(
        self,
        batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]],
        device: torch.device | str | None = None,
    ) -> tuple[LayerStats, np.ndarray]:
        """Forward every batch (tensor, or tuple whose first item is the input).

        Returns ``(stats, logits)``: stats as ``{layer: {reduction: N x C float32}}``.
        """
        if not self._handles:
            raise RuntimeError("use LayerStatsExtractor as a context manager")
        parts: dict[str, dict[str, list[np.ndarray]]] = {
            name: {r: [] for r in self.reductions} for name in self.layers
        }
        logits: list[np.ndarray] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if device is not None:
                    x = x.to(device)
                self._batch = {}
                out = self.model(x)
                logits.append(out.detach().float().cpu().numpy())
                for name in self.layers:
                    if name not in self._batch:
                        raise RuntimeError(f"monitored layer {name!r} did not run in forward()")
                    for red, value in self._batch[name].items():
                        parts[name][red].append(value.cpu().numpy())
        finally:
            self.model.train(was_training)
            self._batch = {}
        if not logits:
            raise ValueError("no batches to extract from")
        stats = {
            name: {r: np.concatenate(v).astype(np.float32, copy=False) for r, v in reds.items()}
            for name, reds in parts.items()
        }
        return stats, np.concatenate(logits)


def extract_layer_stats(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]],
    reductions: Sequence[str] = ("max", "mean"),
    device: torch.device | str | None = None,
    return_logits: bool = False,
) -> LayerStats | tuple[LayerStats, np.ndarray]:
    """``{layer: {reduction: N x C}}`` for every batch; with ``return_logits``, also the logits
    (``N x classes``), from which the predicted classes the detector needs follow."""
    with LayerStatsExtractor(model, layers, reductions) as extractor:
        stats, logits = extractor.run(batches, device=device)
    return (stats, logits) if return_logits else stats
