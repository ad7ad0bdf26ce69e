"""ganlab.diagnose.stats: the interval accumulator and the sliding window the recorder keeps its series in."""

import torch

from ganlab.diagnose.stats import Collector, SlidingWindow


def test_sliding_window_keeps_last_values():
    w = SlidingWindow(3)
    for v in [1, 2, 3, 4, 5]:
        w.push(v)
    assert w.values().tolist() == [3.0, 4.0, 5.0]  # oldest first: trends and periods need the steps' order
    rows = SlidingWindow(2, 3)
    for v in range(4):
        rows.push(torch.tensor([v, 10 * v, 100 * v]))
    assert rows.values().tolist() == [[2.0, 20.0, 200.0], [3.0, 30.0, 300.0]]
    w2 = SlidingWindow(10)
    w2.push(7)
    assert w2.values().tolist() == [7.0]



def test_collector_averages_per_interval_and_lane():
    """What the recorder reads at each log step: each name's mean over the interval per lane ((L,) reported under
    a name, (L, K) under K names), still tensors; the interval ends there."""
    c = Collector()
    for v in [1.0, 2.0, 3.0]:
        c.report("a", torch.tensor([v, 10 * v]))
    c.report(("b", "c"), torch.tensor([[5.0, 6.0], [7.0, 8.0]]))
    c.report(("b", "c"), torch.tensor([[7.0, 8.0], [9.0, 10.0]]))
    c.report("s", 5.0)
    out = c.reduce_lanes()
    assert out.keys() == {"a", "b", "c", "s"} and all(isinstance(v, torch.Tensor) for v in out.values())
    assert out["a"].tolist() == [2.0, 20.0] and out["b"].tolist() == [6.0, 8.0] and out["c"].tolist() == [7.0, 9.0]
    assert out["s"].item() == 5.0
    assert c.reduce_lanes() == {}


def test_a_partly_filled_interval_survives_a_checkpoint():
    c, resumed = Collector(), Collector()
    c.report("a", torch.tensor([1.0, 2.0]))
    state = c.state_dict()
    c.report("a", torch.tensor([3.0, 6.0]))  # the state is a copy: later reports do not change it
    resumed.load_state_dict(state)
    resumed.report("a", torch.tensor([3.0, 6.0]))
    assert resumed.reduce_lanes()["a"].tolist() == c.reduce_lanes()["a"].tolist() == [2.0, 4.0]


def test_a_window_resumed_from_its_state_goes_on_like_the_uninterrupted_one():
    w, resumed = SlidingWindow(3, 2), SlidingWindow(3, 2)
    for v in range(5):  # wrapped round: the oldest step is no longer at the start of the buffer
        w.push(torch.tensor([v, -v]))
    resumed.load_state_dict(w.state_dict())
    for window in (w, resumed):
        window.push(torch.tensor([5, -5]))
    assert torch.equal(resumed.values(), w.values())
    assert w.values()[:, 0].tolist() == [3.0, 4.0, 5.0]
