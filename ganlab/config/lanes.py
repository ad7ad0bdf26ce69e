"""Which trial-config keys may differ between the trials of one pack, and which a running trial may change.

One spec, read by three consumers that used to keep their own lists: the trainer holds every *per-lane* key
as an (L,) tensor (``ganlab.train.lanes.Hyper``), packability is equality of everything else
(``ganlab.train.lanes.pack_shape``), and population-based training may mutate only the *mutable* keys
(``config.study.PbtSchedulerConfig``). A key that is mutable but not per-lane (the schedule) is shared by a
pack and read afresh every iteration, so a trial rebuilt under a new value continues from its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LaneKey:
    key: str  # dotted trial-config key
    per_lane: bool  # may differ between the lanes of one pack (held as an (L,) tensor)
    mutable: bool  # PBT may change it in a running trial without rebuilding its models


LANE_KEYS = (
    LaneKey("seed", per_lane=True, mutable=False),
    LaneKey("model.theta0", per_lane=True, mutable=False),  # the Dirac-GAN's starting point
    LaneKey("model.psi0", per_lane=True, mutable=False),
    LaneKey("optim.lr_g", per_lane=True, mutable=True),
    LaneKey("optim.lr_ratio", per_lane=True, mutable=True),
    LaneKey("optim.betas", per_lane=True, mutable=False),
    LaneKey("optim.betas_d", per_lane=True, mutable=False),
    LaneKey("optim.momentum", per_lane=True, mutable=False),
    LaneKey("optim.alpha", per_lane=True, mutable=False),
    LaneKey("optim.g_ema", per_lane=True, mutable=False),
    LaneKey("regularizer.r1", per_lane=True, mutable=True),
    LaneKey("regularizer.r2", per_lane=True, mutable=True),
    LaneKey("regularizer.instance_noise", per_lane=True, mutable=True),
    LaneKey("regularizer.instance_noise_anneal", per_lane=True, mutable=False),
    LaneKey("loss.gp_weight", per_lane=True, mutable=True),
    LaneKey("loss.gp_center", per_lane=True, mutable=False),
    LaneKey("loss.clip", per_lane=True, mutable=False),
    LaneKey("schedule.d_steps", per_lane=False, mutable=True),
    LaneKey("schedule.g_steps", per_lane=False, mutable=True),
)

PER_LANE_KEYS = tuple(k.key for k in LANE_KEYS if k.per_lane)
MUTABLE_KEYS = tuple(k.key for k in LANE_KEYS if k.mutable)  # hyper-parameters PBT may change in a running trial
