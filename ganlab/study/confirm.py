"""The confirmation phase ("Are GANs created equal?", Lucic et al. 2018): a search's best configurations,
re-run with new seeds so stability is a rate across seeds, not the lucky seed that won the search."""

from __future__ import annotations

from typing import Any

from ganlab.config import ConfigError, PbtSchedulerConfig, StudyConfig


def confirmation_points(
    study: StudyConfig, frame, top: int, seeds: int, metric: str, mode: str
) -> tuple[list[dict[str, Any]], Any]:
    """The ``top`` configurations of a search by ``metric`` (mean over their seeds), each with ``seeds``
    seeds none of which the search used. Returns the points and the ranking table."""
    import pandas as pd

    if metric not in frame.columns:
        raise ConfigError(None, "confirm.metric", f"the search's trials have no metric '{metric}'.")
    keys = [k for k in study.swept_keys if k != "seed" and k not in study.derived and k in frame.columns]
    if isinstance(study.scheduler, PbtSchedulerConfig):
        raise ConfigError(None, "scheduler", "a PBT trial changes its configuration while it runs; there is no "
                                             "fixed configuration to confirm.")
    if not keys:
        raise ConfigError(None, "sweep", "the study sweeps nothing but seeds: there is nothing to rank.")
    values = frame[metric].where(frame["status"] != "FAILED")
    ranking = (frame.assign(_objective=values).groupby(keys, dropna=False, sort=False)
               .agg(objective=("_objective", "mean"), seeds=("seed", "nunique")).reset_index())
    ranking = ranking.sort_values("objective", ascending=mode == "min", na_position="last").head(top)
    first_new = int(frame["seed"].max()) + 1
    new_seeds = list(range(first_new, first_new + seeds))
    points = []
    for _, row in ranking.iterrows():
        config = {k: _plain(row[k]) for k in keys if not (isinstance(row[k], float) and pd.isna(row[k]))}
        points += [{**study.resolve(config), "seed": s} for s in new_seeds]
    return points, ranking.rename(columns={"objective": f"mean {metric}"})


def _plain(value: Any) -> Any:
    """numpy scalars from pandas back to the JSON types the config accepts."""
    return value.item() if hasattr(value, "item") else value
