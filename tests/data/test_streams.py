"""ganlab.data.streams: counter-based random streams. Every number is a pure function of (lane key, draw
address, position): the same key and address give the same draws whatever else is drawn, a lane's draws do
not depend on the other lanes of its pack, and SplitMix64's words are computed exactly in int64 arithmetic."""

import math

import pytest
import torch

from ganlab.data.streams import Streams, lane_keys

M64 = (1 << 64) - 1
GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
KEYS = lane_keys([0, 1, 2, 7], stream=1)


def splitmix64(key: int, counter: int) -> int:
    """Word ``counter`` of SplitMix64 seeded with ``key`` (Steele, Lea and Flood 2014), in Python's exact
    integers: the reference the int64 tensor arithmetic must reproduce bit for bit."""
    z = (key + counter * GOLDEN) & M64
    z = ((z ^ (z >> 30)) * MIX1) & M64
    z = ((z ^ (z >> 27)) * MIX2) & M64
    return z ^ (z >> 31)


def test_words_are_splitmix64_at_counter_address_times_2_32_plus_position():
    assert splitmix64(0, 1) == 0xE220A8397B1DCDAF  # SplitMix64's first output from seed 0, as published
    keys = [0, 1, -1, *KEYS]
    streams = Streams(keys)
    for address in (0, 1, 5, 123_456, 2**31 + 3):
        got = streams.bits(address, 6)
        for lane, key in enumerate(keys):
            want = [splitmix64(key & M64, (address << 32) + position) for position in range(6)]
            assert [w & M64 for w in got[lane].tolist()] == want, (key, address)


@pytest.mark.parametrize("draw", [
    lambda s, a: s.uniform(a, 3, 5),
    lambda s, a: s.uniform(a, 7, dtype=torch.float64),
    lambda s, a: s.normal(a, 3, 5),  # an odd count: Box-Muller's pairs cut at 15
    lambda s, a: s.normal(a, 4, dtype=torch.float64),
    lambda s, a: s.integers(a, 10, 2, 3),
], ids=["uniform", "uniform64", "normal", "normal64", "integers"])
def test_a_draw_depends_on_its_key_and_address_alone(draw):
    streams = Streams(KEYS)
    first = draw(streams, 42)
    assert first.shape[0] == len(KEYS)
    for other in (0, 41, 43, 10**6):  # no state advances: draws at other addresses change nothing
        draw(streams, other)
    assert torch.equal(draw(streams, 42), first) and torch.equal(draw(Streams(KEYS), 42), first)
    assert not torch.equal(draw(streams, 43), first)  # another address: other numbers
    for lane in range(len(KEYS)):  # a lane draws what a pack of one with its key draws
        assert torch.equal(draw(Streams([KEYS[lane]]), 42)[0], first[lane])
        assert torch.equal(draw(Streams([KEYS[3], KEYS[lane], KEYS[0]]), 42)[1], first[lane])
    assert all(not torch.equal(first[i], first[j]) for i in range(len(KEYS)) for j in range(i))  # lanes differ


def test_a_longer_draw_begins_with_the_shorter_one():
    """Position p of a draw is word p whatever the draw's size: a config drawing more keeps its first numbers."""
    streams = Streams(KEYS)
    assert torch.equal(streams.uniform(9, 100)[:, :10], streams.uniform(9, 10))
    assert torch.equal(streams.bits(9, 64)[:, :3], streams.bits(9, 3))


def test_lane_keys_are_seeded_and_unrelated_between_seeds_and_streams():
    assert lane_keys([0, 1, 2], 1) == lane_keys([0, 1, 2], 1)
    assert lane_keys([5], 1) == lane_keys([3, 5], 1)[1:]  # a lane's key is its seed's, whatever its pack
    keys = lane_keys(list(range(50)), 1) + lane_keys(list(range(50)), 2)
    assert len(set(keys)) == 100 and all(-(2**63) <= k < 2**63 for k in keys)
    # nearby seeds' first uniforms are unrelated, not shifted copies of each other
    u = Streams(lane_keys(list(range(1000)), 1)).uniform(0, 1, dtype=torch.float64).squeeze(1)
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.1


def test_the_distributions():
    streams = Streams(lane_keys([3, 4], 2))
    for dtype in (torch.float32, torch.float64):
        u = streams.uniform(1, 200_000, dtype=dtype)
        assert u.dtype == dtype and 0 < u.min() and u.max() < 1  # never 0, never 1
        assert u.double().mean().item() == pytest.approx(0.5, abs=3e-3)
        assert u.double().var().item() == pytest.approx(1 / 12, abs=2e-3)
        z = streams.normal(2, 200_000, dtype=dtype).double()
        assert z.dtype == torch.float64 and z.mean().abs().max() < 0.01
        assert z.std(-1).sub(1).abs().max() < 0.01
        assert (z.abs() > 3).double().mean().item() == pytest.approx(math.erfc(3 / math.sqrt(2)), rel=0.15)
    k = streams.integers(3, 7, 70_000)
    assert k.dtype == torch.int64 and k.min() == 0 and k.max() == 6
    counts = torch.stack([torch.bincount(lane, minlength=7) for lane in k]).double()
    assert (counts / 10_000 - 1).abs().max() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_draws_the_numbers_a_cpu_draws():
    cpu, gpu = Streams(KEYS), Streams(KEYS, device="cuda")
    assert torch.equal(gpu.bits(77, 1000).cpu(), cpu.bits(77, 1000))
    assert torch.equal(gpu.integers(77, 1000, 50).cpu(), cpu.integers(77, 1000, 50))
    assert torch.allclose(gpu.normal(77, 50, dtype=torch.float64).cpu(), cpu.normal(77, 50, dtype=torch.float64),
                          rtol=1e-12, atol=1e-12)
