"""ganlab.analysis: the stability table against closed forms on hand-made frames, then load_study,
compare and `ganlab analyze` on a real finished study (real Ray, MLflow SQLite, torch; see conftest)."""


import numpy as np
import pandas as pd
import pytest
from scipy import stats

from forkserver import run_ganlab
from ganlab.analysis import compare, load_history, load_study, stability_table, wilson_interval


def frame(rows, swept=("x",)):
    df = pd.DataFrame(rows, columns=["x", "seed", "verdict", "trial_status", "acc/real"])
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    df.attrs["swept"] = list(swept)
    return df


TRIALS = frame([
    (2, 0, "converged", "finished", 0.5), (2, 1, "converged", "finished", 0.5), (2, 2, None, "failed", np.nan),
    (1, 0, "converged", "finished", 1.0), (1, 1, "converged", "finished", 2.0), (1, 2, "oscillating", "finished", 3.0),
    (3, 0, "d_dominates", "finished", 0.9),
])


def test_table_counts_seeds_and_verdict_rates_per_configuration():
    t = stability_table(TRIALS).set_index("x")
    assert list(t.index) == [1, 2, 3]  # sorted by the swept key
    assert t["seeds"].tolist() == [3, 3, 1]
    assert t["rate converged"].tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert t["rate oscillating"].tolist() == pytest.approx([1 / 3, 0, 0])
    # the failed trial is a verdict of its own, not dropped: rates sum to one
    assert t.loc[2, "rate failed"] == pytest.approx(1 / 3)
    assert t.filter(like="rate ").sum(axis=1).tolist() == pytest.approx([1, 1, 1])


def test_metric_interval_is_student_t_over_seeds():
    t = stability_table(TRIALS, metrics=["acc/real"]).set_index("x")
    # seeds 1, 2, 3: mean 2, sd 1, half-width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321
    assert t.loc[1, "acc/real mean"] == pytest.approx(2.0)
    assert t.loc[1, "acc/real ci"] == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    assert t.loc[2, "acc/real ci"] == 0  # two equal values; the failed seed has no value
    assert np.isnan(t.loc[3, "acc/real ci"])  # one seed: no interval


def test_converged_rate_has_a_wilson_interval():
    t = stability_table(TRIALS).set_index("x")
    for k, n, x in ((2, 3, 1), (0, 1, 3)):
        ref = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert (t.loc[x, "converged lo"], t.loc[x, "converged hi"]) == pytest.approx((ref.low, ref.high), abs=1e-12)
    # closed form at 0 of 3 and 3 of 3: z^2 / (n + z^2) = 0.5615 (not a certainty, unlike p +- z sqrt(p(1-p)/n))
    assert wilson_interval(0, 3)[1] == pytest.approx(0.5615, abs=1e-4)
    assert wilson_interval(3, 3)[0] == pytest.approx(1 - 0.5615, abs=1e-4)


def test_grouping_errors_name_the_key():
    with pytest.raises(KeyError, match="'lr'"):
        stability_table(TRIALS, by=["lr"])
    with pytest.raises(KeyError, match="'eval/fd'"):
        stability_table(TRIALS, metrics=["eval/fd"])
    unnamed = TRIALS.copy()
    unnamed.attrs = {}
    with pytest.raises(KeyError, match="swept"):  # a frame that does not say what was swept
        stability_table(unnamed)


def test_compare_puts_two_tables_side_by_side():
    other = frame([(1, 0, "oscillating", "finished", 0.1), (4, 0, "converged", "finished", 0.2)])
    both = compare(TRIALS, other, labels=("before", "after"), metrics=["acc/real"])
    assert list(dict.fromkeys(both.columns.get_level_values(0))) == ["before", "after"]
    assert list(both.index) == [1, 2, 3, 4]  # every configuration of either study
    assert both.loc[1, ("before", "rate converged")] == pytest.approx(2 / 3)
    assert both.loc[1, ("after", "rate converged")] == 0
    assert np.isnan(both.loc[4, ("before", "seeds")]) and both.loc[4, ("after", "seeds")] == 1


# --- a real study -------------------------------------------------------------------------------------

