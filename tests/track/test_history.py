"""ganlab.track.history: a pack's Parquet parts back as each trial's own history."""

import numpy as np
import pandas as pd

from ganlab.track.history import split_by_run, write_parquet


def _part(rows):
    return pd.DataFrame(rows)


def test_each_run_gets_its_rows_with_the_latest_copy_of_a_step_and_its_own_columns():
    first = _part([{"run_id": "a", "step": 10, "x": 1.0, "y": 2.0}, {"run_id": "b", "step": 10, "x": 5.0, "y": 6.0},
                   {"run_id": "a", "step": 20, "x": 1.5, "y": 2.5}])
    # a restart stores step 20 again (later part: it wins); a lane's cost row merges into its step's row;
    # lane b recorded a column that is NaN throughout (it diverged at once), lane a never recorded z
    second = _part([{"run_id": "a", "step": 20, "x": 9.0, "y": 9.5}, {"run_id": "a", "step": 20, "cost": 0.1},
                    {"run_id": "b", "step": 20, "x": 7.0, "y": 8.0, "z": np.nan}])
    out = split_by_run([first, None, second], ["a", "b", "c"], {"a": {"x", "y", "cost"}, "b": {"x", "y", "z"}})
    a, b, c = out["a"], out["b"], out["c"]
    assert list(a.columns) == ["step", "x", "y", "cost"]
    assert a["step"].tolist() == [10, 20] and a["x"].tolist() == [1.0, 9.0] and a["cost"].iloc[1] == 0.1
    assert list(b.columns) == ["step", "x", "y", "z"] and b["z"].isna().all() and b["x"].tolist() == [5.0, 7.0]
    assert c.empty and list(c.columns) == ["step"]  # a lane with no row yet: an empty history, not a KeyError


def test_a_part_round_trips_through_parquet(tmp_path):
    frame = _part([{"run_id": "a", "step": 10, "x": 1.0}, {"run_id": "b", "step": 10, "x": np.nan}])
    write_parquet(frame, tmp_path / "p.parquet")
    back = pd.read_parquet(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(back, frame)
