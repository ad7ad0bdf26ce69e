"""A study phase on Ray Tune: connect to (or start) Ray, build or restore the Tuner, run every trial."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from ganlab.config import PbtSchedulerConfig, StudyConfig
from ganlab.study.packs import PACK_KEY, POINT_KEY, PackSpec, packing_allowed, plan_packs, trial_slots
from ganlab.study.progress import STALLS, StudyCallback
from ganlab.study.search import make_scheduler, make_searcher, param_space
from ganlab.study.trainable import GanTrainable, TrialContext
from ganlab.track.store import StudyRun


@dataclass(frozen=True)
class StudyOutcome:
    n_trials: int  # study trials (the lanes of every pack)
    n_errors: int
    n_unfinished: int  # interrupted: resume to finish them
    ray_path: str
    interrupted: bool = False  # Ctrl-C reached Tune, even after its last trial ended


@dataclass
class Interrupt:
    seen: bool = False


@contextlib.contextmanager
def tune_interrupts() -> Iterator[Interrupt]:
    """Around ``Tuner.fit``: whether Tune took a Ctrl-C, and Python's own Ctrl-C handling back afterwards.

    Tune installs a SIGINT handler as it starts and puts the previous one back only when a SIGINT arrives; else
    its handler outlives ``fit``, and a Ctrl-C after the phase (between a search and its confirmation) goes to a
    finished run and is lost: Tune logs "ending Ray Tune run" and the next phase runs to its end. A Ctrl-C during
    Tune's final checkpoint is also not visible in the trials Tune returns (they all ended). So: whoever handles
    SIGINT after ``fit`` tells whether Tune's handler fired (it restores the previous one), and the previous
    handler is restored in any case."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():  # Tune installs nothing there either
        yield interrupt
        return
    previous = signal.getsignal(signal.SIGINT)
    tune_handles = not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))
    try:
        yield interrupt
    finally:
        interrupt.seen = tune_handles and signal.getsignal(signal.SIGINT) is previous
        if previous is not None:  # None: a handler not set from Python, which nothing can put back
            signal.signal(signal.SIGINT, previous)


ADDRESS_PROBE_S = 5.0  # how long a cluster address may take to accept a connection before it counts as absent


def probe_address(address: str) -> str | None:
    """Why nothing answers at ``host:port`` (a short TCP connect), or None. Ray's own client retries an absent
    address for minutes; this answers in seconds. Other forms (``auto``, ``ray://...``) are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return None
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=ADDRESS_PROBE_S):
            return None
    except OSError as e:
        return (f"Nothing answers at the Ray cluster address {address} ({e.strerror or e}). Start a cluster there "
                f"(`ray start --head --port {port}` on the head node), find the address of a running one (`ray status` "
                "on its head node prints it), or leave out --address / RAY_ADDRESS to start a local Ray; nothing was run.")


def connect(num_cpus: int | None, address: str | None) -> bool:
    """Join ``address`` or start a local Ray; a no-op when this process is connected already. True when this
    call connected (and the caller owns the connection: it shuts it down)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Checkpointing at every eval step is by design (it makes resume exact); Tune's warning about it is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address:  # a cluster started by `ray start` with token auth: the client must use the token too
        token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file()):
            os.environ["RAY_AUTH_MODE"] = "token"
            # Ray read its configuration, the mode included, when it was imported: read it again, as Ray's own
            # token set-up does (an explicit address never turns token mode on in Ray 2.60; without this the
            # client joined without its token and failed after ~20 s of retries).
            from ray._raylet import Config

            Config.initialize("")
    # configure_logging=False: the caller decides where Ray's log messages go (`ganlab run`: a file).
    # address "local": a new Ray for this study, never a cluster some `ray start` left on this machine.
    ray.init(address=address or "local", num_cpus=None if address else num_cpus, include_dashboard=False,
             log_to_driver=True, configure_logging=False)
    return True


def _fits(resources: dict[str, float], cpu: float, gpu: float) -> bool:
    return resources.get("CPU", 0.0) >= cpu and resources.get("GPU", 0.0) >= gpu


