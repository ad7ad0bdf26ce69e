"""From a YAML file to validated configs: a strict YAML reader, overrides by dotted key, and every check
a study needs before Ray starts. Errors name the file and the key, in one sentence."""

from __future__ import annotations

import copy
import math
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ganlab.config.base import ConfigError, ConfigFileMissing
from ganlab.config.errors import did_you_mean, format_validation_error
from ganlab.config.expressions import expression_names
from ganlab.config.lanes import MUTABLE_KEYS
from ganlab.config.study import (
    AshaSchedulerConfig,
    FifoSchedulerConfig,
    PbtSchedulerConfig,
    StudyConfig,
    SweepAxis,
)
from ganlab.config.trial import _DISCRIMINATED_FIELDS, TrialConfig


class _StrictLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string and silently keeps the last of two equal keys; we do neither."""


_FLOAT_RE = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$")
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigFileMissing(path)
    if not path.is_file():
        raise ConfigError(path, None, "it is a folder, not a file (or not a regular file).")
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(path, None, f"it is not valid YAML{where}: {problem}.") from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, "it is not a text file.") from None
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"the top level must be a mapping of keys, got {type(data).__name__}.")
    return data


def parse_trial(raw: dict[str, Any], source: str | Path | None = None, prefix: str = "") -> TrialConfig:
    try:
        return TrialConfig.model_validate(raw)
    except ValidationError as e:
        key, msg = format_validation_error(e, TrialConfig, prefix)
        raise ConfigError(source, key, msg) from None


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with ``dotted`` set; intermediate mappings are created as needed."""
    out = copy.deepcopy(tree)
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
    return out


def apply_overrides(base: TrialConfig | dict[str, Any], overrides: dict[str, Any]) -> TrialConfig:
    """The trial a sweep point describes. Values arrive from Ray Tune or ``--set`` as plain data."""
    raw = base.model_dump(mode="json") if isinstance(base, TrialConfig) else copy.deepcopy(base)
    for key, value in overrides.items():
        block = key.split(".")[0]
        if key == f"{block}.name" and block in _DISCRIMINATED_FIELDS and isinstance(raw.get(block), dict):
            # Switching a union member (loss: wgan_gp -> hinge) keeps only the keys the new member has.
            fields = _member_fields(block, value)
            raw = {**raw, block: {k: v for k, v in raw[block].items() if k in fields}}
        raw = set_dotted(raw, key, value)
    return parse_trial(raw)


def _member_fields(block: str, name: Any) -> set[str]:
    for member in typing.get_args(TrialConfig.model_fields[block].annotation):
        if name in typing.get_args(member.model_fields["name"].annotation):
            return set(member.model_fields)
    return {"name"}


def _key_exists(trial: TrialConfig, dotted: str) -> bool:
    node: Any = trial
    for part in dotted.split("."):
        if not isinstance(node, BaseModel) or part not in type(node).model_fields:
            return False
        node = getattr(node, part)
    return True


MAX_POINTS_CHECKED = 10_000  # larger grids are checked axis by axis only


def load_study(path: str | Path) -> StudyConfig:
    """Read and fully validate a study: every value any trial can receive is checked before Ray starts."""
    raw = read_yaml(path)
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as e:
        key, msg = format_validation_error(e, StudyConfig)
        raise ConfigError(path, key, msg) from None
    base_raw = raw.get("trial", {})
    flat = study.trial.flat()
    typed = {dotted: _check_axis(path, f"sweep.{dotted}", dotted, axis, study, base_raw)
             for dotted, axis in study.sweep.items()}
    study = study.model_copy(update={"sweep": typed})
    for dotted, axis in study.sweep.items():
        for cond_key, wanted in (axis.when or {}).items():
            if cond_key not in flat and cond_key not in study.sweep:
                raise ConfigError(path, f"sweep.{dotted}.when.{cond_key}", f"'{cond_key}' is neither a trial key nor swept.")
    for target, expression in study.derived.items():
        key = f"derived.{target}"
        if target not in flat:
            raise ConfigError(path, key, f"the trial config has no key 'trial.{target}' to derive."
                                         + did_you_mean(target, flat))
        if target in study.sweep or target == "seed":
            raise ConfigError(path, key, f"'{target}' is swept; a key is either swept or derived.")
        try:
            names = expression_names(expression)
        except ValueError as e:
            raise ConfigError(path, key, f"{e}.") from None
        unknown = [n for n in names if n not in flat and n not in study.sweep]
        if unknown:
            raise ConfigError(path, key, f"the expression reads '{unknown[0]}', which is not a trial key "
                                         "(write dotted keys such as optim.lr_ratio).")
    t = study.trial.train
    if t.checkpoint_every % t.eval_every:
        raise ConfigError(path, "trial.train.checkpoint_every", f"in a study, trials checkpoint at eval steps: use a "
                          f"multiple of train.eval_every ({t.eval_every}), or 0 for every checkpoint_interval_s.")
    _check_search(path, study)
    study = _check_scheduler(path, study, base_raw)
    if study.confirm is not None and study.confirm_objective() is None:
        raise ConfigError(path, "confirm.metric", "the confirmation phase ranks configurations by a metric: set "
                                                  "confirm.metric and confirm.mode (or search.metric and search.mode).")
    if study.search.algorithm != "optuna":
        _check_points(path, study, base_raw)
    return study


