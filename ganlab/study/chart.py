"""Which of a trial's figures become MLflow points at a logged step; every figure of every logged step goes to
the trial's Parquet history regardless.

MLflow stores a point in ~15 µs written in bulk (~100 µs through ``log_batch``), and its UI draws a chart a few
hundred pixels wide: a 3000-iteration trial logged every 10 steps has 300 points per metric where a chart shows
~50. So the headline diagnostics (``metrics.CHART``) go at ``chart_points`` logged steps spread evenly over
training, the eval figures at every eval step, and every figure at the trial's last step (a diverged trial's
too), so a run's latest values, which ``load_study`` and the MLflow run table read, are its final ones.
Decided from the step alone, so a restarted trial sends the same points.
"""

from __future__ import annotations

import math

from ganlab.config import TrainConfig
from ganlab.diagnose import metrics as M


class ChartPlan:
    def __init__(self, train: TrainConfig, chart_points: int) -> None:
        self.train = train
        self.every = max(1, math.ceil(train.steps // train.log_every / chart_points))  # in logged steps
        self._columns: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}

    def columns(self, names: tuple[str, ...], step: int, evaluated: bool, last: bool = False) -> list[int] | None:
        """Indices into ``names`` to send to MLflow at ``step`` (None: all of them). ``last``: the trial's last
        report (it diverged here)."""
        if last or step >= self.train.steps:
            return None
        cached = self._columns.get(names)
        if cached is None:
            chart = [k for k, n in enumerate(names) if n in M.CHART]
            evals = sorted(set(chart) | {k for k, n in enumerate(names)
                                         if M.registered(n) and M.metric(n).cadence == "eval"})
            cached = self._columns[names] = (chart, evals)
        if evaluated:
            return cached[1]
        return cached[0] if (step // self.train.log_every) % self.every == 0 else []