@pytest.mark.integration
def test_load_study_has_durations_and_windowed_means(grid_study):
    _, _, uri = grid_study
    df = load_study("grid", uri)
    assert len(df) == 8 and df.attrs["swept"] == ["optim.lr_ratio", "schedule.d_steps"]
    assert (df["duration_s"] > 0).all() and (df["trial_status"] == "finished").all()
    history = load_history("grid", uri, metrics=["acc/real", "eq/acc_gap"])
    for metric in ("acc/real", "eq/acc_gap"):
        # the last 20% of 60 iterations logged every 10: steps 50 and 60, from the full-resolution history
        last = history[(history["metric"] == metric) & (history["step"] > 48)]
        expected = last.groupby("run_id")["value"].mean()
        assert sorted(last["step"].unique()) == [50, 60]
        assert df.set_index("run_id")[f"window/{metric}"].to_dict() == pytest.approx(expected.to_dict())


@pytest.mark.integration
def test_analyze_prints_and_writes_the_table(grid_study, tmp_path):
    workdir, study, uri = grid_study
    out = tmp_path / "table.parquet"
    proc = run_ganlab(["analyze", str(study), "--by", "optim.lr_ratio", "--out", str(out)], cwd=workdir, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "converged [95% CI]" in proc.stdout and "8 trials" in proc.stdout
    table = proc.stdout.split("\n\n")[1].splitlines()  # the header paragraph, then the table
    assert max(len(line) for line in table) <= 80  # fits an 80-column terminal (the default off a terminal)
    assert "more column" in proc.stdout and "--wide" in proc.stdout
    wide = run_ganlab(["analyze", str(study), "--by", "optim.lr_ratio", "--wide"], cwd=workdir, timeout=120)
    assert "rate converged" in wide.stdout and "converged lo" in wide.stdout
    written = pd.read_parquet(out)
    expected = stability_table(load_study("grid", uri), by=["optim.lr_ratio"])
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    assert written["seeds"].tolist() == [4, 4]  # two D-step settings x two seeds pooled per ratio


@pytest.mark.integration
@pytest.mark.parametrize("args, says", [
    (["nope"], "no study named 'nope'"),
    (["grid", "--by", "optim.lr"], "'optim.lr'"),
    (["grid", "--out", "table.txt"], ".csv or .parquet"),
    (["grid", "--run", "0123"], "no run with id '0123'"),
])
def test_analyze_input_errors_exit_2_with_one_paragraph(grid_study, args, says):
    workdir, _, _ = grid_study
    proc = run_ganlab(["analyze", *args], cwd=workdir, timeout=120)
    assert proc.returncode == 2 and says in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (workdir / "table.txt").exists()


def test_analyze_never_creates_a_store(tmp_path, clean_env):
    proc = run_ganlab(["analyze", "lr_ratio"], cwd=tmp_path, env=clean_env, timeout=60)
    assert proc.returncode == 2 and "No MLflow store at" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_reading_from_python_never_creates_a_store(tmp_path, monkeypatch, clean_env):
    """`load_study("quickstart")` in a folder without a store used to create an empty mlflow.db there and
    raise a bare LookupError: now a catchable StoreNotFound that says where it looked, and nothing written."""
    import ganlab
    from ganlab.analysis import StoreNotFound
    from ganlab.analysis.trials import best_trial

    monkeypatch.chdir(tmp_path)
    calls = [lambda: load_study("quickstart"), lambda: load_history("quickstart"),
             lambda: ganlab.load_trial("quickstart/00000"), lambda: best_trial("quickstart", "eval/modes")]
    for call in calls:
        with pytest.raises(StoreNotFound, match=str(tmp_path / "mlflow.db")) as info:
            call()
        assert isinstance(info.value, LookupError) and "tracking_uri=" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_study_not_in_the_store_is_a_lookup_error_with_a_suggestion(grid_study):
    from ganlab.analysis import StudyNotFound

    _, _, uri = grid_study
    with pytest.raises(StudyNotFound, match="no study named 'gird'.*Did you mean 'grid'"):
        load_study("gird", uri)