def _check_axis(path: str | Path, key: str, dotted: str, axis: SweepAxis, study: StudyConfig, base_raw: dict) -> SweepAxis:
    """Every value the axis can produce is valid for its key; returns the axis with its listed numbers in the
    key's type (``1`` of a float key becomes ``1.0``), so that Ray Tune and PBT never take a float
    hyper-parameter for an integer one and round it."""
    if not _key_exists(study.trial, dotted) and not _is_union_member_key(dotted, axis):
        raise ConfigError(path, key, f"the trial config has no key 'trial.{dotted}' to sweep."
                          + did_you_mean(dotted, study.trial.flat()))
    if dotted == "seed" and study.seeds is not None:
        raise ConfigError(path, key, "seeds are already set by the top-level 'seeds' list; use one of them.")
    if axis.kind in ("uniform", "loguniform") and _key_exists(study.trial, dotted):
        current = _get_dotted(study.trial, dotted)
        if not isinstance(current, float):
            kind = "an integer" if isinstance(current, int) and not isinstance(current, bool) else "not a number"
            raise ConfigError(
                path, key, f"{axis.kind} draws real numbers, but 'trial.{dotted}' is {kind}; use grid or choice."
            )
    # A conditional axis is checked where its condition holds (a GP weight next to the GP loss).
    context = {k: (v[0] if isinstance(v, list) else v) for k, v in (axis.when or {}).items()}
    typed = []
    for value in axis.probe_values():
        try:
            trial = apply_overrides(base_raw, {**context, dotted: value})
        except ConfigError as e:
            raise ConfigError(path, key, f"value {value!r} is invalid for 'trial.{dotted}': {e.message}") from None
        typed.append(_numeric_as(value, _get_dotted(trial, dotted)))
    if axis.grid is None and axis.choice is None:
        return axis
    return axis.model_copy(update={axis.kind: typed})


