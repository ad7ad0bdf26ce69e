"""A trial's full-resolution history: every logged step as Parquet parts while it runs (restart-safe),
merged into one ``diagnostics.parquet`` artifact at its end."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

HISTORY_FILE = "diagnostics.parquet"
HISTORY_PARTS = "diagnostics/parts"  # Parquet parts of a running trial's history, merged at its end


def read_history(client: MlflowClient, run_id: str):
    """Every logged point of a run from its Parquet parts, one row per step (a step stored twice after a
    crash mid-flush keeps its latest copy)."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        parts = [a.path for a in client.list_artifacts(run_id, HISTORY_PARTS)]
        frames = [pd.read_parquet(client.download_artifacts(run_id, p, tmp)) for p in parts]
    if not frames:
        return pd.DataFrame({"step": []})
    return pd.concat(frames, ignore_index=True).groupby("step", sort=True).last().reset_index()


def merge_history(client: MlflowClient, run_id: str):
    """The run's parts merged into one ``diagnostics.parquet`` artifact; returns the history."""
    history = read_history(client, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / HISTORY_FILE
        history.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path))
    return history
