"""Using what a study trained: a real digits trial (DCGAN, EMA generator, D-feature probe, best weights by
FD) run by `ganlab run` on local Ray with a real MLflow store, then load_trial, `ganlab sample` and the probe."""

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import ganlab
from conftest import seed_store
from forkserver import run_ganlab
from ganlab.analysis import load_history, load_study
from ganlab.diagnose.probe import d_feature_probe
from ganlab.analysis.trials import _verify
from ganlab.track.store import TAG_BEST

pytestmark = pytest.mark.integration

STUDY = textwrap.dedent(
    """
    name: digits_tiny
    trial:
      data: {name: digits, batch_size: 32}
      model: {name: dcgan, latent_dim: 8, channels: 8}
      optim: {lr_g: 1.0e-3, g_ema: 0.9}
      train: {steps: 40, eval_every: 20, log_every: 10, eval_samples: 100}
      diagnostics: {d_probe: true}
    artifacts: {sample_plots: 0, save_best: {metric: eval/fd, mode: min}}
    resources: {cpu: 1}
    """
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("digits")
    (workdir / "digits.yaml").write_text(STUDY)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    proc = run_ganlab(["run", "digits.yaml", "--num-cpus", "1"], cwd=seed_store(workdir), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    (run_id,) = load_study("digits_tiny", uri)["run_id"]
    return workdir, uri, run_id


def sample(workdir, *args):
    return run_ganlab(["sample", *args], cwd=workdir, timeout=300)


def test_loaded_models_reproduce_the_outputs_saved_at_the_end_of_training(digits, tmp_path):
    _, uri, run_id = digits
    trial = ganlab.load_trial(run_id, uri, verify=False)
    saved = torch.load(MlflowClient(uri).download_artifacts(run_id, "model/final.pt", str(tmp_path)), weights_only=True)
    check = saved["check"]
    with torch.no_grad():
        assert torch.equal(trial.G(check["z"]), check["outputs"]["G"])  # bit for bit
        assert torch.equal(trial.G_ema(check["z"]), check["outputs"]["G_ema"])
        assert torch.equal(trial.D(check["x"]), check["outputs"]["D"])
    assert trial.iteration == 40 and trial.config.model.name == "dcgan" and not trial.G.training
    assert ganlab.load_trial("digits_tiny/00000", uri).run_id == run_id  # the same trial by study and number
    # verification can fail: one changed weight no longer reproduces D's recorded outputs
    with torch.no_grad():
        trial.D.net[0].weight[0, 0, 0, 0] += 1e-3
    with pytest.raises(RuntimeError, match="does not reproduce"):
        _verify({"D": trial.D}, saved, torch.device("cpu"))


def test_best_weights_are_those_of_the_best_eval_step(digits):
    _, uri, run_id = digits
    best = ganlab.load_trial(run_id, uri, weights="best")
    fd = load_history("digits_tiny", uri, metrics=["eval/fd"])
    lowest = fd.loc[fd["value"].idxmin()]
    assert best.best["metric"] == "eval/fd" and best.best["value"] == pytest.approx(lowest["value"])
    assert best.iteration == best.best["iteration"] == lowest["step"]
    assert "eval/fd" in MlflowClient(uri).get_run(run_id).data.tags[TAG_BEST]


def test_sample_writes_n_samples_reproducibly(digits, tmp_path):
    workdir, uri, run_id = digits
    paths = [tmp_path / name for name in ("a.npz", "b.npz", "c.npz")]
    for path, seed in zip(paths, (3, 3, 4)):
        proc = sample(workdir, "digits_tiny", "-n", "300", "-o", str(path), "--seed", str(seed))
        assert proc.returncode == 0, proc.stderr
    a, b, c = (np.load(p) for p in paths)
    assert a["samples"].shape == (300, 1, 8, 8) and a["samples"].dtype == np.float32
    assert np.array_equal(a["samples"], b["samples"]) and not np.array_equal(a["samples"], c["samples"])
    assert str(a["run_id"]) == run_id and str(a["generator"]) == "G_ema"  # the EMA generator by default
    assert np.abs(a["samples"]).max() <= 1  # DCGAN's tanh: images in [-1, 1]
    # the command and the API give the same numbers
    expected = ganlab.load_trial(run_id, uri).sample(300, seed=3)
    assert np.array_equal(a["samples"], expected.numpy())
    png = tmp_path / "grid.png"
    assert sample(workdir, run_id, "-n", "64", "-o", str(png), "--no-ema").returncode == 0
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args, says", [
    (["digits_tiny", "-o", "out.txt"], ".npz (arrays) or .png"),
    (["digits_tiny", "--trial", "00007"], "no trial '00007'"),
    (["digits_tiny", "--best", "eval/nope"], "no metric 'eval/nope'"),
    (["nope"], "no study named 'nope'"),
    pytest.param(["digits_tiny", "--device", "cuda"], "no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_sample_input_errors_exit_2(digits, args, says):
    workdir, _, _ = digits
    proc = sample(workdir, *args)
    assert proc.returncode == 2 and says in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (workdir / "out.txt").exists() and not (workdir / "samples.npz").exists()


def test_d_probe_is_logged_with_its_random_d_baseline_and_is_deterministic(digits):
    _, uri, run_id = digits
    history = load_history("digits_tiny", uri, metrics=["eval/d_probe_acc", "eval/d_probe_acc_random"])
    trained = history[history["metric"] == "eval/d_probe_acc"]
    baseline = history[history["metric"] == "eval/d_probe_acc_random"]
    assert trained["step"].tolist() == baseline["step"].tolist() == [20, 40]
    assert history["value"].between(0, 1).all()
    assert baseline["value"].nunique() == 1  # D as initialised does not change
    D = ganlab.load_trial(run_id, uri).D
    again = d_feature_probe(D)
    assert again == d_feature_probe(D)  # deterministic
    assert again == pytest.approx(trained["value"].iloc[-1], abs=1e-12)  # and the value the trial logged


def test_a_tampered_weights_artifact_is_refused_by_load_trial_and_sample(digits, tmp_path):
    """One weight changed in the stored model/final.pt (its recorded outputs left as they were): load_trial raises
    with the reason, `ganlab sample` exits 1 and writes nothing. The original is restored afterwards."""
    from urllib.parse import urlparse

    workdir, uri, run_id = digits
    path = Path(urlparse(MlflowClient(uri).get_run(run_id).info.artifact_uri).path) / "model" / "final.pt"
    original = path.read_bytes()
    state = torch.load(path, weights_only=True)
    first = next(iter(state["D"]))
    state["D"][first] = state["D"][first].clone()
    state["D"][first].view(-1)[0] += 1e-3
    torch.save(state, path)
    try:
        with pytest.raises(RuntimeError, match="the loaded D does not reproduce the outputs recorded"):
            ganlab.load_trial(run_id, uri)
        assert ganlab.load_trial(run_id, uri, verify=False).run_id == run_id  # the explicit way past it
        proc = sample(workdir, run_id, "-o", str(tmp_path / "s.npz"))
        assert proc.returncode == 1 and "does not reproduce" in proc.stderr, proc.stderr
        assert not (tmp_path / "s.npz").exists()
    finally:
        path.write_bytes(original)
    assert ganlab.load_trial(run_id, uri).run_id == run_id