def _numeric_as(value: Any, parsed: Any) -> Any:
    """``value`` as written, but a number in the type the config parsed it to (int <-> float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(parsed, bool):
        return value
    if isinstance(parsed, float) and isinstance(value, int):
        return float(value)
    if isinstance(parsed, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _is_union_member_key(dotted: str, axis: SweepAxis) -> bool:
    """``loss.gp_weight`` exists only for some losses: sweeping it is fine when ``when`` selects one."""
    return axis.when is not None and dotted.split(".")[0] in _DISCRIMINATED_FIELDS


def _check_search(path: str | Path, study: StudyConfig) -> None:
    search = study.search
    if search.algorithm == "grid":
        for dotted, axis in study.sweep.items():
            if axis.is_random:
                raise ConfigError(path, f"sweep.{dotted}", f"a grid search enumerates values, but this axis is "
                                  f"{axis.kind}; use grid, or set search.algorithm to random or optuna.")
        if study.num_samples != 1:
            raise ConfigError(path, "num_samples", "a grid search runs each point once per seed; repeat a "
                              "configuration with more seeds, or set search.algorithm to random.")
    if search.algorithm == "optuna":
        if study.seeds is not None and len(study.seeds) > 1:
            raise ConfigError(path, "seeds", "Optuna searches configurations, not seeds: give one seed (or none) "
                              "and use a confirmation phase (confirm: {top: K, seeds: M}) for rates across seeds.")
        if not study.sweep:
            raise ConfigError(path, "sweep", "an Optuna search needs at least one swept key.")
        if isinstance(study.scheduler, PbtSchedulerConfig):
            raise ConfigError(path, "scheduler.name", "PBT mutates configurations itself; use it with grid or random.")
    if isinstance(study.pack, int) and study.pack > 1 and not study.packable:
        why = "Optuna proposes trials one at a time" if search.algorithm == "optuna" else (
            f"{study.scheduler.name} stops or clones trials one at a time")
        raise ConfigError(path, "pack", f"a pack trains its trials in lock step, and {why}; set pack: 1, or "
                          "'auto' (which packs only where it can).")


def _check_scheduler(path: str | Path, study: StudyConfig, base_raw: dict) -> StudyConfig:
    """The study, its PBT mutations typed like its sweep axes."""
    s = study.scheduler
    if isinstance(s, FifoSchedulerConfig):
        return study
    if s.metric is None and len(study.search.metrics) != 1:
        raise ConfigError(path, "scheduler.metric", f"{s.name} needs one metric to compare trials by: set "
                          "scheduler.metric and scheduler.mode (or a single search.metric).")
    if s.metric is not None and s.mode is None:
        raise ConfigError(path, "scheduler.mode", "give min or max with scheduler.metric.")
    steps, every = study.trial.train.steps, study.trial.train.eval_every
    if isinstance(s, AshaSchedulerConfig) and s.grace_steps >= steps:
        raise ConfigError(path, "scheduler.grace_steps", f"must be below train.steps ({steps}), or no trial can "
                          "ever be stopped early.")
    if isinstance(s, PbtSchedulerConfig):
        if s.interval % every or s.interval >= steps:
            raise ConfigError(path, "scheduler.interval", f"must be a multiple of train.eval_every ({every}) and "
                              f"below train.steps ({steps}): trials report, and are checkpointed, at eval steps.")
        for dotted, axis in s.mutations.items():
            key = f"scheduler.mutations.{dotted}"
            if dotted not in MUTABLE_KEYS:
                raise ConfigError(path, key, f"PBT can change only {', '.join(MUTABLE_KEYS)} in a running trial "
                                  "(others would rebuild the models).")
            if axis.when is not None:
                raise ConfigError(path, f"{key}.when", "mutations cannot be conditional.")
            if dotted in study.sweep and study.sweep[dotted].when is not None:
                raise ConfigError(path, key, "a mutated key cannot also be a conditional sweep axis.")
        typed = {dotted: _check_axis(path, f"scheduler.mutations.{dotted}", dotted, axis, study, base_raw)
                 for dotted, axis in s.mutations.items()}
        return study.model_copy(update={"scheduler": s.model_copy(update={"mutations": typed})})
    return study


def _check_points(path: str | Path, study: StudyConfig, base_raw: dict) -> None:
    """Validate every trial the study will run (conditions and derived keys applied), up to a limit."""
    grid_sizes = [len(a.grid) for a in study.sweep.values() if a.grid is not None]
    if math.prod(grid_sizes) * (study.num_samples if study.has_random_axes else 1) > MAX_POINTS_CHECKED:
        return
    try:
        points = study.points()
    except (ValueError, ArithmeticError, TypeError) as e:
        raise ConfigError(path, "derived", f"a derived key cannot be computed: {e}.") from None
    for point in points:
        try:
            apply_overrides(base_raw, point)
        except ConfigError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items() if k != "seed")
            where = "derived" if e.key in study.derived else "sweep"
            raise ConfigError(path, f"{where}.{e.key}", f"the trial ({shown}) is invalid: {e.message}") from None


def _get_dotted(trial: TrialConfig, dotted: str) -> Any:
    node: Any = trial
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``--set optim.lr_g=1e-3`` pairs, values read as YAML (numbers, lists and strings all work)."""
    out = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(None, f"--set {item}", "expected --set KEY=VALUE with a dotted trial key, "
                              "e.g. --set optim.lr_g=1e-3.")
        try:
            out[key.strip()] = yaml.load(text, Loader=_StrictLoader)
        except yaml.YAMLError:
            raise ConfigError(None, f"--set {key.strip()}", f"the value {text!r} is not valid YAML.") from None
    return out


def read_trial_file(path: str | Path, sets: list[str]) -> TrialConfig:
    """The trial config in ``path`` (a study file: its ``trial:`` block) with the ``--set`` overrides applied.

    Errors name the key as the user wrote it: ``--set optim.lr_g`` for an override, ``trial.optim.lr_g``
    for a study file's own value."""
    raw = read_yaml(path)
    prefix = ""
    if "trial" in raw:  # a whole study file: train its trial block
        if not isinstance(raw["trial"], dict):
            raise ConfigError(path, "trial", "a study file's trial block must be a mapping of keys.")
        raw, prefix = raw["trial"], "trial."
    try:
        overrides = parse_sets(sets)
    except ConfigError as e:
        raise ConfigError(path, e.key, e.message) from None
    try:
        return apply_overrides(raw, overrides)
    except ConfigError as e:
        key = e.key or ""
        by_set = next((k for k in overrides if key == k or key.startswith(k + ".") or k.startswith(key + ".")), None)
        raise ConfigError(path, f"--set {by_set}" if by_set else prefix + key if key else None, e.message) from None
