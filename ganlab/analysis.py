"""Studies as pandas DataFrames, read back from MLflow: the end of the one-way data flow."""

from __future__ import annotations

import json
from typing import Any, Literal

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from ganlab.tracking import (
    TAG_KIND,
    TAG_PARENT,
    TAG_SEED,
    TAG_STATUS,
    TAG_STOP_REASON,
    TAG_SWEPT,
    TAG_TRIAL_ID,
    TAG_VERDICT,
    resolve_tracking_uri,
)

ID_COLUMNS = ["run_id", "parent_run_id", "phase", "trial", "trial_id", "status", "trial_status", "verdict", "stop_reason"]


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str] | None = None) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _decode(text: str) -> Any:
    """Params are stored as JSON for non-strings (see tracking._param_text); strings stay as written."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def study_runs(name: str, tracking_uri: str | None = None) -> list[Run]:
    """The parent runs of a study, newest first (one per ``ganlab run`` invocation)."""
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise LookupError(f"no study named {name!r} in {client.tracking_uri}; studies there: {known or 'none'}")
    return _search_all(client, experiment.experiment_id, f"tags.`{TAG_KIND}` = 'study'", ["attributes.start_time DESC"])


def load_study(
    name: str,
    tracking_uri: str | None = None,
    run: Literal["latest", "all"] | str = "latest",
    params: Literal["swept", "all"] = "swept",
    phase: Literal["search", "confirm"] | None = None,
) -> pd.DataFrame:
    """One row per trial: identity, swept params (typed, named by their dotted key), seed, and the
    final value of every diagnostic (MLflow's value at the largest step).

    ``run`` picks which invocation of the study: ``"latest"``, ``"all"`` or a parent run id.
    ``params="all"`` adds every trial-config key, not only the swept ones.
    """
    uri = resolve_tracking_uri(tracking_uri)
    parents = study_runs(name, uri)
    if phase is not None:
        parents = [p for p in parents if p.data.tags.get("ganlab.phase", "search") == phase]
        if not parents:
            raise LookupError(f"study {name!r} has no {phase} run yet")
    if run == "latest":
        parents = parents[:1]
    elif run != "all":
        parents = [p for p in parents if p.info.run_id == run]
        if not parents:
            raise LookupError(f"study {name!r} has no run with id {run!r}")
    client = MlflowClient(uri)
    rows: list[dict[str, Any]] = []
    swept_keys: list[str] = []
    for parent in parents:
        swept = json.loads(parent.data.tags.get(TAG_SWEPT, "[]"))
        swept_keys += [k for k in swept if k not in swept_keys]
        children = _search_all(
            client, parent.info.experiment_id,
            f"tags.`{TAG_KIND}` = 'trial' and tags.`{TAG_PARENT}` = '{parent.info.run_id}'",
        )
        for child in children:
            decoded = {k: _decode(v) for k, v in child.data.params.items()}
            row: dict[str, Any] = {
                "run_id": child.info.run_id,
                "parent_run_id": parent.info.run_id,
                "trial": child.info.run_name,
                "trial_id": child.data.tags.get(TAG_TRIAL_ID),
                "status": child.info.status,
                "verdict": child.data.tags.get(TAG_VERDICT),
                "trial_status": child.data.tags.get(TAG_STATUS),
                "stop_reason": child.data.tags.get(TAG_STOP_REASON),
                "phase": parent.data.tags.get("ganlab.phase", "search"),
                "seed": int(child.data.tags.get(TAG_SEED, decoded.get("seed", -1))),
            }
            keys = decoded if params == "all" else swept
            row.update({k: decoded.get(k) for k in keys if k != "seed"})
            row.update(child.data.metrics)
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=ID_COLUMNS + ["seed"] + [k for k in swept_keys if k != "seed"])
    first = ID_COLUMNS + [k for k in swept_keys if k != "seed"] + ["seed"]
    metric_cols = sorted(c for c in df.columns if c not in first)
    order = {p.info.run_id: i for i, p in enumerate(parents)}
    df = df.assign(_parent=df["parent_run_id"].map(order)).sort_values(["_parent", "trial_id"], kind="stable")
    return df[[c for c in first if c in df.columns] + metric_cols].reset_index(drop=True)


def stability_rates(df: pd.DataFrame, by: list[str], metric: str | None = None) -> pd.DataFrame:
    """Per configuration across seeds: number of seeds, the fraction of each verdict (converged first) and,
    with ``metric``, its mean and a 95% confidence half-width (Student t) over the seeds."""
    from scipy import stats

    groups = df.groupby(by, dropna=False, sort=False)
    out = groups.size().rename("seeds").to_frame()
    verdicts = groups["verdict"].value_counts(normalize=True).unstack(fill_value=0.0)
    order = ["converged"] + sorted(c for c in verdicts.columns if c != "converged")
    out = out.join(verdicts.reindex(columns=order, fill_value=0.0).add_prefix("rate "))
    if metric is not None:
        agg = groups[metric].agg(["mean", "std", "count"])
        t = agg["count"].map(lambda n: stats.t.ppf(0.975, n - 1) if n > 1 else float("nan"))
        out[f"mean {metric}"] = agg["mean"]
        out[f"ci95 {metric}"] = t * agg["std"] / agg["count"].pow(0.5)
    return out.reset_index().sort_values("rate converged", ascending=False, kind="stable").reset_index(drop=True)


def load_history(
    name: str,
    tracking_uri: str | None = None,
    metrics: list[str] | None = None,
    run: Literal["latest", "all"] | str = "latest",
    phase: Literal["search", "confirm"] | None = None,
    threads: int = 8,
) -> pd.DataFrame:
    """Every trial's per-step diagnostics in long format: (run_id, trial, step, metric, value).

    Read in bulk: one Parquet file per trial (its ``diagnostics.parquet``, every logged step at full
    resolution), fetched concurrently, instead of one MLflow request per run per metric. ``metrics``
    keeps only those columns.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ganlab.tracking import HISTORY_FILE, read_history

    uri = resolve_tracking_uri(tracking_uri)
    trials = load_study(name, uri, run=run, phase=phase)
    client = MlflowClient(uri)

    def one(row) -> pd.DataFrame:
        local = _local_artifact(client, row.run_id, HISTORY_FILE)
        wide = pd.read_parquet(local) if local else _download_history(client, row.run_id)
        if wide is None or wide.empty:
            wide = read_history(client, row.run_id)  # a trial still running: its parts so far
        keep = ["step"] + [c for c in wide.columns if c != "step" and (metrics is None or c in metrics)]
        long = wide[keep].melt(id_vars="step", var_name="metric", value_name="value").dropna(subset=["value"])
        return long.assign(run_id=row.run_id, trial=row.trial)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        frames = list(pool.map(one, trials.itertuples()))
    columns = ["run_id", "trial", "step", "metric", "value"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    out["step"] = out["step"].astype(int)
    return out.sort_values(["trial", "metric", "step"], kind="stable").reset_index(drop=True)


def _local_artifact(client: MlflowClient, run_id: str, path: str) -> str | None:
    """A local store's artifact is a file: read it in place rather than copying it."""
    from pathlib import Path
    from urllib.parse import urlparse

    uri = client.get_run(run_id).info.artifact_uri
    if uri.startswith("file:"):
        local = Path(urlparse(uri).path) / path
        return str(local) if local.is_file() else None
    return None


def _download_history(client: MlflowClient, run_id: str) -> pd.DataFrame | None:
    import tempfile

    from ganlab.tracking import HISTORY_FILE

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return pd.read_parquet(client.download_artifacts(run_id, HISTORY_FILE, tmp))
        except Exception:  # noqa: BLE001 - not merged yet
            return None
