"""Oscillation of a per-step series over a sliding window: amplitude, dominant period, zero crossings."""

from __future__ import annotations

import math

import torch


def oscillation(values: torch.Tensor) -> dict[str, float]:
    """Population standard deviation and peak-to-peak amplitude of a window (0 for a constant)."""
    if values.numel() == 0:
        return {"std": math.nan, "ptp": math.nan}
    return {
        "std": float(values.std(unbiased=False)),
        "ptp": float(values.max() - values.min()),
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
