"""Which trials of a study train together: packs of same-shape trials, sized to fill the cluster.

A pack is one Tune trial that trains several study trials (its *lanes*) as one vectorised model
(``ganlab.train.Trainer``). Only trials of one shape can share a pack (same architecture, data, loss,
schedule; ``ganlab.train.lanes.pack_shape``); each keeps its seed, its hyper-parameters, its own MLflow run
and verdict. Under ``pack: auto`` a study of N trials on S trial slots gets packs of about N / S lanes (at
most ``pack_max``), so every slot works and no worker idles while another trains many packs in turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ganlab.config import ConfigError, FifoSchedulerConfig, StudyConfig, apply_overrides
from ganlab.train.lanes import pack_shape

INVALID_SHAPE = "invalid"  # a point whose config cannot be built trains (and fails) alone


@dataclass(frozen=True)
class Lane:
    index: int  # the trial's place among the study's points: its name and its MLflow trial id
    point: dict[str, Any]


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


def _chunks(lanes: list[Lane], size: int) -> list[list[Lane]]:
    """``lanes`` in ceil(n / size) packs of near-equal size (33 lanes by 32: 17 + 16, not 32 + 1)."""
    n = max(1, math.ceil(len(lanes) / size))
    base, extra = divmod(len(lanes), n)
    out, start = [], 0
    for i in range(n):
        end = start + base + (1 if i < extra else 0)
        out.append(lanes[start:end])
        start = end
    return out


def plan_packs(study: StudyConfig, points: list[dict[str, Any]], slots: int) -> list[list[Lane]]:
    """The study's points as packs, in the points' order (a pack holds one shape; the first point of a shape
    places its pack). ``pack: 1`` (or a study that cannot pack) gives one lane per pack."""
    lanes = [Lane(i, p) for i, p in enumerate(points)]
    if study.pack == 1:
        return [[lane] for lane in lanes]
    if study.pack == "auto":
        size = max(1, min(study.pack_max, math.ceil(len(points) / slots)))
    else:
        size = int(study.pack)
    groups: dict[str, list[Lane]] = {}
    for lane in lanes:
        try:
            shape = pack_shape(apply_overrides(study.trial, study.resolve(lane.point)))
        except ConfigError:
            shape = f"{INVALID_SHAPE}-{lane.index}"
        groups.setdefault(shape, []).append(lane)
    packs = [chunk for group in groups.values() for chunk in _chunks(group, size)]
    return sorted(packs, key=lambda pack: pack[0].index)
