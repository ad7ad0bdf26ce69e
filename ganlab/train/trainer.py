"""The GAN training loop for a *pack*: trials of one shape trained as one vectorised model, each a *lane*. A
single trial is a pack of one lane; there is one training loop. It knows nothing of Ray or MLflow:
``run_pack()`` yields each logged step's figures as one (lanes x metrics) table, and whoever drives it
decides where they go.

The loop is built from parts that each do one job: the ``PackModel`` (nets, flat parameters, optimisers,
random streams; ``pack``), the ``Recorder`` (the diagnostics of every step, by name; ``recorder``), the
``Evaluator`` (sample quality at eval steps; ``evaluation``) and the ``Judge`` (blow-ups and verdicts, and
which lanes still train; ``judge``). The per-iteration hot path has no Python loop over lanes: models, losses,
regularizers and optimisers act on all lanes at once, and a lane that diverges is frozen while the others
go on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganlab.config import TrialConfig
from ganlab.diagnose import metrics as M
from ganlab.train import checkpoint
from ganlab.train.evaluation import Evaluator, LaneGame
from ganlab.train.judge import Judge
from ganlab.train.pack import PackModel, resolve_device
from ganlab.train.recorder import Recorder

CheckpointMismatch = checkpoint.CheckpointMismatch  # what resuming under another config raises


@dataclass(frozen=True)
class StepReport:
    """One lane's figures at one step, for a consumer that takes trials one by one."""

    step: int  # training iterations so far: the x-axis of every metric
    metrics: dict[str, float]
    evaluated: bool  # the metrics include the eval/* figures
    verdict: str = "unbalanced"
    reason: str = ""
    stopped: bool = False  # training ended early (diverged): this is the lane's last report


@dataclass(frozen=True)
class PackReport:
    """Every lane's figures at one logged step: ``values[lane, k]`` is metric ``names[k]`` (float64, on the
    host, moved there in one transfer). A lane that stopped before this step is not ``reported``; one that
    stopped at it (diverged) is ``stopped``."""

    step: int
    names: tuple[str, ...]
    values: torch.Tensor  # (L, K)
    evaluated: bool
    verdicts: tuple[str, ...]
    reasons: tuple[str, ...]
    reported: torch.Tensor  # (L,) bool
    stopped: torch.Tensor  # (L,) bool

    def lane(self, lane: int) -> StepReport | None:
        """One lane's report as a dict of figures (None if the lane stopped before this step)."""
        if not bool(self.reported[lane]):
            return None
        return StepReport(self.step, dict(zip(self.names, self.values[lane].tolist())), self.evaluated,
                          self.verdicts[lane], self.reasons[lane], bool(self.stopped[lane]))

    @property
    def lanes(self) -> list[StepReport | None]:
        return [self.lane(i) for i in range(self.values.shape[0])]


