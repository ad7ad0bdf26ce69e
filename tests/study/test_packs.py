"""Packs in a study: which trials share a pack, and a packed study that gives every trial the numbers, tags,
artifacts and ending it gets when each trial trains alone (`pack: 1`), through the real `ganlab run`."""

import json
import subprocess
import textwrap
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ganlab.analysis import load_study as load_frame
from ganlab.analysis.trials import load_trial
from ganlab.config import ConfigError, load_study
from ganlab.study.packs import PackSpec, TrialId, TrialSpec, plan_packs, trial_slots
from ganlab.study.progress import StudyCallback
from ganlab.track.store import TAG_PACK, TAG_PACK_LANES
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
    assert sorted(trial.index for pack in packs for trial in pack.trials) == list(range(30))  # each exactly once
    for pack in packs:
        assert len({points[trial.index]["loss.name"] for trial in pack.trials}) == 1  # a loss is part of the shape
        assert 7 <= len(pack.trials) <= 8  # 15 trials of a loss in 2 packs: 8 + 7, never 8 + 7 + ... + 1
        assert all(trial.point == points[trial.index] for trial in pack.trials)
    assert len(packs) == 4
    assert [p.trials[0].index for p in packs] == sorted(p.trials[0].index for p in packs)  # in the points' order
    alone = plan_packs(study.model_copy(update={"pack": 1}), points, 4)
    assert all(len(p.trials) == 1 and not p.packed for p in alone) and [p.trials[0].index for p in alone] == list(range(30))
    capped = plan_packs(study.model_copy(update={"pack_max": 3}), points, 1)
    assert max(len(p.trials) for p in capped) == 3 and len(capped) == 10
    explicit = plan_packs(study.model_copy(update={"pack": 5}), points, 64)
    assert [len(p.trials) for p in explicit] == [5] * 6


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


# --- the typed pack spec and trial id -------------------------------------------------------------------------


def test_a_trial_id_keeps_tunes_strings_exactly():
    """MLflow runs are found again by these strings after a resume: the formats are the contract."""
    tid = TrialId.of("a1b2c_00003")
    assert (str(tid), tid.prefix, tid.short) == ("a1b2c_00003", "a1b2c", "00003")
    assert str(tid.numbered(7)) == "a1b2c_00007" and str(tid.numbered(12345)) == "a1b2c_12345"
    assert str(tid.numbered(123456)) == "a1b2c_123456"  # five digits at least, as Tune's own
    assert TrialId.of("a_b_00001").prefix == "a_b"  # the number is after the last "_"
    bare = TrialId.of("abc")  # no "_": all prefix, and shown whole
    assert (bare.prefix, bare.short, str(bare.numbered(3))) == ("abc", "abc", "abc_00003")
    for raw in ("a1b2c_00003", "a_b_00001", "abc", "f00d_99999"):  # the string surgery it replaces
        tid = TrialId.of(raw)
        assert TrialId.of(str(tid)) == tid == TrialId.of(tid) and hash(tid) == hash(TrialId(raw))
        assert tid.short == raw.rsplit("_", 1)[-1] and str(tid.numbered(42)) == f"{raw.rsplit('_', 1)[0]}_{42:05d}"
    with pytest.raises(ValueError):
        TrialId.of("")


def test_a_pack_spec_reads_and_writes_tunes_json_unchanged():
    stored = {"pack": [{"index": 3, "point": {"optim.lr_ratio": 2, "seed": 0}},
                       {"index": 7, "point": {"optim.lr_ratio": 4, "seed": 1}}]}
    pack = PackSpec.of(json.loads(json.dumps(stored)))  # as a resumed study's Tune state holds it
    assert pack.trials == (TrialSpec(3, {"optim.lr_ratio": 2, "seed": 0}), TrialSpec(7, {"optim.lr_ratio": 4, "seed": 1}))
    assert pack.packed and pack.to_tune() == stored and PackSpec.of(pack.to_tune()) == pack
    assert [str(t) for t in pack.trial_ids("e9f8a_00001")] == ["e9f8a_00003", "e9f8a_00007"]

    one = PackSpec.of({"pack": [{"index": 5, "point": {"seed": 2}}]})  # a planned pack of one: a trial alone
    assert not one.packed and one.to_tune() == {"pack": [{"index": 5, "point": {"seed": 2}}]}
    assert [str(t) for t in one.trial_ids("e9f8a_00001")] == ["e9f8a_00001"]

    point = PackSpec.of({"point": {"seed": 1}})  # grid, random and PBT trials
    assert point.trials == (TrialSpec(None, {"seed": 1}),) and point.to_tune() == {"point": {"seed": 1}}
    assert not point.packed and [str(t) for t in point.trial_ids("e9f8a_00004")] == ["e9f8a_00004"]
    assert PackSpec.of({"optim.lr_ratio": 2.5}).trials == (TrialSpec(None, {"optim.lr_ratio": 2.5}),)  # Optuna
    assert PackSpec.of(None).trials == PackSpec.of({}).trials == (TrialSpec(None, {}),)  # never started
    with pytest.raises(ValueError):
        PackSpec(())
    with pytest.raises(ValueError):
        PackSpec((TrialSpec(None, {}), TrialSpec(1, {})))


def test_the_packed_param_space_is_the_json_tune_always_stored(tmp_path, monkeypatch):
    import ray

    from ganlab.study.tuner import study_space

    study = _study(tmp_path, MIXED)
    points = study.points()
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    space = study_space(study, None)
    packs = plan_packs(study, points, 4)
    assert space == {"pack": {"grid_search": [[{"index": t.index, "point": t.point} for t in p.trials] for p in packs]}}
    assert [PackSpec.of({"pack": entry}) for entry in space["pack"]["grid_search"]] == packs
    alone = study.model_copy(update={"pack": 1})
    assert study_space(alone, None) == {"point": {"grid_search": points}}


def test_progress_labels_a_pack_of_several_and_a_trial_alone():
    several = SimpleNamespace(config=PackSpec((TrialSpec(0, {"seed": 0}), TrialSpec(1, {"seed": 1}))).to_tune())
    assert StudyCallback._label(several) == "pack of 2 trials (seed=0 ...)"
    for config in ({"point": {"seed": 3}}, {"pack": [{"index": 3, "point": {"seed": 3}}]}, {"seed": 3}):
        assert StudyCallback._label(SimpleNamespace(config=config)) == "seed=3"


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
    packs = {client.get_run(r).data.tags.get(TAG_PACK) for r in a["run_id"]}
    assert len(packs) == 2 and None not in packs  # tagged with their pack
    for run_id, trial_id, name in zip(a["run_id"], a["trial_id"], a["trial"]):  # its pack's prefix, its own number
        pack = TrialId.of(client.get_run(run_id).data.tags[TAG_PACK])
        assert TrialId.of(trial_id).prefix == pack.prefix and name.split(" ")[0] == TrialId.of(trial_id).short
    assert all(client.get_run(r).data.tags.get(TAG_PACK_LANES) == "3" for r in a["run_id"])
    assert all(TAG_PACK not in MlflowClient(alone_uri).get_run(r).data.tags for r in b["run_id"])

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
