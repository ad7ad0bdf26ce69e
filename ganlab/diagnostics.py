"""Nash-equilibrium diagnostics: pure functions on tensors the training step already has, plus two
small accumulators. Nothing here runs a forward pass of its own except the sample-quality evaluation,
which draws its own generated batch at eval steps only.

Reading the numbers: at the equilibrium D(x) = 1/2 everywhere, so D's accuracy is ~50% on real *and*
on fake samples, the summed D loss is 2 ln 2 and the losses settle. Real and fake accuracy are kept
apart because their mean can read 50% while D accepts everything (100% real, 0% fake).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from ganlab.data import GaussianMixture


class Collector:
    """Accumulates scalars reported from anywhere in a step; ``reduce`` averages them per interval.

    Values stay tensors until ``reduce``: no host sync per step, which matters once trials run on GPUs.
    """

    def __init__(self) -> None:
        self._sum: dict[str | tuple[str, ...], torch.Tensor] = {}
        self._count: dict[str | tuple[str, ...], int] = defaultdict(int)

    def report(self, name: str | tuple[str, ...], value: torch.Tensor | float) -> None:
        """One scalar under a name, or a 1-D tensor under a tuple of names: a step's statistics stacked
        into one tensor cost one accumulation instead of one per statistic."""
        value = torch.as_tensor(value).detach().double()
        if name in self._sum:
            self._sum[name] += value
        else:
            self._sum[name] = value.clone()
        self._count[name] += 1

    def state_dict(self) -> dict:
        """A partly filled interval survives a checkpoint, so resumed metrics match the uninterrupted run."""
        return {"sum": {k: v.clone() for k, v in self._sum.items()}, "count": dict(self._count)}

    def load_state_dict(self, state: dict) -> None:
        self._sum = {k: v.clone() for k, v in state["sum"].items()}
        self._count = defaultdict(int, state["count"])

    def reduce(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, total in self._sum.items():
            means = (total / self._count[name]).tolist()
            out.update(zip(name, means) if isinstance(name, tuple) else [(name, means)])
        self._sum.clear()
        self._count.clear()
        return out


class SlidingWindow:
    """The last ``size`` values of a per-step series, for oscillation statistics."""

    def __init__(self, size: int):
        self.size = size
        self._buf = torch.zeros(size, dtype=torch.float64)
        self._n = 0

    def push(self, value: torch.Tensor | float) -> None:
        self._buf[self._n % self.size] = torch.as_tensor(value, dtype=torch.float64).detach()
        self._n += 1

    def state_dict(self) -> dict:
        return {"buf": self._buf.clone(), "n": self._n}

    def load_state_dict(self, state: dict) -> None:
        self._buf = state["buf"].clone()
        self._n = state["n"]

    def values(self) -> torch.Tensor:
        return self._buf[: min(self._n, self.size)]


def oscillation(values: torch.Tensor) -> dict[str, float]:
    """Population standard deviation and peak-to-peak amplitude of a window (0 for a constant)."""
    if values.numel() == 0:
        return {"std": math.nan, "ptp": math.nan}
    return {
        "std": float(values.std(unbiased=False)),
        "ptp": float(values.max() - values.min()),
    }


def d_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of real samples D calls real (logit > 0, i.e. D > 1/2) and of fakes it calls fake."""
    return (real_logits > 0).double().mean(), (fake_logits < 0).double().mean()


def mode_metrics(samples: torch.Tensor, mixture: GaussianMixture, hq_sigmas: float) -> dict[str, float]:
    """VEEGAN/PacGAN mode statistics.

    A sample is high quality when its distance to the nearest mean, in units of sigma, is at most
    ``hq_sigmas``; a mode is covered when it is the nearest mode of at least one high-quality sample;
    reverse KL is KL(p || uniform) = log K - H(p) for the histogram p of high-quality samples over modes
    (undefined, NaN, when no sample is high quality).
    """
    samples = samples.detach().double()
    means = mixture.means.double()
    dist = torch.cdist(samples, means)  # (n, K)
    nearest_dist, nearest = dist.min(dim=1)
    hq = nearest_dist <= hq_sigmas * mixture.sigma
    counts = torch.bincount(nearest[hq], minlength=mixture.n_modes).double()
    n_hq = float(counts.sum())
    if n_hq > 0:
        p = counts / n_hq
        entropy = -float((p[p > 0] * p[p > 0].log()).sum())
        reverse_kl = math.log(mixture.n_modes) - entropy
    else:
        reverse_kl = math.nan
    return {
        "modes": float((counts > 0).sum()),
        "hq_fraction": n_hq / samples.shape[0],
        "reverse_kl": reverse_kl,
    }


