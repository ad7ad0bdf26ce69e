"""Which trials of a study train together: packs of same-shape trials, sized to fill the cluster.

A pack is one Tune trial that trains several study trials (its *lanes*) as one vectorised model
(``ganlab.train.Trainer``). Only trials of one shape can share a pack (same architecture, data, loss,
schedule; ``ganlab.train.lanes.pack_shape``); each keeps its seed, its hyper-parameters, its own MLflow run
and verdict. Under ``pack: auto`` a study of N trials on S trial slots gets packs of about N / S lanes (at
most ``pack_max``), so every slot works and no worker idles while another trains many packs in turn.

What a Tune trial trains is a ``PackSpec``: its study trials (``TrialSpec``: the trial's index among the study's
points and its point), in lane order. The planner makes them, ``PackSpec.to_tune`` writes one into Tune's param
space as plain JSON, and ``PackSpec.of`` reads any Tune trial's config back (a pack, a lone ``point``, or the
bare config an Optuna trial gets); nothing else reads or writes that JSON. A ``TrialId`` is a trial's id, from
which a pack's trials get theirs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ganlab.config import ConfigError, FifoSchedulerConfig, StudyConfig, apply_overrides
from ganlab.train.lanes import pack_shape

INVALID_SHAPE = "invalid"  # a point whose config cannot be built trains (and fails) alone
PACK_KEY = "pack"  # a planned Tune trial's config: {"pack": [{"index": i, "point": {...}}, ...]}
POINT_KEY = "point"  # a lone Tune trial's config: {"point": {...}} (grid, random and PBT studies)


@dataclass(frozen=True)
class TrialId:
    """A trial's id, Tune's format ``<prefix>_<number>`` (``a1b2c_00003``): the experiment's random prefix and
    the trial's number, five digits. The whole string keys the trial's MLflow run (a resume finds the run again
    by it, so it never changes); its number is the short id shown in the trial's name. In a pack of several,
    each study trial's id is the pack's prefix numbered by the trial's index among the study's points."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not self.value:
            raise ValueError(f"a trial id is a non-empty string, not {self.value!r}")

    @classmethod
    def of(cls, trial_id: "str | TrialId") -> "TrialId":
        return trial_id if isinstance(trial_id, TrialId) else cls(trial_id)

    @property
    def prefix(self) -> str:
        """``a1b2c`` (an id without ``_`` is all prefix)."""
        return self.value.rsplit("_", 1)[0]

    @property
    def short(self) -> str:
        """``00003``: the part a trial's name shows (an id without ``_`` shows whole)."""
        return self.value.rsplit("_", 1)[-1]

    def numbered(self, number: int) -> "TrialId":
        """The id of trial ``number`` under this id's prefix: ``TrialId("a1b2c_00000").numbered(7)`` is
        ``a1b2c_00007``."""
        return TrialId(f"{self.prefix}_{number:05d}")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TrialSpec:
    """One study trial in a Tune trial's config."""

    index: int | None  # its place among the study's points (its name, its id in a pack); None: not planned
    point: dict[str, Any]  # its swept values (dotted keys)


