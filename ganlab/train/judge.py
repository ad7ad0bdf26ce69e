"""What a pack's figures mean for its lanes: a lane whose loss or gradient blows up stops there (it cannot
recover), and at each eval step every other lane gets a stability verdict from its latest figures
(``ganlab.diagnose.verdict``). The blow-up test runs on the whole report at once, so a log step costs no
Python work per lane; verdicts are taken at eval steps only, from the latest value of every figure.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ganlab.config import DiracModelConfig, TrialConfig
from ganlab.diagnose.verdict import blown_up_lanes, judge


class Judge:
    def __init__(self, cfgs: list[TrialConfig], n_modes: int | None, device: torch.device):
        self.cfg, self.n_lanes, self.n_modes = cfgs[0].verdict, len(cfgs), n_modes
        self.alpha = cfgs[0].diagnostics.period_alpha
        # the Dirac-GAN's distance at the start: what its diverging and settling rules compare with
        self.first_distance = [c.model.start_distance if isinstance(c.model, DiracModelConfig) else None for c in cfgs]
        self.columns: dict[str, int] = {}  # figure name -> its column in ``latest``
        self.latest = torch.zeros(self.n_lanes, 0, dtype=torch.float64)  # every figure's latest value per lane, on CPU
        self.verdicts = ["unbalanced"] * self.n_lanes
        self.reasons = ["no diagnostics yet"] * self.n_lanes
        self.active = torch.ones(self.n_lanes, dtype=torch.bool, device=device)  # lanes still training
        self.stopped: list[int | None] = [None] * self.n_lanes  # the iteration a lane stopped at (diverged)

    def __call__(self, step: int, names: tuple[str, ...], values: torch.Tensor, evaluated: bool) -> torch.Tensor:
        """Reads one report (values (L, K) on CPU); returns the (L,) mask of lanes that stopped at it."""
        live = torch.tensor([s is None for s in self.stopped])
        self._keep_latest(names, values, live)
        why = blown_up_lanes({name: values[:, k] for k, name in enumerate(names)}, self.cfg)
        stopped = torch.tensor([w is not None for w in why]) & live
        for lane in stopped.nonzero().flatten().tolist():
            self.verdicts[lane], self.reasons[lane] = "diverged", why[lane]
            self.stopped[lane] = step
        if evaluated:
            for lane in (live & ~stopped).nonzero().flatten().tolist():
                self.verdicts[lane], self.reasons[lane] = judge(self.figures(lane), self.cfg, self.n_modes,
                                                                self.first_distance[lane], self.alpha)
        if bool(stopped.any()):
            self.active[stopped.to(self.active.device)] = False
        return stopped

    def _keep_latest(self, names: tuple[str, ...], values: torch.Tensor, live: torch.Tensor) -> None:
        """One masked write of the report into the table of latest figures (new names add columns)."""
        new = [n for n in names if n not in self.columns]
        if new:
            self.columns.update({n: len(self.columns) + i for i, n in enumerate(new)})
            grown = torch.full((self.n_lanes, len(new)), math.nan, dtype=torch.float64)  # a stopped lane never had it
            self.latest = torch.cat([self.latest, grown], dim=1)
        if names:
            index = torch.tensor([self.columns[n] for n in names])
            self.latest[:, index] = torch.where(live.reshape(-1, 1), values, self.latest[:, index])

    def figures(self, lane: int) -> dict[str, float]:
        """A lane's latest value of every figure (what its verdict reads)."""
        return dict(zip(self.columns, self.latest[lane].tolist()))

    def state_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "latest": self.latest.clone(), "verdicts": list(self.verdicts),
                "reasons": list(self.reasons), "active": self.active.clone(), "stopped": list(self.stopped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.columns = {name: i for i, name in enumerate(state["columns"])}
        self.latest = state["latest"].clone().cpu()
        self.verdicts, self.reasons = list(state["verdicts"]), list(state["reasons"])
        self.active.copy_(state["active"])
        self.stopped = list(state["stopped"])
