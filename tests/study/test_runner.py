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
