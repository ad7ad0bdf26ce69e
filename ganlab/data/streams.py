"""Random streams, one per lane, drawn for every lane at once on any device.

A trial's random numbers (data, latents, noise, evaluation) must depend on its seed alone, never on which
other trials are trained beside it or on which draws it skipped, so that any trial of a packed study can be
re-run alone to the same numbers. Torch's generators are one stream per object, drawn one object at a time;
here every number is a pure function of (lane key, draw address, position): word ``c`` of SplitMix64
(Steele, Lea and Flood 2014) seeded with the lane's key, ``mix(key + c * GOLDEN)``, at counter
``c = address * 2^32 + position``, computed with tensor arithmetic on int64 (which wraps modulo 2^64 like
the unsigned original). No state advances: the address of a draw says which iteration, step and purpose it
serves, so a resumed run draws exactly what the uninterrupted one did, and a lane that skips a draw (no
instance noise, say) shifts nothing.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_M64 = (1 << 64) - 1


def _signed(x: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    x &= _M64
    return x - (1 << 64) if x >= 1 << 63 else x


GOLDEN = _signed(0x9E3779B97F4A7C15)  # SplitMix64's increment
MIX1 = _signed(0xBF58476D1CE4E5B9)
MIX2 = _signed(0x94D049BB133111EB)
POSITION = _signed(0xD1B54A32D192ED03)  # a second odd constant spreads positions apart from addresses


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser: a bijection of 64-bit values that spreads every input bit over the output."""
    x = (x ^ _shr(x, 30)) * MIX1
    x = (x ^ _shr(x, 27)) * MIX2
    return x ^ _shr(x, 31)


def lane_keys(seeds: list[int], stream: int) -> list[int]:
    """One 64-bit key per lane for a named stream (data, latents, ...), from the lane's seed: NumPy's
    SeedSequence keeps nearby seeds' keys unrelated."""
    return [_signed(int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]))
            for seed in seeds]


class Streams:
    """The random numbers of L lanes for one named purpose: ``uniform``, ``normal``, ``integers``, each of
    shape (L, *shape), addressed by an integer ``address`` (e.g. iteration * 256 + step); at most 2^32 words
    per address."""

    def __init__(self, keys: list[int], device: torch.device | str = "cpu"):
        self.keys = torch.tensor(keys, dtype=torch.int64, device=device)
        self.device = torch.device(device)
        self._positions: dict[int, torch.Tensor] = {}

    @property
    def lanes(self) -> int:
        return self.keys.shape[0]

    def bits(self, address: int, n: int) -> torch.Tensor:
        """(L, n) independent 64-bit words for draw ``address``."""
        positions = self._positions.get(n)
        if positions is None:
            positions = self._positions[n] = torch.arange(n, dtype=torch.int64, device=self.device) * GOLDEN
        start = _signed((address << 32) * GOLDEN)
        return mix((self.keys + start).unsqueeze(1) + positions)

    def uniform(self, address: int, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """(L, *shape) uniform in (0, 1): 53 bits in float64, 24 in float32 (never 0, never 1)."""
        word = self.bits(address, math.prod(shape))
        if dtype == torch.float64:
            u = (_shr(word, 11).double() + 0.5) * 2.0**-53
        else:
            u = ((_shr(word, 40).to(torch.float32) + 0.5) * 2.0**-24).to(dtype)
        return u.reshape(self.lanes, *shape)

    def normal(self, address: int, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """(L, *shape) standard normal: Box-Muller on two 24-bit uniforms from each 64-bit word (float32; its
        tails end at 5.9 standard deviations), or two 32-bit ones in float64."""
        n = math.prod(shape)
        word = self.bits(address, (n + 1) // 2)
        if dtype == torch.float64:
            u1 = (_shr(word, 32).double() + 0.5) * 2.0**-32
            u2 = ((word & 0xFFFFFFFF).double() + 0.5) * 2.0**-32
        else:
            u1 = (_shr(word, 40).to(torch.float32) + 0.5) * 2.0**-24
            u2 = ((word & 0xFFFFFF).to(torch.float32) + 0.5) * 2.0**-24
        radius = torch.sqrt(-2.0 * torch.log(u1))
        angle = (2 * math.pi) * u2
        z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
        return (z if z.shape[1] == n else z[:, :n]).to(dtype).reshape(self.lanes, *shape)

    def integers(self, address: int, high: int, *shape: int) -> torch.Tensor:
        """(L, *shape) integers uniform in [0, high), from 53-bit uniforms (bias below 2^-53 * high)."""
        return (self.uniform(address, *shape, dtype=torch.float64) * high).long().clamp_(max=high - 1)