@dataclass(frozen=True)
class PackSpec:
    """What one Tune trial trains: its study trials, in lane order. A trial trained alone is a pack of one:
    planned (an index) or given to Tune alone (no index: a grid point, a PBT member, an Optuna suggestion)."""

    trials: tuple[TrialSpec, ...]

    def __post_init__(self) -> None:
        if not self.trials:
            raise ValueError("a pack holds at least one trial")
        if len(self.trials) > 1 and any(t.index is None for t in self.trials):
            raise ValueError("every trial of a pack of several has its index among the study's points")

    @classmethod
    def alone(cls, point: Mapping[str, Any]) -> "PackSpec":
        return cls((TrialSpec(None, dict(point)),))

    @classmethod
    def of(cls, config: Mapping[str, Any] | None) -> "PackSpec":
        """Any Tune trial's config: a planned pack (``{"pack": [...]}``), a lone point (``{"point": {...}}``),
        or the bare config an Optuna trial gets, its point itself (a trial Tune never started has none: one
        trial, no values)."""
        config = config or {}
        if PACK_KEY in config:
            return cls(tuple(TrialSpec(int(t["index"]), dict(t["point"])) for t in config[PACK_KEY]))
        return cls.alone(config.get(POINT_KEY, config))

    def to_tune(self) -> dict[str, Any]:
        """The Tune trial config, plain JSON, that ``of`` reads back: Tune stores it with its experiment, and a
        resumed study reads what an earlier ganlab stored, so its form never changes."""
        if self.trials[0].index is None:
            return {POINT_KEY: self.trials[0].point}
        return {PACK_KEY: [{"index": t.index, "point": t.point} for t in self.trials]}

    @property
    def packed(self) -> bool:
        """Several trials as the lanes of one model: each gets its own trial id and the pack's tags, and
        reports its ending itself. A pack of one trains, reports and is named as a trial alone."""
        return len(self.trials) > 1

    def trial_ids(self, tune_trial_id: "str | TrialId") -> list[TrialId]:
        """Each trial's id in the pack the Tune trial ``tune_trial_id`` trains: in a pack of several, its index
        under the Tune trial's prefix; alone, the Tune trial's own id."""
        tune_id = TrialId.of(tune_trial_id)
        if not self.packed:
            return [tune_id]
        return [tune_id.numbered(t.index) for t in self.trials if t.index is not None]  # all, in a pack of several


def packing_allowed(study: StudyConfig, fixed_points: bool) -> bool:
    """A confirmation phase's fixed points pack too, whatever searched them; a scheduler never allows it."""
    return isinstance(study.scheduler, FifoSchedulerConfig) and (fixed_points or study.packable)


def trial_slots(study: StudyConfig, cluster: dict[str, float]) -> int:
    """How many trials the cluster runs at once: its CPUs (GPUs) over a trial's share, capped by max_concurrent."""
    r = study.resources
    slots = math.floor(cluster.get("CPU", 1.0) / r.cpu + 1e-9)
    if r.gpu:
        slots = min(slots, math.floor(cluster.get("GPU", 0.0) / r.gpu + 1e-9))
    if study.max_concurrent:
        slots = min(slots, study.max_concurrent)
    return max(1, slots)


def _chunks(trials: list[TrialSpec], size: int) -> list[PackSpec]:
    """``trials`` in ceil(n / size) packs of near-equal size (33 trials by 32: 17 + 16, not 32 + 1)."""
    n = max(1, math.ceil(len(trials) / size))
    base, extra = divmod(len(trials), n)
    out, start = [], 0
    for i in range(n):
        end = start + base + (1 if i < extra else 0)
        out.append(PackSpec(tuple(trials[start:end])))
        start = end
    return out


def plan_packs(study: StudyConfig, points: list[dict[str, Any]], slots: int) -> list[PackSpec]:
    """The study's points as packs, in the points' order (a pack holds one shape; the first point of a shape
    places its pack). ``pack: 1`` (or a study that cannot pack) gives one trial per pack."""
    trials = [TrialSpec(i, p) for i, p in enumerate(points)]
    if study.pack == 1:
        return [PackSpec((trial,)) for trial in trials]
    if study.pack == "auto":
        size = max(1, min(study.pack_max, math.ceil(len(points) / slots)))
    else:
        size = int(study.pack)
    groups: dict[str, list[TrialSpec]] = {}
    for trial in trials:
        try:
            shape = pack_shape(apply_overrides(study.trial, study.resolve(trial.point)))
        except ConfigError:
            shape = f"{INVALID_SHAPE}-{trial.index}"
        groups.setdefault(shape, []).append(trial)
    packs = [chunk for group in groups.values() for chunk in _chunks(group, size)]
    return sorted(packs, key=lambda pack: pack.trials[0].index)
