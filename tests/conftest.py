import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from forkserver import run_ganlab

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"


def pytest_configure(config):
    """Each xdist worker owns one of the machine's cores: torch in a worker (and every process it starts: `ganlab
    train`, a Ray head and its trial actors) uses one thread. Two workers running torch with a thread per core
    each would oversubscribe the cores, and torch's threads spin-wait for each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def torch_state():
    """Tests may set torch's thread count or seed its global generator; the next test finds both as they were,
    so no test depends on which ran before it."""
    import torch

    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


_EMPTY_STORE: list[Path] = []


def seed_store(workdir: Path) -> Path:
    """``workdir`` with its default MLflow store (./mlflow.db) already there: a copy of an empty store whose
    schema MLflow built once in this test process. A new SQLite store runs MLflow's ~70 schema migrations
    (1-3 CPU-s in each `ganlab run` that creates one); the study tests are about what a study writes, not about
    creating the store, which tests/study/test_study_run.py and tests/cli cover from no store at all."""
    if not _EMPTY_STORE:
        from mlflow.tracking import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="ganlab-empty-store-"))
        MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # creates and migrates it
        _EMPTY_STORE.append(folder / "mlflow.db")
        atexit.register(shutil.rmtree, folder, True)
    if not (workdir / "mlflow.db").exists():
        shutil.copyfile(_EMPTY_STORE[0], workdir / "mlflow.db")
    return workdir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ganlab_cmd(*args: str) -> list[str]:
    """The installed console script's entry point, run with this interpreter."""
    return [sys.executable, "-m", "ganlab.cli", *args]


@pytest.fixture
def clean_env(monkeypatch):
    """Tests choose their own store; a developer's MLFLOW_TRACKING_URI must not leak in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    env = dict(os.environ)
    return env


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("GANLAB_TEST_ARTIFACTS", REPO / "test-artifacts"))  # screenshots kept for people


def chromium(workdir: Path, *args: str, offline: bool = False) -> subprocess.CompletedProcess:
    """Headless Chromium; ``offline`` sends every request off the machine to a closed port."""
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium package)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tempfile.mkdtemp(dir=workdir)}",
             "--window-size=1600,1000", "--virtual-time-budget=20000"]
    if offline:
        flags += ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


GRID_STUDY = textwrap.dedent(
    """
    name: grid
    description: two swept axes for the analysis tests
    trial:
      data: {name: ring8, batch_size: 32}
      model: {width: 16, depth: 1}
      optim: {lr_g: 1.0e-3}
      train: {steps: 60, eval_every: 30, log_every: 10, eval_samples: 200}
    sweep:
      optim.lr_ratio: {grid: [1.0, 4.0]}
      schedule.d_steps: {grid: [1, 2]}
    seeds: [0, 1]
    resources: {cpu: 1}
    max_concurrent: 2
    artifacts: {sample_plots: 1}
    """
)


def once_per_run(tmp_path_factory, name: str, make) -> Path:
    """A folder ``make(folder)`` fills once per pytest run, however many xdist workers ask for it: the first
    worker makes it under a file lock, the others wait and reuse it. ``make`` failing leaves no folder, so every
    worker that asks reports the failure instead of reading half a result."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's folder, shared by workers
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                make(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            done.touch()
    return folder


@pytest.fixture(scope="session")
def grid_study(tmp_path_factory, ray_cluster):
    """A finished 8-trial study over two swept axes (lr ratio x D steps, two seeds), run once by the real
    `ganlab run` on a worker's Ray head (once per pytest run, shared by xdist workers): (folder, study file,
    tracking URI). Tests read it; one that writes to its store (``report --attach``) adds to it without changing
    what the others read."""

    def make(workdir: Path) -> None:
        (workdir / "grid.yaml").write_text(GRID_STUDY)
        address, env = ray_cluster
        proc = run_ganlab(["run", "grid.yaml", "--address", address], cwd=seed_store(workdir), env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    workdir = once_per_run(tmp_path_factory, "grid", make)
    return workdir, workdir / "grid.yaml", f"sqlite:///{workdir / 'mlflow.db'}"


# Module-scoped fixtures that run a study or train models (tens of seconds each): the tests sharing one run on
# the same xdist worker (`--dist loadgroup`), so each fixture runs once per pytest run, not once per worker.
SHARED_MODULE_FIXTURES = ("study_dir", "reference", "digits", "dirac", "synthetic", "clf", "server",
                          "packed_and_alone")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        shared = [f for f in SHARED_MODULE_FIXTURES if f in getattr(item, "fixturenames", ())]
        if shared:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{shared[0]}"))


# Each xdist worker owns one of the machine's cores (pytest_configure), so its Ray head offers one CPU: a study's
# trials pack into one worker (`pack: auto` plans packs for the cluster's trial slots) instead of two workers per
# study, each paying ~7 CPU-s to import torch, Ray Tune and MLflow, on a machine two test processes already fill.
# A test that needs trials side by side (a PBT race, packs planned for two slots) asks for half a CPU a trial.
RAY_CLUSTER_CPUS = 1


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One real Ray head node (`ray start --head --block`, token auth) shared by the integration tests that only
    need *a* cluster: each `ganlab run --address` joins it in a second instead of starting and stopping its
    own Ray (about 8 s each on 2 cores). Tests that kill or restart Ray keep their own. Yields (address, env);
    stopped by its process group, so no other Ray on the machine is touched."""
    import secrets
    import signal

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), GANLAB_PROGRESS_EVERY="0")
    log = (tmp_path_factory.mktemp("ray") / "head.log").open("w")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port", str(port),
         "--node-ip-address", "127.0.0.1", "--num-cpus", str(RAY_CLUSTER_CPUS), "--include-dashboard=false",
         "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert head.poll() is None and time.time() < deadline, f"ray head did not start: {log.name}"
        time.sleep(0.5)
    yield address, env
    try:
        os.killpg(head.pid, signal.SIGKILL)  # the tests are over: no state of this cluster is worth a clean stop
        head.wait(timeout=30)
    except ProcessLookupError:
        pass


def pytest_collection_finish(session):
    """xdist's loadgroup works by renaming node ids, which pytest 9 no longer allows (pyproject pins pytest 8):
    if groups stop reaching the scheduler, every worker would rerun each shared study, so say so and stop."""
    if getattr(session.config, "workerinput", None) is None or not session.config.getvalue("loadgroup"):
        return
    grouped = [item for item in session.items if item.get_closest_marker("xdist_group")]
    if grouped and "@" not in grouped[0].nodeid:
        raise pytest.UsageError("xdist's --dist loadgroup is not grouping tests under this pytest "
                                f"{pytest.__version__}: install the pinned versions (requirements/constraints.txt).")
