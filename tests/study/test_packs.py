"""Packs in a study: which trials share a pack, and a packed study that gives every trial the numbers, tags,
artifacts and ending it gets when each trial trains alone (`pack: 1`), through the real `ganlab run`."""

import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ganlab.analysis import load_study as load_frame
from ganlab.analysis.trials import load_trial
from ganlab.config import ConfigError, load_study
from ganlab.study.packs import plan_packs, trial_slots
from ganlab.study.progress import trial_counts
from conftest import seed_store
from forkserver import run_ganlab

TOLERANCE = 1e-4  # relative, as tests/train/test_packs.py: batched kernels round differently, nothing else


def _study(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_study(path)


MIXED = """
    name: mixed
    trial: {data: {name: ring8}, train: {steps: 20, eval_every: 10, log_every: 5}}
    sweep:
      loss.name: {grid: [non_saturating, hinge]}
      optim.lr_ratio: {grid: [1, 2, 4]}
    seeds: [0, 1, 2, 3, 4]
"""


def test_packs_hold_one_shape_and_fill_the_slots_evenly(tmp_path):
    study = _study(tmp_path, MIXED)
    points = study.points()
    packs = plan_packs(study, points, slots=4)  # 30 trials on 4 slots: lanes of at most ceil(30 / 4) = 8
    assert sorted(lane.index for pack in packs for lane in pack) == list(range(30))  # every trial exactly once
    for pack in packs:
        assert len({points[lane.index]["loss.name"] for lane in pack}) == 1  # a loss is part of the shape
        assert 7 <= len(pack) <= 8  # 15 trials of a loss in 2 packs: 8 + 7, never 8 + 7 + ... + 1
    assert len(packs) == 4
    assert [p[0].index for p in packs] == sorted(p[0].index for p in packs)  # in the points' order
    assert all(len(p) == 1 for p in plan_packs(study.model_copy(update={"pack": 1}), points, 4))
    capped = plan_packs(study.model_copy(update={"pack_max": 3}), points, 1)
    assert max(len(p) for p in capped) == 3 and len(capped) == 10
    explicit = plan_packs(study.model_copy(update={"pack": 5}), points, 64)
    assert [len(p) for p in explicit] == [5] * 6


def test_trial_slots_count_cpus_gpus_and_the_concurrency_cap(tmp_path):
    study = _study(tmp_path, MIXED)
    assert trial_slots(study, {"CPU": 16.0}) == 16
    assert trial_slots(study.model_copy(update={"max_concurrent": 3}), {"CPU": 16.0}) == 3
    gpu = study.model_copy(update={"resources": study.resources.model_copy(update={"cpu": 2.0, "gpu": 0.5})})
    assert trial_slots(gpu, {"CPU": 16.0, "GPU": 1.0}) == 2


@pytest.mark.parametrize("extra, says", [
    ("search: {algorithm: optuna, metric: eq/acc_gap, mode: min}\nnum_samples: 4\nseeds: [0]\npack: 4",
     "Optuna proposes trials one at a time"),
    ("scheduler: {name: asha, metric: eq/acc_gap, mode: min, grace_steps: 10}\npack: 2",
     "asha stops or clones trials one at a time"),
])
def test_an_explicit_pack_under_a_scheduler_or_optuna_is_refused(tmp_path, extra, says):
    text = textwrap.dedent(MIXED).replace("seeds: [0, 1, 2, 3, 4]\n", "") + extra + "\n"
    if "optuna" in extra:
        text = text.replace("grid: [1, 2, 4]", "loguniform: [1, 4]").replace("grid: [non_saturating, hinge]",
                                                                              "choice: [non_saturating, hinge]")
    with pytest.raises(ConfigError) as e:
        _study(tmp_path, text)
    assert e.value.key == "pack" and says in str(e.value)


@pytest.mark.parametrize("value", ["0", "many", "2.5"])
def test_a_pack_that_is_neither_auto_nor_a_count_is_refused(tmp_path, value):
    with pytest.raises(ConfigError) as e:
        _study(tmp_path, MIXED + f"    pack: {value}\n")
    assert e.value.key.startswith("pack")


def test_counts_add_up_in_trials_when_packs_hold_several():
    statuses = {"a": "RUNNING", "b": "TERMINATED", "c": "ERROR"}
    text = trial_counts(20, statuses, set(), set(), sizes={"a": 8, "b": 4, "c": 3}, lanes_done={"a": 2})
    assert text == "20 trials: 6 done, 6 running, 5 pending, 3 failed"


# --- a packed study against the same study unpacked ----------------------------------------------------------

STUDY = """
    name: packs
    trial:
      data: {name: ring8, batch_size: 32}
      model: {width: 16, depth: 2}
      loss: {name: least_squares}
      optim: {name: sgd}
      train: {steps: 60, eval_every: 30, log_every: 10, eval_samples: 200}
    sweep:
      optim.lr_g: {grid: [1.0e-3, 3.0e-3, 1.0e+6]}
    seeds: [0, 1]
    resources: {cpu: 0.5}
    artifacts: {save_models: true}
    pack: PACK
"""


def _run(workdir: Path, pack: str, cluster: tuple[str, dict]) -> tuple[subprocess.CompletedProcess, str]:
    """`ganlab run` on the session's Ray head (1 CPU, half a CPU a trial: packs are planned for 2 trial slots)."""
    workdir.mkdir()
    (workdir / "packs.yaml").write_text(textwrap.dedent(STUDY).replace("PACK", pack))
    address, env = cluster
    proc = run_ganlab(["run", "packs.yaml", "--address", address], cwd=seed_store(workdir), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, f"sqlite:///{workdir / 'mlflow.db'}"


@pytest.fixture(scope="module")
def packed_and_alone(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("packs")
    return _run(root / "packed", "auto", ray_cluster), _run(root / "alone", "1", ray_cluster), root


def _histories(uri: str, folder: Path) -> dict[tuple, pd.DataFrame]:
    client = MlflowClient(uri)
    out = {}
    for _, row in load_frame("packs", tracking_uri=uri).iterrows():
        (folder / row["run_id"]).mkdir(parents=True)
        path = client.download_artifacts(row["run_id"], "diagnostics.parquet", str(folder / row["run_id"]))
        out[(row["optim.lr_g"], row["seed"])] = pd.read_parquet(path)
    return out


@pytest.mark.integration
def test_a_packed_study_gives_every_trial_its_solo_numbers_runs_and_ending(packed_and_alone):
    (packed, packed_uri), (alone, alone_uri), root = packed_and_alone
    assert "packs (pack: auto): 2 pack(s) of 3 trials" in packed.stdout
    assert "packs (" not in alone.stdout
    for proc in (packed, alone):  # every trial has its line as it ends, packed or not
        assert len([line for line in proc.stdout.splitlines() if "] done " in line]) == 6
        assert "6 trials: 6 done" in proc.stdout
    a = load_frame("packs", tracking_uri=packed_uri).set_index(["optim.lr_g", "seed"]).sort_index()
    b = load_frame("packs", tracking_uri=alone_uri).set_index(["optim.lr_g", "seed"]).sort_index()
    assert len(a) == len(b) == 6
    assert a["trial_status"].tolist() == b["trial_status"].tolist()
    assert (a.loc[1e6, "trial_status"] == "diverged").all() and (a.loc[1e-3, "trial_status"] == "finished").all()
    assert a["verdict"].tolist() == b["verdict"].tolist()
    assert a["stop_reason"].tolist() == b["stop_reason"].tolist()  # a lane diverges at its own iteration, alone
    assert (a.loc[1e-3, "progress/g_steps"] == 60).all() and (a.loc[1e6, "progress/g_steps"] < 60).all()
    assert sorted(a["trial"].str.split(" ").str[0]) == [f"{i:05d}" for i in range(6)]  # named by the study's order

    client = MlflowClient(packed_uri)
    packs = {client.get_run(r).data.tags.get("ganlab.pack") for r in a["run_id"]}
    assert len(packs) == 2 and None not in packs  # tagged with their pack
    assert all(client.get_run(r).data.tags.get("ganlab.pack_lanes") == "3" for r in a["run_id"])
    assert all("ganlab.pack" not in MlflowClient(alone_uri).get_run(r).data.tags for r in b["run_id"])

    ha, hb = _histories(packed_uri, root / "a"), _histories(alone_uri, root / "b")
    assert ha.keys() == hb.keys()
    for key in ha:
        x, y = ha[key], hb[key]
        assert x["step"].tolist() == y["step"].tolist(), key
        for column in ("loss/d", "loss/g", "grad/d", "grad/g", "param/g", "param/d"):
            assert np.isclose(x[column], y[column], rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True).all(), (key, column)

    # a packed trial's weights load alone and reproduce what it saved (load_trial verifies its outputs)
    run_id = a.loc[(1e-3, 1), "run_id"]
    models = load_trial(run_id, tracking_uri=packed_uri)
    assert models.config.seed == 1 and models.config.optim.lr_g == pytest.approx(1e-3)
