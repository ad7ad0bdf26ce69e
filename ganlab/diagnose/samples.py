"""Sample quality at eval steps: mode coverage of mixtures (VEEGAN/PacGAN), sliced Wasserstein distance,
and the Frechet distance and class coverage of digits in a small classifier's features. Pure functions of
generated and real samples; the only forward passes are the classifier's."""

from __future__ import annotations

import math

import torch

from ganlab.data import GaussianMixture


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
