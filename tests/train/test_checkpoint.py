"""A pack's checkpoint resumes every lane exactly, and only into the pack that wrote it.

tests/train/test_trainer.py resumes single trials (a pack of one: plain, with every kind of state, WGAN-GP) and
refuses one changed key; here the same through the public API for a pack of three lanes that differ in seed,
learning rates and betas, one of which blows up (its D at lr 10) and is stopped by the judge at step 10: a
checkpoint written before that step, or after it (the stopped lane frozen in it), continues each lane as the
uninterrupted pack does, metric for metric. A checkpoint is refused (``CheckpointMismatch``) by a pack whose
lanes are other trials (one lane's learning rate changed), the same trials in another order (lane i's state
would go to another trial) or another number of lanes.

Only ``Trainer(cfgs)``, ``run_pack(stop_at=)``, ``save``, ``load`` and the reports' ``step`` and
``lanes[i].metrics`` are used, so the test holds whatever the trainer's insides become.
"""

from __future__ import annotations

import math

import pytest

from ganlab.config import apply_overrides
from ganlab.train import CheckpointMismatch, Trainer

BASE = {"device": "cpu", "data": {"name": "ring8", "batch_size": 32}, "model": {"width": 16, "depth": 2},
        "train": {"steps": 40, "log_every": 10, "eval_every": 20, "eval_samples": 256}}
LANES = [
    {"seed": 1, "optim.lr_g": 1e-3},
    {"seed": 2, "optim.lr_g": 5e-4, "optim.lr_ratio": 4.0, "optim.betas": (0.0, 0.9)},
    {"seed": 3, "optim.lr_g": 1.0, "optim.lr_ratio": 10.0},  # blows up: stopped at the first log step, 10
]
STOPS_AT = 10


def pack(lanes: list[dict] = LANES) -> list:
    return [apply_overrides(BASE, lane) for lane in lanes]


def table(reports) -> list[tuple[int, list[dict[str, float] | None]]]:
    """Each logged step's figures per lane (None for a lane stopped before it)."""
    return [(r.step, [None if lane is None else lane.metrics for lane in r.lanes]) for r in reports]


def assert_same(a, b) -> None:
    """Exact equality, NaN equal to NaN (reverse KL is NaN when no sample is high quality)."""
    assert [step for step, _ in a] == [step for step, _ in b]
    for (step, lanes_a), (_, lanes_b) in zip(a, b):
        for lane, (ma, mb) in enumerate(zip(lanes_a, lanes_b)):
            assert (ma is None) == (mb is None), (step, lane)
            if ma is not None:
                assert ma.keys() == mb.keys(), (step, lane)
                diff = [k for k in ma if not (ma[k] == mb[k] or (math.isnan(ma[k]) and math.isnan(mb[k])))]
                assert not diff, f"step {step} lane {lane}: {diff[:5]}"


@pytest.fixture(scope="module")
def uninterrupted():
    return table(Trainer(pack()).run_pack())


def test_the_pack_has_a_lane_that_stops(uninterrupted):
    # what the resume cases below rely on: lane 2 stops at step 10, the others run to the end
    first, *rest = uninterrupted
    assert first[0] == STOPS_AT and all(m is not None for m in first[1])
    assert rest and all(lanes[2] is None and lanes[0] is not None and lanes[1] is not None for _, lanes in rest)
    assert rest[-1][0] == BASE["train"]["steps"]


@pytest.mark.parametrize("stop_at", [7, 25], ids=["before the lane stops", "after it stopped, mid log interval"])
def test_a_resumed_pack_continues_every_lane_exactly(tmp_path, uninterrupted, stop_at):
    first = Trainer(pack())
    part = table(first.run_pack(stop_at=stop_at))
    first.save(tmp_path / "pack.pt")
    second = Trainer(pack())
    second.load(tmp_path / "pack.pt")
    rest = table(second.run_pack())
    assert_same(part + rest, uninterrupted)


@pytest.mark.parametrize("lanes", [
    [LANES[0], {**LANES[1], "optim.lr_g": 1e-3}, LANES[2]],  # one lane's trial changed
    [LANES[1], LANES[0], LANES[2]],  # the same trials, two lanes swapped
    LANES[:2],  # a lane fewer
], ids=["a lane's lr_g changed", "lanes in another order", "another number of lanes"])
def test_a_pack_checkpoint_is_refused_by_another_pack(tmp_path, lanes):
    t = Trainer(pack())
    list(t.run_pack(stop_at=2))
    t.save(tmp_path / "pack.pt")
    with pytest.raises(CheckpointMismatch):
        Trainer(pack(lanes)).load(tmp_path / "pack.pt")
    Trainer(pack()).load(tmp_path / "pack.pt")  # while the pack that wrote it takes it back
