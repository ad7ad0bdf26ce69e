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


WINDOW = 0.2  # windowed diagnostics: mean over the last 20% of a trial's logged steps
WINDOWED = ("acc/real", "acc/fake", "acc_sign/real", "acc_sign/fake", "eq/acc_gap", "loss/d", "loss/g")
"""The diagnostics load_study also gives as windowed means (``window/<metric>``): a final value is one log
interval, the windowed mean tells a late excursion from where a trial settled."""


def load_study(
    name: str,
    tracking_uri: str | None = None,
    run: Literal["latest", "all"] | str = "latest",
    params: Literal["swept", "all"] = "swept",
    phase: Literal["search", "confirm"] | None = None,
    window: float | None = WINDOW,
) -> pd.DataFrame:
    """One row per trial: identity, status and why it stopped, swept params (typed, named by their dotted
    key), seed, duration, the final value of every diagnostic (MLflow's value at the largest step) and,
    with ``window``, ``window/<metric>``: the mean over the last ``window`` fraction of its logged steps
    (read from the trial's full-resolution ``diagnostics.parquet``).

    ``run`` picks which invocation of the study: ``"latest"``, ``"all"`` or a parent run id.
    ``params="all"`` adds every trial-config key, not only the swept ones. The swept keys are kept in
    ``df.attrs["swept"]`` (what ``stability_table`` groups by by default).
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
            end = child.info.end_time
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
                "duration_s": (end - child.info.start_time) / 1000 if end and child.info.status != "RUNNING" else None,
            }
            keys = decoded if params == "all" else swept
            row.update({k: decoded.get(k) for k in keys if k != "seed"})
            row.update(child.data.metrics)
            rows.append(row)
    df = pd.DataFrame(rows)
    swept_keys = [k for k in swept_keys if k != "seed"]
    if df.empty:
        df = pd.DataFrame(columns=ID_COLUMNS + swept_keys + ["seed", "duration_s"])
        df.attrs["swept"] = swept_keys
        return df
    first = ID_COLUMNS + swept_keys + ["seed", "duration_s"]
    order = {p.info.run_id: i for i, p in enumerate(parents)}
    df = df.assign(_parent=df["parent_run_id"].map(order)).sort_values(["_parent", "trial_id"], kind="stable")
    if window is not None:
        if not 0 < window <= 1:
            raise ValueError(f"window must be a fraction in (0, 1], got {window}")
        histories = _histories(client, df, WINDOWED)
        df = df.assign(**{f"window/{m}": [_window_mean(h, m, window) for h in histories]
                          for m in WINDOWED if any(m in h.columns for h in histories)})
    metric_cols = sorted(c for c in df.columns if c not in first and c != "_parent")
    out = df[[c for c in first if c in df.columns] + metric_cols].reset_index(drop=True)
    out.attrs["swept"] = swept_keys
    return out


def _window_mean(history: pd.DataFrame, metric: str, window: float) -> float:
    if history.empty or metric not in history.columns:
        return float("nan")
    last = history["step"].max()
    values = history.loc[history["step"] > last * (1 - window), metric].dropna()
    return float(values.mean()) if len(values) else float("nan")


VERDICT_ORDER = ("converged", "oscillating", "mode_collapse", "d_dominates", "g_dominates", "diverged", "failed", "none")
"""Verdict columns in this order; ``failed`` is a trial that ended with an error, ``none`` one that logged no
eval step (a scheduler stopped it before its first)."""
TABLE_METRICS = (
    "acc/real", "acc/fake", "acc_sign/real", "acc_sign/fake", "eq/acc_gap",
    "osc/loss_d_ptp", "osc/loss_d_period", "eval/modes", "eval/fd",
)
"""What ``stability_table`` summarises by default (those the study logged): final D accuracy on real and on
fake (sign accuracy for critics), the equilibrium gap, D-loss oscillation amplitude (peak to peak) and
dominant period over the last ``diagnostics.window`` iterations, modes covered and Frechet distance."""
CONFIDENCE = 0.95


def verdicts_of(df: pd.DataFrame) -> pd.Series:
    """A trial's verdict, with failed trials and trials stopped before any eval named instead of dropped."""
    failed = df.get("trial_status", pd.Series(index=df.index, dtype=object)).eq("failed")
    return df["verdict"].where(df["verdict"].notna() & ~failed, failed.map({True: "failed", False: "none"}))


