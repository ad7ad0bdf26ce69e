"""A trial's full-resolution history: every logged step, in Parquet.

While a pack runs, each flush stores one part holding every lane's rows (a ``run_id`` column) as an artifact
of the study's parent run, under ``history/<pack>``; each trial's run names that folder (``TAG_HISTORY``), so a
running trial's history is read from its pack's parts. At its end a trial's ``diagnostics.parquet`` is written
once, from the pack's memory, as an artifact of its own run (``load_history`` reads that file).
"""

from __future__ import annotations

import tempfile

from mlflow.tracking import MlflowClient

HISTORY_FILE = "diagnostics.parquet"
PACK_PARTS = "history"  # under the parent run: one folder per pack, one Parquet part per flush
OLD_PARTS = "diagnostics/parts"  # stores written before packs were booked as one: parts in the trial's own run


def write_parquet(frame, path) -> None:
    """A history frame as Parquet, column by column through pyarrow (pandas' own writer spends ~10 ms a
    small frame reconciling its index and metadata: a second for a pack of a hundred trials)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import numpy as np

    numeric = [c for c in frame.columns if c not in ("step", "run_id")]
    values = frame[numeric].to_numpy(dtype=np.float64).T if numeric else []  # one block, not a column at a time
    arrays = [pa.array(frame[c].to_numpy()) for c in frame.columns if c in ("run_id", "step")]
    arrays += [pa.array(np.ascontiguousarray(v)) for v in values]
    names = [str(c) for c in frame.columns if c in ("run_id", "step")] + [str(c) for c in numeric]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path)


def split_by_run(parts: list, run_ids: list[str], recorded: dict[str, set[str]]) -> dict:
    """Each run's full history (one row per step) from a pack's parts (frames of run_id, step, metrics...):
    run id -> DataFrame. Per (run, step) each column's last value: a step stored again after a restart or a
    clone comes later, and a lane's cost row merges into its metrics row of the same step. A run keeps the
    columns it ``recorded`` (NaN throughout: a trial that diverged at once) and those with a value (restored
    from the parts); other lanes' columns are dropped, as alone it would have none."""
    import numpy as np
    import pandas as pd

    out = {r: pd.DataFrame({"step": pd.Series([], dtype=np.int64)}) for r in run_ids}
    frames = [f for f in parts if f is not None and len(f)]
    if not frames:
        return out
    frame = pd.concat(frames, ignore_index=True)
    merged = frame[frame["run_id"].isin(out.keys())].groupby(["run_id", "step"], sort=True).last()
    runs = merged.index.get_level_values(0).to_numpy()
    steps = merged.index.get_level_values(1).to_numpy()
    names = np.array(merged.columns, dtype=object)
    values = merged.to_numpy(dtype=np.float64)
    bounds = np.flatnonzero(runs[1:] != runs[:-1]) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(runs)]):
        block = values[start:stop]
        keep = ~np.isnan(block).all(axis=0) | np.isin(names, list(recorded.get(runs[start], ())))
        history = pd.DataFrame(block[:, keep], columns=names[keep])
        history.insert(0, "step", steps[start:stop])
        out[runs[start]] = history
    return out


def history_location(parent_run_id: str, folder: str) -> str:
    """The value of a trial run's ``TAG_HISTORY``: where its pack's parts are."""
    return f"{parent_run_id}/{folder}"


def read_parts(client: MlflowClient, run_id: str, folder: str):
    """Every part under ``folder`` of run ``run_id``, in the order they were written (a step stored again
    after a restart or a PBT clone comes later); None when there is none."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        parts = sorted(a.path for a in client.list_artifacts(run_id, folder) if a.path.endswith(".parquet"))
        frames = [pd.read_parquet(client.download_artifacts(run_id, p, tmp)) for p in parts]
    return pd.concat(frames, ignore_index=True) if frames else None


def read_history(client: MlflowClient, run_id: str):
    """Every logged point of a running (or interrupted) trial, one row per step, from its pack's parts (the
    latest copy of a step stored twice)."""
    import pandas as pd

    from ganlab.track.store import TAG_HISTORY

    location = client.get_run(run_id).data.tags.get(TAG_HISTORY)
    if location:
        owner, folder = location.split("/", 1)
        frame = read_parts(client, owner, folder)
        if frame is not None:
            frame = frame[frame["run_id"] == run_id].drop(columns="run_id")
    else:
        frame = read_parts(client, run_id, OLD_PARTS)
    if frame is None or frame.empty:
        return pd.DataFrame({"step": []})
    return frame.groupby("step", sort=True).last().reset_index().dropna(axis=1, how="all")
