"""The two networks Oodeel is handed: a replay of cached arrays, and a live zoo backbone.

Oodeel hooks modules by name: ``feature_layers_id`` (forward hooks on each layer's output) and
``head_layer_id`` (the head's output = logits; ReAct/ASH/SCALE as pre-hooks on its input), and
ViM reads the weights of the *last* module in ``named_modules()``. Both networks below name the
penultimate output ``features`` and the head ``fc`` (registered last), so one detector runs
the same way on either:

* :class:`ReplayNet`: the input rows are cached ``[logits | features | layer means ...]``;
  ``Columns`` modules hand each block on, so every hook sees exactly the cached array; ``fc``
  is the backbone's final linear layer (a copy) applied to the features, or, for a logit
  method without flags, the cached logits themselves (``head='logits'``).
* :class:`LiveNet`: a zoo backbone (the caller's private copy) (``forward_features`` then the final
  linear layer), its monitored layers reachable as ``body.<name>``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn


class Columns(nn.Module):
    """Columns ``start:stop`` of a 2-D input (a hook point for one cached block)."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.stop].contiguous()

    def extra_repr(self) -> str:
        return f"{self.start}:{self.stop}"


class ReplayNet(nn.Module):
    """Cached rows ``[logits | features | layer blocks]`` in, logits out.

    ``blocks`` gives the width of each extra block (monitored layers' spatial means), hooked as
    modules ``layer0``, ``layer1``, ... in that order.
    """

    def __init__(self, fc: nn.Linear, n_logits: int, n_features: int,
                 blocks: Sequence[int] = (), head: str = "fc") -> None:
        super().__init__()
        if head not in ("fc", "logits"):
            raise ValueError(f"head must be 'fc' or 'logits', not {head!r}")
        self.head = head
        self.logits = Columns(0, n_logits)
        self.features = Columns(n_logits, n_logits + n_features)
        start = n_logits + n_features
        self.n_blocks = len(blocks)
        for i, width in enumerate(blocks):
            self.add_module(f"layer{i}", Columns(start, start + int(width)))
            start += int(width)
        self.fc = fc  # last: ViM reads the weights of the last module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n_blocks):
            getattr(self, f"layer{i}")(x)
        if self.head == "logits":
            return self.logits(x)
        return self.fc(self.features(x))


class LiveNet(nn.Module):
    """A zoo backbone as Oodeel sees it: ``body`` (the backbone without its head), then
    ``features`` (the penultimate output), then ``fc``. ``backbone`` must be the caller's
    private copy (:func:`adapters.base.frozen_copy`): its ``fc`` is moved here.

    ``input_scale`` (per channel): the network takes ``u = x * scale`` for model-ready ``x``
    and divides it back. With the backbone's input std as scale, ``u`` is the image minus the
    mean in pixel units, so Oodeel's perturbation ``u - eps * sign(grad_u)`` is a step of
    ``eps`` in pixel units (the ODIN paper's and OpenOOD's convention) where Oodeel itself steps
    in normalised units; the loaders multiply by the same scale.
    """

    def __init__(self, backbone: nn.Module, input_scale: Sequence[float] | None = None) -> None:
        super().__init__()
        scale = None if input_scale is None else torch.tensor(
            [float(v) for v in input_scale]).view(1, -1, 1, 1)
        self.register_buffer("input_scale", scale, persistent=False)
        body = backbone
        fc = body.fc
        if not isinstance(fc, nn.Linear) or not hasattr(body, "forward_features"):
            raise TypeError("the backbone needs forward_features and a final nn.Linear fc")
        self.body = body
        self.features = nn.Identity()
        # a module of its own, so Oodeel finds it as "fc" (the body's head stays inside the
        # body, where named_modules would list it first)
        self.fc = copy.deepcopy(fc)

    def monitored(self) -> dict[str, str]:
        """The backbone's monitored layer names -> their module names here."""
        names = {id(module): name for name, module in self.named_modules()}
        return {layer: names[id(module)]
                for layer, module in self.body.monitored_layers().items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            x = x / self.input_scale
        return self.fc(self.features(self.body.forward_features(x)))
