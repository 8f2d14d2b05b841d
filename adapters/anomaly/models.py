"""The deep anomaly detectors' networks and their one training loop (pure torch).

- ``ConvAE``: a convolutional autoencoder (three stride-2 convolutions, a linear bottleneck);
  trained on clean inputs (AE) or on noisy ones to rebuild the clean ones (DAE).
- ``ConvVAE``: the same shape with a Gaussian latent (Kingma & Welling), 16 dimensions as in
  the lab's study; scored by the reconstruction error of the latent mean.
- ``FCDDNet``: fully convolutional data description (Liznerski et al., ICLR 2021), the
  ``FCDD_CNN32`` layout of its reference code at reduced width; its output map, upsampled
  through its receptive field (``receptive_upsample``), is the explanation heatmap.

Inputs are model-ready batches (N x C x H x W, normalised); sizes that are not a multiple of 8
are zero-padded and the output cropped, so any image size works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _padded(x: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))


class ConvAE(nn.Module):
    """Encoder C -> 32 -> 64 -> 128 channels (stride 2 each), a linear bottleneck of
    ``latent`` units, and the mirrored decoder."""

    def __init__(self, shape: tuple[int, int, int], latent: int = 64,
                 variational: bool = False) -> None:
        super().__init__()
        c, h, w = shape
        self.shape, self.variational = shape, variational
        self.hp, self.wp = h + (-h % 8), w + (-w % 8)
        self.inner = (128, self.hp // 8, self.wp // 8)
        flat = math.prod(self.inner)

        def down(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.LeakyReLU(0.1)]

        def up(i: int, o: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.LeakyReLU(0.1)]

        self.encoder = nn.Sequential(*down(c, 32), *down(32, 64), *down(64, 128), nn.Flatten())
        self.to_latent = nn.Linear(flat, latent * (2 if variational else 1))
        self.from_latent = nn.Linear(latent, flat)
        self.decoder = nn.Sequential(*up(128, 64), *up(64, 32), nn.ConvTranspose2d(32, c, 4, 2, 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.to_latent(self.encoder(_padded(x)))
        if not self.variational:
            return z, None
        mu, logvar = z.chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.from_latent(z).view(-1, *self.inner))
        return out[..., : self.shape[1], : self.shape[2]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])


def reconstruction_error(model: ConvAE, x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error of the reconstruction (of the latent mean for a VAE)."""
    return ((model(x) - x) ** 2).flatten(1).mean(1)


