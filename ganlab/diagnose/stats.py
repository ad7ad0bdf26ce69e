"""Diagnostics reported cheaply from anywhere in a training step and reduced in one place (as
stylegan2-ada's ``training_stats``): an interval accumulator and a sliding window of a per-step series."""

from __future__ import annotations

from collections import defaultdict

import torch


class Collector:
    """Accumulates values reported from anywhere in a step; ``reduce_lanes`` averages them per interval.

    Values stay tensors, and ``reduce_lanes`` returns tensors: no host sync per step, which matters once trials
    run on GPUs.
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

    def reduce_lanes(self) -> dict[str, torch.Tensor]:
        """The interval means of values reported per lane ((L,) under a name, (L, K) under K names): each name's
        (L,) column, still a tensor (one host transfer later, for every name at once)."""
        out: dict[str, torch.Tensor] = {}
        for name, total in self._sum.items():
            means = total / self._count[name]
            out.update(zip(name, means.unbind(-1)) if isinstance(name, tuple) else [(name, means)])
        self._sum.clear()
        self._count.clear()
        return out


class SlidingWindow:
    """The last ``size`` values of a per-step series, or of a tensor of them pushed together (``shape``: e.g.
    lanes x series, one such tensor per step), for the oscillation statistics. ``values()`` is in the order
    the steps happened: (n, *shape)."""

    def __init__(self, size: int, *shape: int, device: torch.device | str = "cpu"):
        self.size = size
        self._buf = torch.zeros((size, *shape), dtype=torch.float64, device=device)
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
        """The window, oldest step first: (n, *shape)."""
        if self._n <= self.size:
            return self._buf[: self._n]
        return torch.roll(self._buf, -(self._n % self.size), dims=0)
