"""A phase's bookkeeping around Tune: what a Ctrl-C that Tune took after the phase's last trial ended leaves."""

from ganlab.config.loading import load_study
from ganlab.study import tuner
from ganlab.study.runner import EXIT_INTERRUPTED, PhaseState, phase_folder, run_phase

from conftest import STUDIES, seed_store


def test_a_ctrl_c_as_the_last_trial_ends_completes_the_phase_and_stops_the_command(tmp_path, monkeypatch, capsys):
    """Tune stops at once, but every trial had already ended: the search is complete (finished state, its error
    count, a FINISHED parent run), so the next `ganlab run` goes on to the confirmation; this one stops with 130,
    not going on to the confirmation the user just interrupted. Tune is replaced by what it returned then (a
    real Tune cannot be interrupted at that instant on demand)."""
    from mlflow.tracking import MlflowClient

    study_file = tmp_path / "study.yaml"
    study_file.write_text((STUDIES / "quickstart.yaml").read_text() + "search: {metric: eq/acc_gap, mode: min}\n"
                          "confirm: {top: 1, seeds: 2}\n")
    study = load_study(study_file)
    uri = f"sqlite:///{seed_store(tmp_path) / 'mlflow.db'}"
    outcome = tuner.StudyOutcome(n_trials=4, n_errors=0, n_unfinished=0, ray_path=str(tmp_path), interrupted=True)
    monkeypatch.setattr(tuner, "run_study", lambda *args, **kwargs: outcome)
    result = run_phase(study, study_file, uri, tmp_path / "storage")
    assert result.exit_code == EXIT_INTERRUPTED
    state = PhaseState.read(phase_folder(tmp_path / "storage", study, "search"))
    assert state is not None and state.finished and state.errors == 0
    assert MlflowClient(uri).get_run(result.parent_run_id).info.status == "FINISHED"
    assert f"Continue with: ganlab run {study_file}" in capsys.readouterr().err


def test_tune_state_cut_short_anywhere_is_found_and_only_the_newest_of_each_file_counts(tmp_path):
    """Tune restores from the newest experiment state (JSON) and the newest search state (a pickle, whatever its
    suffix), and from tuner.pkl; each cut at any byte is named. An older session's file, cut short, is not what
    Tune reads: it does not count. Files Tune does not restore from (PBT's policy logs) are not read."""
    import json
    import pickle

    from ganlab.study.runner import unreadable_tune_state

    files = {
        "experiment_state-2026-12-01_10-00-00.json": json.dumps({"trial_data": [["{}", "{}"]] * 3}).encode(),
        "basic-variant-state-2026-12-01_10-00-00.json": pickle.dumps({"_counter": 4, "points": [0.5] * 20}),
        "tuner.pkl": pickle.dumps({"param_space": {"a": [1, 2, 3]}}, protocol=5),
        "pbt_policy_abc_00001.txt": b"[1, 2",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert unreadable_tune_state(tmp_path) is None
    assert unreadable_tune_state(tmp_path / "no-experiment-yet") is None
    for name, data in files.items():
        if name.endswith(".txt"):
            continue
        for cut in (0, 1, len(data) // 2, len(data) - 1):
            (tmp_path / name).write_bytes(data[:cut])
            assert unreadable_tune_state(tmp_path) == tmp_path / name, (name, cut)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "basic-variant-state-2026-12-01_09-00-00.json").write_bytes(b"")  # an older session's, cut short
    assert unreadable_tune_state(tmp_path) is None


def test_best_weights_metric_must_be_logged(tmp_path):
    """``artifacts.save_best.metric`` must be a figure the trial logs: a misspelt one is refused before Ray
    starts, naming the key and what the trial does log."""
    import pytest

    from ganlab.config import ConfigError
    from ganlab.study.runner import check_objectives

    path = tmp_path / "study.yaml"
    path.write_text("name: t\ntrial:\n  data: {name: ring8, batch_size: 64}\n  train: {steps: 20, eval_every: 10, "
                    "log_every: 5}\nartifacts: {save_best: {metric: eval/fid, mode: min}}\n")
    with pytest.raises(ConfigError) as info:
        check_objectives(load_study(path), path)
    assert info.value.key == "artifacts.save_best.metric" and "eval/sliced_w" in info.value.message