class FCDDNet(nn.Module):
    """FCDD's 32x32 network (conv-BN-LeakyReLU, two max-pools, a 1x1 output conv) at
    ``width`` (the reference uses 128/256/256/128 channels: ``width=128``); output: one
    map per image at 1/4 of the input size."""

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o, affine=False),
                    nn.LeakyReLU(0.1)]

        self.body = nn.Sequential(*block(channels, width), nn.MaxPool2d(2, 2),
                                  *block(width, 2 * width), nn.MaxPool2d(2, 2),
                                  *block(2 * width, 2 * width),
                                  nn.Conv2d(2 * width, width, 3, padding=1, bias=False),
                                  nn.Conv2d(width, 1, 1, bias=False))
        # receptive field and stride of an output cell: 3x3 conv, pool, 3x3, pool, 3x3, 3x3
        self.receptive_field, self.stride = 26, 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The anomaly map A = sqrt(out^2 + 1) - 1 (FCDD's pseudo-Huber), N x 1 x h x w."""
        out = self.body(x)
        return (out ** 2 + 1).sqrt() - 1


def fcdd_loss(maps: torch.Tensor, anomalous: torch.Tensor) -> torch.Tensor:
    """FCDD's objective: the mean map of a normal image is pulled to 0, an anomalous one's
    pushed away (-log(1 - exp(-mean)))."""
    a = maps.flatten(1).mean(1)
    far = -torch.log((-torch.expm1(-a)).clamp_min(1e-6))
    return torch.where(anomalous, far, a).mean()


def confetti(x: torch.Tensor, generator: torch.Generator, blobs: int = 6,
             max_size: int = 6) -> torch.Tensor:
    """FCDD's synthetic anomalies when no outlier-exposure set is at hand: copies of normal
    images with small rectangles of random colour pasted in (values spanning the batch's
    range)."""
    out = x.clone()
    n, c, h, w = x.shape
    lo, hi = float(x.min()), float(x.max())
    for _ in range(blobs):
        sizes = torch.randint(2, max_size + 1, (n, 2), generator=generator)
        tops = torch.randint(0, h, (n,), generator=generator)
        lefts = torch.randint(0, w, (n,), generator=generator)
        colours = lo + (hi - lo) * torch.rand(n, c, generator=generator)
        for i in range(n):
            t, left = int(tops[i]), int(lefts[i])
            out[i, :, t:t + int(sizes[i, 0]), left:left + int(sizes[i, 1])] = colours[i, :, None,
                                                                                     None]
    return out


def receptive_upsample(maps: torch.Tensor, size: tuple[int, int], receptive_field: int,
                       stride: int, sigma: float | None = None) -> torch.Tensor:
    """FCDD's heatmap upsampling: each output cell spreads its value over its receptive field
    with a Gaussian kernel (a transposed convolution), cropped to the input size."""
    sigma = sigma or receptive_field / 4
    r = torch.arange(receptive_field, dtype=maps.dtype) - (receptive_field - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    kernel = (g[:, None] * g[None, :])
    kernel = (kernel / kernel.sum())[None, None]
    pad = (receptive_field - stride) // 2
    up = F.conv_transpose2d(maps, kernel, stride=stride, padding=pad)
    return up[..., : size[0], : size[1]]


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Recipe:
    """How a deep detector trains: Adam, seeded shuffles, ``epochs`` passes over the fit
    inputs (capped at ``max_samples``)."""

    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-6
    max_samples: int | None = None
    seed: int = 0


StepLoss = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


def gather(batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Every input of a split as one tensor (the fit splits here are a few thousand images)."""
    return torch.cat([x.float() for x, _ in batches])


def train(model: nn.Module, inputs: torch.Tensor, loss_of: StepLoss, recipe: Recipe,
          state_path: Path | None = None, progress: Callable[[int, float], None] | None = None
          ) -> nn.Module:
    """Train ``model`` on ``inputs`` (seeded: same recipe and inputs, same weights); with
    ``state_path``, the state after each epoch is saved there and an interrupted training
    resumes from it (the file is removed when training ends)."""
    gen = torch.Generator().manual_seed(recipe.seed)
    if recipe.max_samples is not None and len(inputs) > recipe.max_samples:
        inputs = inputs[torch.randperm(len(inputs), generator=gen)[: recipe.max_samples]]
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    start = 0
    if state_path is not None and state_path.exists():
        try:
            state = torch.load(state_path, weights_only=False)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            start = int(state["epoch"])
        except Exception:  # a damaged state file: start over
            start = 0
    for epoch in range(start, recipe.epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=gen)
        total = 0.0
        for i in range(0, len(order), recipe.batch_size):
            rows = order[i:i + recipe.batch_size]
            if len(rows) < 2:  # batch norm needs two rows
                continue
            loss = loss_of(model, inputs[rows], gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        if progress is not None:
            progress(epoch + 1, total / max(1, len(order)))
        if state_path is not None and epoch + 1 < recipe.epochs:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_path.with_name(state_path.name + ".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "generator": gen.get_state(), "epoch": epoch + 1}, tmp)
            tmp.replace(state_path)
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    return model.eval()


def ae_loss(noise: float = 0.0) -> StepLoss:
    """Mean squared reconstruction error; with ``noise`` > 0, of the clean input from a copy
    with Gaussian noise of that standard deviation (in the normalised input's units): DAE."""
    def loss(model: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        noisy = x + noise * torch.randn(x.shape, generator=gen) if noise else x
        return F.mse_loss(model(noisy), x)
    return loss


def vae_loss(beta: float = 1.0) -> StepLoss:
    """The negative ELBO per pixel: squared error plus ``beta`` x KL(q(z|x) || N(0, I))."""
    def loss(model: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)
        rec = ((model.decode(z) - x) ** 2).flatten(1).sum(1)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
        return (rec + beta * kl).mean() / x[0].numel()
    return loss


def fcdd_step() -> StepLoss:
    """Half of each batch as it is (normal), half as confetti copies (anomalous)."""
    def loss(model: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        half = len(x) // 2
        fake = confetti(x[half:], gen)
        inputs = torch.cat([x[:half], fake])
        anomalous = torch.cat([torch.zeros(half, dtype=torch.bool),
                               torch.ones(len(fake), dtype=torch.bool)])
        return fcdd_loss(model(inputs), anomalous)
    return loss


@torch.no_grad()
def per_image(fn: Callable[[torch.Tensor], torch.Tensor],
              batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
    """``fn`` over every batch, concatenated as float64 (one value per image)."""
    return np.concatenate([fn(x.float()).double().numpy() for x, _ in batches])
