"""Sample quality at eval steps: mode coverage of mixtures (VEEGAN/PacGAN), sliced Wasserstein distance,
and the Frechet distance and class coverage of digits in a small classifier's features. Pure functions of
generated and real samples; the only forward passes are the classifier's."""

from __future__ import annotations

import math

import torch

from ganlab.data import GaussianMixture


def _counts(index: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    """Per-lane histograms: (L, n) float counts of ``index`` (L, m) weighted by ``weight`` (L, m)."""
    return torch.zeros(index.shape[0], n, dtype=torch.float64, device=index.device).scatter_add_(1, index, weight)


def _entropy(counts: torch.Tensor) -> torch.Tensor:
    """Entropy of each lane's histogram (NaN for an empty one)."""
    p = counts / counts.sum(-1, keepdim=True)
    return -(p * p.clamp(min=1e-300).log()).sum(-1)


def mode_statistics(samples: torch.Tensor, means: torch.Tensor, sigma: float, hq_sigmas: float) -> dict[str, torch.Tensor]:
    """VEEGAN/PacGAN mode statistics of each lane's samples (L, n, d) against a mixture's means (K, d).

    A sample is high quality when its distance to the nearest mean, in units of sigma, is at most
    ``hq_sigmas``; a mode is covered when it is the nearest mode of at least one high-quality sample;
    reverse KL is KL(p || uniform) = log K - H(p) for the histogram p of high-quality samples over modes
    (undefined, NaN, when no sample is high quality). Each a (L,) tensor.
    """
    samples = samples.detach().double()
    means = means.to(samples).unsqueeze(0).expand(samples.shape[0], -1, -1)
    nearest_dist, nearest = torch.cdist(samples, means).min(dim=2)  # (L, n)
    hq = (nearest_dist <= hq_sigmas * sigma).double()
    counts = _counts(nearest, hq, means.shape[1])
    n_hq = counts.sum(-1)
    return {
        "modes": (counts > 0).double().sum(-1),
        "hq_fraction": n_hq / samples.shape[1],
        "reverse_kl": torch.where(n_hq > 0, math.log(means.shape[1]) - _entropy(counts), math.nan),
    }


def mode_metrics(samples: torch.Tensor, mixture: GaussianMixture, hq_sigmas: float) -> dict[str, float]:
    """``mode_statistics`` of one sample set (n, d), as numbers."""
    stats = mode_statistics(samples.unsqueeze(0), mixture.means, mixture.sigma, hq_sigmas)
    return {k: float(v[0]) for k, v in stats.items()}


def sliced_w1(x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced 1-Wasserstein distance between each lane's equal-size samples x, y (L, n, ...), over unit
    ``directions`` (L, d, P): the mean over directions of the 1-D W1 distance of the projections (sorted
    samples matched in order). (L,)"""
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"sliced Wasserstein needs equal sample sizes, got {x.shape[1]} and {y.shape[1]}")
    x, y = x.detach().double().flatten(2), y.detach().double().flatten(2)
    directions = directions.double()
    directions = directions / directions.norm(dim=1, keepdim=True)
    px, py = torch.bmm(x, directions).sort(dim=1).values, torch.bmm(y, directions).sort(dim=1).values
    return (px - py).abs().mean(dim=(1, 2))


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int, generator: torch.Generator) -> float:
    """``sliced_w1`` of one pair of samples (n, ...), with directions drawn from ``generator``."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"sliced Wasserstein needs equal sample sizes, got {x.shape[0]} and {y.shape[0]}")
    dirs = torch.randn(x.flatten(1).shape[1], n_projections, generator=generator, dtype=torch.float64)
    return float(sliced_w1(x.unsqueeze(0), y.unsqueeze(0), dirs.unsqueeze(0))[0])


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor):
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), in float64 via symmetric eigendecompositions
    (negative eigenvalues from rounding clipped), the stable form of the FID formula. Batched over leading
    dimensions (a tensor); one pair of (d,) means and (d, d) covariances gives a number."""
    single = mu1.dim() == 1
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    w1, v1 = torch.linalg.eigh(cov1)
    sqrt1 = (v1 * w1.clamp(min=0).sqrt().unsqueeze(-2)) @ v1.transpose(-1, -2)
    middle = sqrt1 @ cov2 @ sqrt1
    w = torch.linalg.eigvalsh((middle + middle.transpose(-1, -2)) / 2).clamp(min=0)
    trace = cov1.diagonal(dim1=-2, dim2=-1).sum(-1) + cov2.diagonal(dim1=-2, dim2=-1).sum(-1)
    fd = (mu1 - mu2).pow(2).sum(-1) + trace - 2 * w.sqrt().sum(-1)
    return float(fd) if single else fd


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of (N, d) features, or of each lane's (L, N, d); N must exceed d or the covariance
    is singular."""
    f = features.detach().double()
    if f.shape[-2] <= f.shape[-1]:
        raise ValueError(f"a Frechet distance needs more samples than feature dimensions ({f.shape[-2]} <= {f.shape[-1]})")
    mean = f.mean(-2)
    centred = f - mean.unsqueeze(-2)
    cov = centred.transpose(-1, -2) @ centred / (f.shape[-2] - 1)
    return mean, cov


def digit_statistics(fake: torch.Tensor, real: torch.Tensor, classifier, stacked: bool) -> dict[str, torch.Tensor]:
    """Frechet distance in the digit classifier's feature space, and mode coverage by its predictions, for each
    lane's generated and real images (L, n, C, H, W).

    Digits: a mode is a class (10). Stacked digits: each channel is classified, a mode is the triple
    (1000), features are the three channels' features side by side. Reverse KL is of the predicted-mode
    histogram against uniform, as for the mixtures. The classifier's held-out accuracy and the sample
    count come along: a Frechet distance is only comparable at equal N and extractor. Each a (L,) tensor.
    """
    def per_channel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lanes, n, chans = x.shape[:3]
        flat = x.reshape(lanes * n * chans, 1, *x.shape[3:])
        feats = classifier.features(flat).reshape(lanes, n, -1)
        preds = classifier.predict(flat).reshape(lanes, n, chans)
        return feats, preds

    f_fake, p_fake = per_channel(fake)
    f_real, _ = per_channel(real)
    if stacked:
        modes, n_modes = p_fake[..., 0] * 100 + p_fake[..., 1] * 10 + p_fake[..., 2], 1000
    else:
        modes, n_modes = p_fake[..., 0], 10
    counts = _counts(modes, torch.ones_like(modes, dtype=torch.float64), n_modes)
    lanes = fake.shape[0]
    return {
        "fd": frechet_distance(*gaussian_stats(f_fake), *gaussian_stats(f_real)),
        "fd_n": torch.full((lanes,), float(fake.shape[1]), dtype=torch.float64),
        "classifier_acc": torch.full((lanes,), classifier.heldout_accuracy, dtype=torch.float64),
        "modes": (counts > 0).double().sum(-1),
        "reverse_kl": math.log(n_modes) - _entropy(counts),
    }


def digit_metrics(fake: torch.Tensor, real: torch.Tensor, classifier, stacked: bool) -> dict[str, float]:
    """``digit_statistics`` of one pair of image sets (n, C, H, W), as numbers."""
    stats = digit_statistics(fake.unsqueeze(0), real.unsqueeze(0), classifier, stacked)
    return {k: float(v[0]) for k, v in stats.items()}