def dominant_period(values: torch.Tensor) -> float:
    """Period (in samples) of the strongest oscillation in a window: the peak of the Hann-windowed power
    spectrum of the linearly detrended series. NaN for a window too short or without any oscillation."""
    n = values.numel()
    if n < 8:
        return math.nan
    x = values.double()
    t = torch.arange(n, dtype=torch.float64)
    slope = ((t - t.mean()) * (x - x.mean())).sum() / ((t - t.mean()) ** 2).sum()
    x = x - x.mean() - slope * (t - t.mean())
    power = torch.fft.rfft(x * torch.hann_window(n, periodic=False, dtype=torch.float64)).abs() ** 2
    power[0] = 0.0
    k = int(power.argmax())
    if k == 0 or power[k] <= 1e-20 * n:
        return math.nan
    return n / k


def zero_crossing_rate(values: torch.Tensor) -> float:
    """Sign changes per step of a series around its median: ~0 for a settled series, high for a flickering one."""
    if values.numel() < 2:
        return math.nan
    centred = values.double() - torch.quantile(values.double(), 0.5)
    signs = torch.sign(centred)
    signs = signs[signs != 0]
    if signs.numel() < 2:
        return 0.0
    return float((signs[1:] != signs[:-1]).double().sum()) / (values.numel() - 1)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int, generator: torch.Generator) -> float:
    """Sliced 1-Wasserstein distance between two equal-size samples: the mean over random directions of the
    1-D W1 distance of the projections (sorted samples matched in order)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"sliced Wasserstein needs equal sample sizes, got {x.shape[0]} and {y.shape[0]}")
    x, y = x.detach().double().flatten(1), y.detach().double().flatten(1)
    dirs = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    px, py = (x @ dirs).sort(dim=0).values, (y @ dirs).sort(dim=0).values
    return float((px - py).abs().mean())


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), in float64 via symmetric eigendecompositions
    (negative eigenvalues from rounding clipped), the stable form of the FID formula."""
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    w1, v1 = torch.linalg.eigh(cov1)
    sqrt1 = (v1 * w1.clamp(min=0).sqrt()) @ v1.T
    middle = sqrt1 @ cov2 @ sqrt1
    w = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * w.sqrt().sum())


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of (N, d) features; N must exceed d or the covariance is singular."""
    f = features.detach().double()
    if f.shape[0] <= f.shape[1]:
        raise ValueError(f"a Frechet distance needs more samples than feature dimensions ({f.shape[0]} <= {f.shape[1]})")
    return f.mean(0), torch.atleast_2d(torch.cov(f.T))


def digit_metrics(fake: torch.Tensor, real: torch.Tensor, classifier, stacked: bool) -> dict[str, float]:
    """Frechet distance in the digit classifier's feature space, and mode coverage by its predictions.

    Digits: a mode is a class (10). Stacked digits: each channel is classified, a mode is the triple
    (1000), features are the three channels' features side by side. Reverse KL is of the predicted-mode
    histogram against uniform, as for the mixtures. The classifier's held-out accuracy and the sample
    count come along: a Frechet distance is only comparable at equal N and extractor.
    """
    def per_channel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chans = x.shape[1]
        flat = x.reshape(x.shape[0] * chans, 1, *x.shape[2:])
        feats = classifier.features(flat).reshape(x.shape[0], -1)
        preds = classifier.predict(flat).reshape(x.shape[0], chans)
        return feats, preds

    f_fake, p_fake = per_channel(fake)
    f_real, _ = per_channel(real)
    if stacked:
        modes, n_modes = p_fake[:, 0] * 100 + p_fake[:, 1] * 10 + p_fake[:, 2], 1000
    else:
        modes, n_modes = p_fake[:, 0], 10
    counts = torch.bincount(modes, minlength=n_modes).double()
    p = counts / counts.sum()
    entropy = -float((p[p > 0] * p[p > 0].log()).sum())
    return {
        "fd": frechet_distance(*gaussian_stats(f_fake), *gaussian_stats(f_real)),
        "fd_n": float(fake.shape[0]),
        "classifier_acc": classifier.heldout_accuracy,
        "modes": float((counts > 0).sum()),
        "reverse_kl": math.log(n_modes) - entropy,
    }