def wilson_interval(k: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n: stays inside [0, 1] and is not degenerate at 0/n or n/n,
    unlike the normal approximation (3 of 3 seeds converged is not a certainty)."""
    from scipy import stats

    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def default_by(df: pd.DataFrame) -> list[str]:
    """The swept keys of the study (without the seed): one configuration per distinct combination."""
    by = [k for k in df.attrs.get("swept", []) if k in df.columns and k != "seed"]
    if not by:
        raise KeyError("the frame names no swept keys (df.attrs['swept']); pass by=[...] with the columns to group by")
    return by


def stability_table(
    df: pd.DataFrame,
    by: list[str] | None = None,
    metrics: list[str] | None = None,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per configuration (a distinct combination of ``by``, default the swept keys) across its seeds:
    ``seeds``, ``rate <verdict>`` for every verdict that occurs (converged first, with a Wilson interval
    ``converged lo``/``converged hi``), and for each metric its ``mean`` and the half-width ``ci`` of a
    Student-t interval over the seeds (NaN with one seed). Failed trials count as verdict ``failed``:
    nothing is dropped. Rows are sorted by ``by``.
    """
    from scipy import stats

    by = list(by) if by else default_by(df)
    missing = [k for k in by if k not in df.columns]
    if missing:
        plain = [str(c) for c in df.columns if "/" not in str(c)]
        raise KeyError(f"no column {missing[0]!r} to group by; columns: {', '.join(plain)} or a diagnostic")
    if metrics is None:
        metrics = [m for m in TABLE_METRICS if m in df.columns and df[m].notna().any()]
    else:
        unknown = [m for m in metrics if m not in df.columns]
        if unknown:
            raise KeyError(f"no metric {unknown[0]!r} in the frame")
    frame = df.assign(_verdict=verdicts_of(df))
    groups = frame.groupby(by, dropna=False, sort=True)
    out = groups.size().rename("seeds").to_frame()
    counts = groups["_verdict"].value_counts().unstack(fill_value=0)
    present = [v for v in VERDICT_ORDER if v in counts.columns or v == "converged"]
    counts = counts.reindex(columns=present, fill_value=0)
    for verdict in present:
        out[f"rate {verdict}"] = counts[verdict] / out["seeds"]
        if verdict == "converged":
            bounds = [wilson_interval(k, n, confidence) for k, n in zip(counts[verdict], out["seeds"])]
            out["converged lo"] = [b[0] for b in bounds]
            out["converged hi"] = [b[1] for b in bounds]
    for metric in metrics:
        agg = groups[metric].agg(["mean", "std", "count"])
        t = agg["count"].map(lambda n: stats.t.ppf(0.5 + confidence / 2, n - 1) if n > 1 else float("nan"))
        out[f"{metric} mean"] = agg["mean"]
        out[f"{metric} ci"] = t * agg["std"] / agg["count"].pow(0.5)
    return out.reset_index()


def compare(
    study_a: str | pd.DataFrame,
    study_b: str | pd.DataFrame,
    by: list[str] | None = None,
    metrics: list[str] | None = None,
    tracking_uri: str | None = None,
    labels: tuple[str, str] | None = None,
    **load: Any,
) -> pd.DataFrame:
    """The stability tables of two studies side by side: columns ``(label, column)``, one row per
    configuration of either study (outer join on ``by``; NaN where a study lacks it). Studies are names
    (loaded with ``load_study(name, tracking_uri, **load)``) or frames from ``load_study``, e.g. a search
    and its confirmation phase. ``by`` defaults to the swept keys the two share.
    """
    frames, names = [], []
    for study in (study_a, study_b):
        if isinstance(study, pd.DataFrame):
            frames.append(study)
            names.append(str(study.attrs.get("study", f"study {len(names) + 1}")))
        else:
            frame = load_study(study, tracking_uri, **load)
            frame.attrs["study"] = study
            frames.append(frame)
            names.append(study)
    if labels is None:
        labels = (names[0], names[1]) if names[0] != names[1] else (f"{names[0]} (a)", f"{names[1]} (b)")
    if by is None:
        shared = [k for k in frames[0].attrs.get("swept", []) if k in frames[1].attrs.get("swept", [])]
        if not shared:
            raise KeyError("the two studies share no swept key; pass by=[...] with columns both have")
        by = shared
    tables = [stability_table(f, by, metrics).set_index(by) for f in frames]
    return pd.concat(dict(zip(labels, tables)), axis=1).sort_index()


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
    uri = resolve_tracking_uri(tracking_uri)
    return history_of(load_study(name, uri, run=run, phase=phase, window=None), uri, metrics, threads)


def history_of(trials: pd.DataFrame, tracking_uri: str | None = None, metrics: list[str] | None = None,
               threads: int = 8) -> pd.DataFrame:
    """``load_history`` for the trials of a frame from ``load_study`` (e.g. a filtered one)."""
    histories = _histories(MlflowClient(resolve_tracking_uri(tracking_uri)), trials, metrics, threads)
    columns = ["run_id", "trial", "step", "metric", "value"]
    frames = [
        wide.melt(id_vars="step", var_name="metric", value_name="value").dropna(subset=["value"])
        .assign(run_id=row.run_id, trial=row.trial)
        for row, wide in zip(trials.itertuples(), histories)
    ]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    out["step"] = out["step"].astype(int)
    return out.sort_values(["trial", "metric", "step"], kind="stable").reset_index(drop=True)


def _histories(client: MlflowClient, trials: pd.DataFrame, metrics=None, threads: int = 8) -> list[pd.DataFrame]:
    """Each trial's history, wide (step + one column per metric): one Parquet read per trial (in place for a
    local store), concurrently, instead of one MLflow request per run per metric."""
    from concurrent.futures import ThreadPoolExecutor

    from ganlab.tracking import HISTORY_FILE, read_history

    def one(run_id: str) -> pd.DataFrame:
        local = _local_artifact(client, run_id, HISTORY_FILE)
        wide = pd.read_parquet(local) if local else _download_history(client, run_id)
        if wide is None or wide.empty:
            wide = read_history(client, run_id)  # a trial still running: its parts so far
        if wide is None or wide.empty:
            return pd.DataFrame(columns=["step"])
        return wide[["step"] + [c for c in wide.columns if c != "step" and (metrics is None or c in metrics)]]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, trials["run_id"]))


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
