"""Oscillation of a per-step series over a sliding window, separated from minibatch noise.

A logged training statistic is the game's motion plus the sampling noise of the batch it was computed on.
Each step knows its own noise (the variance of a batch mean is the per-sample variance over B; an accuracy
over B samples is binomial), so the window's variance splits into what the noise explains and the
**excess**: the part only the game's dynamics can explain. A **period** is reported only when the
periodogram's peak beats white noise (Fisher's g-test), after the window's straight-line **trend** (a slow
drift, not an oscillation) is removed, and only for periods that fit at least ``min_cycles`` times in the
window. Every function works on a batch of series (leading dimensions), so trials trained together are
measured together.
"""

from __future__ import annotations

import math

import torch

MIN_POINTS = 16  # fewer steps in a window: no period, no test


def detrend(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(residuals, slope per step) of the least-squares line through each series along the last dimension."""
    n = x.shape[-1]
    t = torch.arange(n, dtype=x.dtype, device=x.device)
    t = t - t.mean()
    centred = x - x.mean(-1, keepdim=True)
    slope = (centred * t).sum(-1, keepdim=True) / (t * t).sum().clamp(min=1e-300)
    return centred - slope * t, slope.squeeze(-1)


def fisher_p_value(g: torch.Tensor, m: int) -> torch.Tensor:
    """P(G >= g) for Fisher's g statistic (largest of m periodogram ordinates over their sum) of Gaussian white
    noise (Fisher 1929): sum over j = 1..floor(1/g) of (-1)^(j-1) C(m, j) (1 - j g)^(m-1), terms in log space."""
    g = g.double().unsqueeze(-1)
    j = torch.arange(1, m + 1, dtype=torch.float64, device=g.device)
    base = 1 - j * g
    log_c = math.lgamma(m + 1) - torch.lgamma(j + 1) - torch.lgamma(m - j + 1)
    terms = torch.where(base > 0, torch.exp(log_c + (m - 1) * torch.log(base.clamp(min=1e-300))),
                        torch.zeros((), dtype=torch.float64, device=g.device))
    signs = 1.0 - 2.0 * ((j - 1) % 2)
    return (terms * signs).sum(-1).clamp(0.0, 1.0)


def periodicity(values: torch.Tensor, min_cycles: int = 3, alpha: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(period in steps, p-value) of the strongest oscillation of each detrended series, among periods that fit
    ``min_cycles`` times in the window. The p-value is Fisher's g-test against white noise on the raw
    periodogram; the period is NaN unless p < ``alpha``. It is read at 8x finer frequency resolution (a
    zero-padded, Hann-windowed spectrum around the peak), so a period between two Fourier frequencies is not
    rounded to one of them."""
    n = values.shape[-1]
    lead = values.shape[:-1]
    nan = torch.full(lead, math.nan, dtype=torch.float64, device=values.device)
    m_all = (n - 1) // 2
    if n < MIN_POINTS or m_all < min_cycles + 1:
        return nan, nan
    residual, _ = detrend(values.double())
    power = torch.fft.rfft(residual).abs() ** 2
    band = power[..., min_cycles: m_all + 1]
    total = band.sum(-1)
    peak, k = band.max(-1)
    g = peak / total.clamp(min=1e-300)
    p = torch.where(total > 1e-24 * n, fisher_p_value(g, band.shape[-1]), torch.ones_like(g))
    fine = torch.fft.rfft(residual * torch.hann_window(n, periodic=False, dtype=torch.float64, device=values.device),
                          n=8 * n).abs()
    k8 = 8 * (k + min_cycles)  # the coarse peak on the fine grid; look within one coarse bin of it
    offsets = torch.arange(-8, 9, device=values.device)
    around = (k8.unsqueeze(-1) + offsets).clamp(8 * min_cycles, fine.shape[-1] - 1)
    best = around.gather(-1, fine.gather(-1, around).argmax(-1, keepdim=True)).squeeze(-1)
    period = torch.where(p < alpha, 8 * n / best.double(), nan)
    return period, p


def beyond_noise(values: torch.Tensor, noise_var: torch.Tensor) -> dict[str, torch.Tensor]:
    """The window's oscillation split into noise and game: ``noise`` the std the batches' own sampling noise
    explains (root mean of the per-step noise variances), ``excess`` the std it does not explain (of the
    detrended window, floored at 0), ``trend`` the change of the straight-line fit across the window. Batched
    over leading dimensions; ``noise_var`` has the shape of ``values``."""
    n = values.shape[-1]
    residual, slope = detrend(values.double())
    dof = max(n - 2, 1)  # a line's two parameters were fitted
    var = (residual * residual).sum(-1) / dof
    noise = noise_var.double().mean(-1)
    return {"noise": noise.clamp(min=0).sqrt(), "excess": (var - noise).clamp(min=0).sqrt(), "trend": slope * (n - 1)}


def zero_crossings(values: torch.Tensor) -> torch.Tensor:
    """Sign changes per step of each column of (n, ...) series at once, around the column's median: ~0 for a
    settled series, 1 for one that flips at every step. A zero (a value at the median) takes the sign before it,
    so it is neither a crossing nor two; the changes are counted over the n - 1 steps. NaN for fewer than 2."""
    n = values.shape[0]
    if n < 2:
        return torch.full(values.shape[1:], math.nan, dtype=torch.float64, device=values.device)
    signs = torch.sign(values.double() - values.double().quantile(0.5, dim=0))
    steps = torch.arange(n, device=values.device).reshape(-1, *([1] * (values.dim() - 1))).expand_as(signs)
    last = torch.where(signs != 0, steps, torch.zeros_like(steps)).cummax(0).values  # last non-zero so far
    filled = signs.gather(0, last)
    changes = (filled[1:] != filled[:-1]) & (filled[1:] != 0) & (filled[:-1] != 0)
    return changes.double().sum(0) / (n - 1)
