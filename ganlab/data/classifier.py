"""A small digit classifier, trained once (seeded) and cached on disk, whose penultimate layer is the
feature space of ganlab's Frechet distance for images and whose predictions count covered modes.

Inception features do not exist offline and do not fit 8x8 digits; a classifier trained on the data
itself is the protocol of the VEEGAN/PacGAN Stacked-MNIST experiments. Its held-out accuracy is
reported with every score, so the features are known to be good.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganlab.data.datasets import load_digits

CACHE_VERSION = 1
SEED = 0
HOLDOUT_FRACTION = 0.2
EPOCHS = 300  # full-batch Adam steps; converges on 1437 images in about a second on one CPU core
FEATURES = 64


def cache_dir() -> Path:
    return Path(os.environ.get("GANLAB_CACHE", Path.home() / ".cache" / "ganlab"))


@dataclass
class DigitClassifier:
    net: nn.Sequential  # 64 -> 128 -> FEATURES -> 10
    heldout_accuracy: float

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 1, 8, 8) images in [-1, 1] -> (n, FEATURES)."""
        return self.net[:-1](x.reshape(x.shape[0], -1).float())

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1).float()).argmax(1)


def _build() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, FEATURES), nn.ReLU(), nn.Linear(FEATURES, 10))


def heldout_split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices of the digits: the classifier's split, also the D-feature probe's."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        perm = torch.randperm(n)
    n_test = int(HOLDOUT_FRACTION * n)
    return perm[n_test:], perm[:n_test]


def _train() -> DigitClassifier:
    digits = load_digits()
    x, y = digits.images.reshape(-1, 64), digits.labels
    train, test = heldout_split(len(y))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        torch.randperm(len(y))  # the draw heldout_split made: the cached classifier's weights stay the same
        net = _build()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(EPOCHS):
            loss = nn.functional.cross_entropy(net(x[train]), y[train])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = float((net(x[test]).argmax(1) == y[test]).double().mean())
    return DigitClassifier(net.eval(), accuracy)


_loaded: DigitClassifier | None = None


def digit_classifier() -> DigitClassifier:
    """The cached classifier; trained and written atomically on first use (every trainer gets the same one)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    path = cache_dir() / f"digit_classifier_v{CACHE_VERSION}.pt"
    if path.is_file():
        state = torch.load(path, weights_only=True)
        net = _build()
        net.load_state_dict(state["net"])
        _loaded = DigitClassifier(net.eval(), float(state["heldout_accuracy"]))
        return _loaded
    _loaded = _train()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"net": _loaded.net.state_dict(), "heldout_accuracy": _loaded.heldout_accuracy}, tmp)
    os.replace(tmp, path)
    return _loaded
