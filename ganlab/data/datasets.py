"""Data sets a GAN is trained on. Samples are drawn fresh each step from a seeded ``torch.Generator``,
so a trial's data stream depends only on its seed, never on global RNG state or on other trials.

Every data set meets the ``Dataset`` protocol: the trainer builds models from ``shape`` and picks
plots and metrics from ``kind``, so it never needs to know which data set it was given. Mixtures
also know their modes and labelled images their classes, so coverage is measurable.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import numpy as np
import torch

from ganlab.config import (
    DataConfig,
    DigitsConfig,
    DiracDataConfig,
    Grid25Config,
    NpzConfig,
    Ring8Config,
    StackedDigitsConfig,
)
from ganlab.data.streams import Streams


# How generated samples are scored against a data set (``ganlab.train.evaluation``): mixtures by their modes
# and a sliced Wasserstein distance, other point sets by the distance alone, digits by the digit classifier's
# features and classes; None: no sample metric (the Dirac-GAN's point mass: its model reports its state).
Quality = Literal["mixture", "points", "digits", "stacked_digits"] | None


class Dataset(Protocol):
    shape: tuple[int, ...]  # one sample's shape
    kind: Literal["points", "images"]
    quality: Quality
    n_modes: int | None  # the modes (mixture components, digit classes) whose coverage is counted; None: none


    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """float32 (n, *shape), drawn only from ``generator`` (a CPU generator)."""
        ...

    def draw(self, streams: Streams, address: int, n: int) -> torch.Tensor:
        """float32 (L, n, *shape): n samples for each lane of ``streams``, from draws ``address`` (its uniforms)
        and ``address + 1`` (its normals), on the streams' device. A lane's samples depend on its key alone."""
        ...

    def to(self, device: torch.device | str) -> "Dataset":
        """The same data set with its tensors on ``device`` (self when they are there already)."""
        ...


def _picks(streams: Streams, address: int, n: int, high: int, *more: int) -> torch.Tensor:
    """(L, n, *more) indices uniform in [0, high)."""
    return streams.integers(address, high, n, *more)


@dataclass(frozen=True)
class GaussianMixture:
    """Equal-weight isotropic Gaussian mixture."""

    means: torch.Tensor  # (K, d)
    sigma: float
    kind: ClassVar[Literal["points"]] = "points"  # ClassVar: not a constructor field
    quality: ClassVar[Quality] = "mixture"

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, self.dim, generator=generator)
        return self.means[idx] + self.sigma * noise

    def draw(self, streams: Streams, address: int, n: int) -> torch.Tensor:
        idx = _picks(streams, address, n, self.n_modes)
        return self.means[idx] + self.sigma * streams.normal(address + 1, n, self.dim)

    def to(self, device) -> "GaussianMixture":
        return self if self.means.device == torch.device(device) else GaussianMixture(self.means.to(device), self.sigma)


def ring(n_modes: int, radius: float, sigma: float) -> GaussianMixture:
    # arange, not linspace(0, 2*pi, K): linspace includes 2*pi and silently merges two modes.
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means.float(), sigma)


def grid(per_side: int, spacing: float, sigma: float) -> GaussianMixture:
    ticks = (torch.arange(per_side, dtype=torch.float32) - (per_side - 1) / 2) * spacing
    xs, ys = torch.meshgrid(ticks, ticks, indexing="ij")
    return GaussianMixture(torch.stack([xs.flatten(), ys.flatten()], dim=1), sigma)


class PointMass:
    """Real data of the Dirac-GAN: every sample is 0 on the real line, so no randomness is needed."""

    kind: Literal["points"] = "points"
    quality: Quality = None
    n_modes = None
    shape = (1,)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(n, 1, dtype=torch.float32)

    def draw(self, streams: Streams, address: int, n: int) -> torch.Tensor:
        return torch.zeros(streams.lanes, n, 1, dtype=torch.float32, device=streams.device)

    def to(self, device) -> "PointMass":
        return self


class EmpiricalPoints:
    """A user's finite point set, sampled with replacement so any batch size works for any N."""

    kind: Literal["points"] = "points"
    quality: Quality = "points"
    n_modes = None

    def __init__(self, points: torch.Tensor):
        self.points = points.to(torch.float32)
        self.shape = tuple(points.shape[1:])

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.points[torch.randint(self.points.shape[0], (n,), generator=generator)]

    def draw(self, streams: Streams, address: int, n: int) -> torch.Tensor:
        return self.points[_picks(streams, address, n, self.points.shape[0])]

    def to(self, device) -> "EmpiricalPoints":
        return self if self.points.device == torch.device(device) else EmpiricalPoints(self.points.to(device))