def _describe(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def resources_problem(study: StudyConfig, address: str | None) -> tuple[str | None, str | None]:
    """(error, warning) about whether a trial of ``study`` can ever start on the connected Ray: an error when no
    node can take one and none will be added (this machine, or a cluster without an autoscaler that could add
    a fitting node), a warning when trials must wait for the autoscaler."""
    cpu, gpu = study.resources.cpu, study.resources.gpu
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(_fits(r, cpu, gpu) for r in nodes):
        return None, None
    have = "; ".join(_describe(r) for r in nodes) or "no node"
    key = "resources.gpu" if gpu and not any(r.get("GPU", 0) >= gpu for r in nodes) else "resources.cpu"
    asked = f"each trial asks for {cpu:g} CPU and {gpu:g} GPU ({key})"
    fix = ("Set resources.gpu: 0 to train on the CPU" if key == "resources.gpu"
           else "Lower resources.cpu (or give Ray more with --num-cpus)")
    if address is None:
        return (f"{asked}, but this machine offers Ray {have}, so no trial could ever start. {fix}, or run the study "
                "on a cluster that has them (--address); nothing was run."), None
    groups = _autoscaler_node_groups()
    if groups is not None and any(_fits(g, cpu, gpu) for g in groups):
        return None, (f"no node of the cluster at {address} can take a trial now ({have}; {asked}): trials wait "
                      "until the cluster's autoscaler adds a node that can.")
    return (f"{asked}, but no node of the cluster at {address} can take one ({have}) and its autoscaler "
            f"{'cannot add one' if groups is not None else 'is not running'}, so no trial could ever start. {fix}, "
            "or add such a node to the cluster; nothing was run."), None


def _autoscaler_node_groups() -> list[dict[str, float]] | None:
    """The resources of each node type the cluster's autoscaler may start, or None without an autoscaler."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - an internal API: without it, assume no autoscaler
        return None
    if config is None:
        return None
    return [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]


def study_space(study: StudyConfig, points: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Tune's param space: packs of same-shape trials where the study packs (``ganlab.study.packs``), sized to
    the connected cluster; otherwise one study trial per Tune trial."""
    space = param_space(study, points)
    if not packing_allowed(study, points is not None):
        return space
    slots = trial_slots(study, ray.cluster_resources())
    packs = plan_packs(study, space[POINT_KEY]["grid_search"], slots)
    if not any(pack.packed for pack in packs):
        return space
    sizes = sorted({len(pack.trials) for pack in packs})
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
    print(f"  packs (pack: {study.pack}): {len(packs)} pack(s) of {size} trials, each trained as one vectorised "
          f"model, for {slots} trial slot(s)", flush=True)
    return {PACK_KEY: tune.grid_search([pack.to_tune()[PACK_KEY] for pack in packs])}


def _recorded_a_trial(path: Path) -> bool:
    """Whether Tune's latest experiment state holds a trial. A study interrupted before Tune created its first
    trial has nothing to restore: it starts again (restoring it, Tune 2.60 logs an IndexError traceback and
    then starts again anyway). Unknown formats count as a trial: Tune decides."""
    states = sorted(path.glob("experiment_state-*.json"))  # the timestamp in the name sorts them
    if not states:
        return True
    try:
        return bool(json.loads(states[-1].read_text()).get("trial_data", True))
    except (OSError, ValueError, AttributeError):
        return True


def run_study(
    study: StudyConfig,
    study_run: StudyRun,
    folder: Path,
    *,
    points: list[dict[str, Any]] | None = None,
    resume: bool = False,
    num_cpus: int | None = None,
    address: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> StudyOutcome:
    """Run (or resume) every trial; ``folder`` holds Tune's experiment and Optuna's storage."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = study_run.parent_run_id
    objectives: list[tuple[str, str]] = list(zip(study.search.metrics, study.search.modes))
    sched = study.scheduler_objective()
    if sched and sched not in objectives:
        objectives.append(sched)
    mutated = tuple(study.scheduler.mutations) if isinstance(study.scheduler, PbtSchedulerConfig) else ()
    context = TrialContext(study_run, study, tuple(objectives), mutated, dict(extra_tags or {}), str(folder / "spool"))
    trainable = tune.with_resources(
        tune.with_parameters(GanTrainable, context=context),
        {"cpu": study.resources.cpu, "gpu": study.resources.gpu},
    )
    owned = connect(num_cpus, address)  # `ganlab run` connects first, to check the resources; then it owns Ray
    try:
        path = folder / name
        expected = len(points) if points is not None else study.trial_count()
        def restored() -> tune.Tuner:  # Tune's saved state: finished trials kept, the others continue
            return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)

        if resume and tune.Tuner.can_restore(str(path)) and _recorded_a_trial(path):
            tuner = restored()
        else:
            pbt = isinstance(study.scheduler, PbtSchedulerConfig)
            t = study.trial.train
            tuner = tune.Tuner(
                trainable,
                param_space=study_space(study, points),
                tune_config=tune.TuneConfig(
                    num_samples=study.num_samples if study.search.algorithm == "optuna" and points is None else 1,
                    max_concurrent_trials=study.max_concurrent,
                    search_alg=make_searcher(study, folder / "optuna.db", name) if points is None else None,
                    scheduler=make_scheduler(study, study_run.tracking_uri),
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(folder),
                    verbose=0,
                    callbacks=[StudyCallback(study_run, t.steps, expected, experiment=str(path),
                                             stall_s=study.stall_timeout_s)],
                    # The trainable asks for checkpoints itself (train.checkpoint_every, else every
                    # checkpoint_interval_s); PBT forces one whenever it clones a trial.
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if pbt else 2),
                    failure_config=tune.FailureConfig(max_failures=study.max_failures),
                ),
            )
        key = str(path)
        STALLS.pop(key, None)
        while True:
            before = STALLS.get(key, 0)
            with tune_interrupts() as interrupt:
                results = tuner.fit()
            stalls = STALLS.get(key, 0)
            if not (interrupt.seen and stalls > before) or stalls > study.stall_restarts:
                break  # ended, or the user's Ctrl-C, or stalled too often: the study stays resumable
            # The watchdog's Ctrl-C, not the user's: a new loop from the state Tune just saved finds every
            # paused trial again (each continues from its latest checkpoint, a PBT clone from its source's).
            print(f"[ganlab] restarting Tune's trial loop from its saved state (restart {stalls} of at most "
                  f"{study.stall_restarts})", flush=True)
            tuner = restored()
        # An interrupted fit() returns normally: count what ended against what the study plans, in study trials.
        # (a trial Tune never started, when the study was interrupted at once, has no config yet: one lane)
        lanes = [len(PackSpec.of(r.config).trials) for r in results]
        ended = sum(n for n, r in zip(lanes, results)
                    if r.metrics is not None and bool(r.metrics.get("done")) or r.error is not None)
        errors = sum(n for n, r in zip(lanes, results) if r.error is not None)
        return StudyOutcome(sum(lanes), errors, max(0, expected - ended), results.experiment_path, interrupt.seen)
    finally:
        if owned:
            ray.shutdown()