class Trainer:
    """Trains one trial config, or a pack of configs of one shape (``ganlab.train.lanes``) as lanes."""

    def __init__(self, cfgs: TrialConfig | list[TrialConfig], device: str | None = None):
        self.cfgs = [cfgs] if isinstance(cfgs, TrialConfig) else list(cfgs)
        self.cfg = self.cfgs[0]  # the pack's shape (per-lane values: self.model.hyper)
        self.n_lanes = len(self.cfgs)
        self.device = resolve_device(device or self.cfg.device)
        self.model = PackModel(self.cfgs, self.device)
        self.data = self.model.data
        self.recorder = Recorder(self.cfg, self.n_lanes, self.device)
        self.evaluator = Evaluator(self.model)
        self.judge = Judge(self.cfgs, self.model.data.n_modes, self.device)
        self.iteration = self.g_steps = self.d_steps = 0
        self.last_params = self._params()  # each player's flat parameters at the last log step

    @property
    def acc(self) -> str:
        """The accuracies' metric prefix: ``acc``, or ``acc_sign`` for critics."""
        return self.recorder.acc

    def _params(self) -> dict[str, torch.Tensor]:
        return {"g": self.model.g_player.flat.clone(), "d": self.model.d_player.flat.clone()}

    # --- one iteration ---------------------------------------------------------------------------

    def discriminator_grads(self, k: int = 0) -> None:
        """D's loss and regularizers at the current (G, D) for D step k, gradients in D's flat buffer."""
        obj = self.model.d_objective(self.iteration, k)
        self.model.d_player.zero_grad()
        (obj.loss + obj.reg).sum().backward()
        self.recorder.d_step(obj, self.model.d_player.grad)

    def generator_grads(self, j: int = 0) -> None:
        """G's loss at the current (G, D) for G step j, gradients in G's flat buffer."""
        terms = self.model.generator_terms(self.iteration, j)
        self.model.g_player.zero_grad()
        terms.mean(-1).sum().backward()
        self.recorder.g_step(terms, self.model.g_player.grad)

    def discriminator_update(self) -> None:
        self.model.update_d(self.judge.active)
        self.d_steps += 1

    def generator_update(self) -> None:
        self.model.update_g(self.judge.active)
        self.g_steps += 1

    def train_step(self) -> None:
        """One iteration of the schedule: simultaneous, or alternating blocks of D and G updates."""
        s = self.cfg.schedule
        self.recorder.begin_iteration(self.iteration)
        if s.mode == "simultaneous":
            self.discriminator_grads(0)
            self.generator_grads(0)  # same point: neither player has moved yet
            self.discriminator_update()
            self.generator_update()
        else:
            def d_block() -> None:
                for k in range(s.d_steps):
                    self.discriminator_grads(k)
                    self.discriminator_update()

            def g_block() -> None:
                for j in range(s.g_steps):
                    self.generator_grads(j)
                    self.generator_update()

            for block in (d_block, g_block) if s.order == "d_first" else (g_block, d_block):
                block()
        self.iteration += 1
        self.recorder.end_iteration()

    # --- what gets logged ----------------------------------------------------------------------

    def log_metrics(self) -> dict[str, torch.Tensor]:
        """Every lane's logged figures at this step: name -> (L,) tensor."""
        params = self._params()
        metrics = self.recorder.metrics(params, self.last_params)
        self.last_params = params
        b = self.cfg.data.batch_size
        for name, value in ((M.PROGRESS_G_STEPS, self.g_steps), (M.PROGRESS_D_STEPS, self.d_steps),
                            (M.PROGRESS_REAL_SAMPLES, self.d_steps * b)):
            metrics[name] = torch.full((self.n_lanes,), float(value), device=self.device)
        return metrics

    def evaluate(self) -> dict[str, torch.Tensor]:
        """The eval/* figures of every lane now."""
        return self.evaluator(self.iteration)

    def _report(self, columns: dict[str, torch.Tensor], evaluated: bool) -> PackReport:
        names = tuple(columns)
        values = (torch.stack([columns[k].to(self.device, torch.float64) for k in names], dim=1).cpu() if names
                  else torch.zeros(self.n_lanes, 0, dtype=torch.float64))  # one host transfer
        reported = torch.tensor([s is None for s in self.judge.stopped])
        stopped = self.judge(self.iteration, names, values, evaluated)
        return PackReport(self.iteration, names, values, evaluated, tuple(self.judge.verdicts),
                          tuple(self.judge.reasons), reported, stopped)

    # --- the loop --------------------------------------------------------------------------------

    def run_pack(self, stop_at: int | None = None) -> Iterator[PackReport]:
        """Train from the current iteration to ``train.steps`` (or ``stop_at``), yielding at log and eval steps.
        A lane whose loss or gradient blows up stops there (frozen, reported ``stopped``); the rest go on."""
        t = self.cfg.train
        end = t.steps if stop_at is None else min(stop_at, t.steps)
        while self.iteration < end and bool(self.judge.active.any()):
            self.train_step()
            step, last = self.iteration, self.iteration == t.steps
            log_now = step % t.log_every == 0 or last
            eval_now = step % t.eval_every == 0 or last
            if not (log_now or eval_now):
                continue
            columns = self.log_metrics() if log_now else {}
            if eval_now:
                columns.update(self.evaluate())
            yield self._report(columns, eval_now)

    def run(self, stop_at: int | None = None) -> Iterator[StepReport]:
        """A single trial's reports (a pack of one lane)."""
        if self.n_lanes != 1:
            raise ValueError(f"run() reports one trial; this pack has {self.n_lanes} lanes: use run_pack()")
        for report in self.run_pack(stop_at):
            lane = report.lane(0)
            if lane is not None:
                yield lane

    # --- what a lane is worth, as single models -------------------------------------------------------

    @torch.no_grad()
    def generate(self, n: int, lane: int = 0) -> torch.Tensor:
        """One lane's samples from its evaluation generator (EMA when kept), latents fixed by (seed, iteration)."""
        return self.evaluator.generate(n, self.iteration)[lane].cpu()

    def game(self, lane: int = 0) -> LaneGame:
        """A lane as a game of single models, for the analyses that take one (Jacobian, duality gap)."""
        return self.evaluator.game(lane)

    def learning_rates(self, lane: int = 0) -> tuple[float, float]:
        return self.model.learning_rates(lane)

    def export_models(self, lane: int = 0) -> dict[str, Any]:
        return checkpoint.export_models(self.model, lane, self.iteration)

    # --- checkpoints (``ganlab.train.checkpoint``) ------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return checkpoint.state_of(self)

    def load_state_dict(self, state: dict[str, Any], same_trajectory: bool = True) -> None:
        checkpoint.restore(self, state, same_trajectory)

    def save(self, path: str | Path) -> None:
        checkpoint.save(self, path)

    def load(self, path: str | Path) -> None:
        checkpoint.load(self, path)


def metric_names(cfg: TrialConfig) -> set[str]:
    """Every diagnostic a trial of this config logs, found by training it for one iteration (a second or
    two): the only list that cannot drift from what the trainer really emits."""
    short = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 1, "log_every": 1, "eval_every": 1})})
    return set(next(Trainer(short, "cpu").run_pack()).names)