class ImageDataset:
    """Images (N, C, H, W) in [-1, 1], sampled with replacement; labels kept for mode counting."""

    kind: Literal["images"] = "images"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, quality: Quality = None):
        """``quality``: "digits" for the 8x8 digits the digit classifier was trained on; None for a user's
        images, which ganlab has no feature extractor for."""
        self.images, self.labels, self.quality = images.to(torch.float32), labels, quality
        self.shape = tuple(images.shape[1:])
        self.n_modes = None if labels is None else int(labels.max()) + 1

    def sample_with_labels(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(self.images.shape[0], (n,), generator=generator)
        return self.images[idx], None if self.labels is None else self.labels[idx]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample_with_labels(n, generator)[0]

    def draw(self, streams: Streams, address: int, n: int) -> torch.Tensor:
        return self.images[_picks(streams, address, n, self.images.shape[0])]

    def draw_with_labels(self, streams: Streams, address: int, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = _picks(streams, address, n, self.images.shape[0])
        return self.images[idx], None if self.labels is None else self.labels[idx]

    def to(self, device) -> "ImageDataset":
        if self.images.device == torch.device(device):
            return self
        return ImageDataset(self.images.to(device), None if self.labels is None else self.labels.to(device),
                            self.quality)


class StackedDigits:
    """Three independent digits as the channels of one image: 10^3 = 1000 modes, an offline Stacked-MNIST
    (no download, so it runs where MNIST cannot be fetched)."""

    kind: Literal["images"] = "images"
    quality: Quality = "stacked_digits"

    def __init__(self, digits: ImageDataset):
        if digits.labels is None or digits.images.shape[1] != 1:
            raise ValueError("stacking needs labelled single-channel digits")
        self.digits = digits
        self.n_modes = digits.n_modes ** 3  # one mode per triple of classes
        self.shape = (3,) + tuple(digits.images.shape[2:])

    def sample_with_labels(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(self.digits.images.shape[0], (n, 3), generator=generator)
        images = self.digits.images[idx].squeeze(2)  # (n, 3, 1, H, W) -> (n, 3, H, W)
        return images, self.digits.labels[idx]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample_with_labels(n, generator)[0]

    def draw_with_labels(self, streams: Streams, address: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = _picks(streams, address, n, self.digits.images.shape[0], 3)  # (L, n, 3)
        images = self.digits.images[idx].squeeze(3)  # (L, n, 3, 1, H, W) -> (L, n, 3, H, W)
        return images, self.digits.labels[idx]

    def draw(self, streams: Streams, address: int, n: int) -> torch.Tensor:
        return self.draw_with_labels(streams, address, n)[0]

    def to(self, device) -> "StackedDigits":
        return self if self.digits.images.device == torch.device(device) else StackedDigits(self.digits.to(device))


@functools.lru_cache(maxsize=1)
def load_digits() -> ImageDataset:
    """scikit-learn's 1797 8x8 digits (values 0..16) scaled to [-1, 1]. Cached: several trials in one
    process (a Ray worker) share one copy; nothing mutates it."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16 * 2 - 1
    return ImageDataset(images, torch.tensor(bunch.target, dtype=torch.long), quality="digits")


def load_npz(path: str, key: str) -> EmpiricalPoints | ImageDataset:
    """The array was checked by ``NpzConfig`` (2-D or 4-D, floating, finite); only the cast is left."""
    with np.load(path, allow_pickle=False) as archive:
        arr = torch.from_numpy(np.asarray(archive[key], dtype=np.float32))
    return ImageDataset(arr) if arr.dim() == 4 else EmpiricalPoints(arr)


def make_dataset(cfg: DataConfig) -> Dataset:
    if isinstance(cfg, Ring8Config):
        return ring(8, cfg.radius, cfg.sigma)
    if isinstance(cfg, Grid25Config):
        return grid(5, cfg.spacing, cfg.sigma)
    if isinstance(cfg, DiracDataConfig):
        return PointMass()
    if isinstance(cfg, DigitsConfig):
        return load_digits()
    if isinstance(cfg, StackedDigitsConfig):
        return StackedDigits(load_digits())
    if isinstance(cfg, NpzConfig):
        return load_npz(cfg.path, cfg.key)
    raise TypeError(f"no data set for {type(cfg).__name__}")
