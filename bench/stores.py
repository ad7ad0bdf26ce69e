"""Where a study's MLflow store lives, side by side: a local SQLite file, an `mlflow server` on SQLite, an
`mlflow server` on PostgreSQL, and PostgreSQL written directly by the trials (``--tracking-uri
postgresql+psycopg2://...``: ganlab's bulk SQL, no server between), the database a throwaway cluster
(tests/track/pg.py).

    .venv/bin/python bench/stores.py [--only dirac200 ring32 micro]
                                     [--stores sqlite server-sqlite server-postgres postgres]
                                     [--num-cpus 2] [--server-workers 1] [--runs 200] [--batches 100] [--writers 4]
                                     [--no-fsync] [--keep]

Studies: each runs through the real ``ganlab run`` (local Ray, ``pack: auto``, every metric and artifact logged)
once per store, in a fresh folder, one after the other. The store exists before the clock starts (the
local SQLite file created and migrated, the server up and its schema built), so the wall time is the study's
own. The table counts what the store holds afterwards, read from its own database (SQL ``count(*)`` on
``runs`` and ``metrics``): runs and metric points per wall second, and MLflow's share of the trials' time
(their ``cost/io_s`` over ``cost/compute_s + cost/io_s``, summed).

- dirac200: 200 Dirac-GAN trials (lr_g 20 values x r1 (0, 0.3) x theta0 5 values), 300 iterations;
- ring32: 32 ring8 trials (lr_ratio 4 values x 8 seeds), MLP width 32, depth 2, batch 64, 500 iterations.

Micro (``micro``), in this one process through ``MlflowClient`` against each store (``postgres``: MLflow's
SQLAlchemy store straight to the database, which tells the database's cost from the HTTP server's): ``--runs`` x
(``create_run`` with 20 tags, ``log_batch`` of 60 params, ``set_terminated``); ``--batches`` x ``log_batch`` of
1000 metric points into one run; then ``--writers`` processes each logging ``--batches`` / ``--writers``
batches of 1000 points into its own run at once (aggregate points per second, and failed calls).

A server's uvicorn worker(s) run on the same cores as the trials (``--server-workers``, default 1 as
``ganlab ui`` starts it). PostgreSQL runs with fsync on (``--no-fsync`` turns fsync, synchronous_commit and
full_page_writes off, for a bound on what the disk costs).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run ..." line per run
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests" / "track"))  # the throwaway cluster the PostgreSQL test starts, too
from pg import Postgres, free_port, unavailable  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from pack_studies import DIRAC400  # noqa: E402  (the same Dirac-GAN trial, shorter, over fewer theta0 values)

DIRAC200 = {
    **DIRAC400,
    "name": "dirac200",
    "trial": {**DIRAC400["trial"], "train": {**DIRAC400["trial"]["train"], "steps": 300}},
    "sweep": {**DIRAC400["sweep"], "model.theta0": {"grid": [round(0.4 * (i + 1), 2) for i in range(5)]}},
    "pack": "auto",
}
RING32 = {
    "name": "ring32",
    "trial": {"data": {"name": "ring8", "batch_size": 64}, "model": {"name": "mlp", "width": 32, "depth": 2},
              "train": {"steps": 500, "eval_every": 250, "log_every": 10}},
    "sweep": {"optim.lr_ratio": {"grid": [0.5, 1, 2, 4]}},
    "seeds": list(range(8)),
    "resources": {"cpu": 1},
    "pack": "auto",
}
STUDIES = {"dirac200": DIRAC200, "ring32": RING32}
STORES = ("sqlite", "server-sqlite", "server-postgres", "postgres")


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}


# --- stores ----------------------------------------------------------------------------------------------------


class Store:
    """One store, ready before the clock starts: ``uri`` for clients, ``count(table)`` from its own database."""

    def __init__(self, kind: str, folder: Path, workers: int, fsync: bool):
        self.kind, self.folder = kind, folder
        self.pg: Postgres | None = None
        self.server: subprocess.Popen | None = None
        self.db = folder / ("mlflow.db" if kind == "sqlite" else "server.db")
        folder.mkdir(parents=True)
        if kind == "sqlite" or kind == "server-sqlite":
            from mlflow.tracking import MlflowClient

            MlflowClient(f"sqlite:///{self.db}").search_experiments()  # created and migrated off the clock
        if kind in ("server-postgres", "postgres"):
            self.pg = Postgres(fsync=fsync).start()
        if kind == "sqlite":
            self.uri = f"sqlite:///{self.db}"
        elif kind == "postgres":  # no server: SQLAlchemy in this process straight to the database
            from mlflow.tracking import MlflowClient

            self.uri = self.pg.uri
            MlflowClient(self.uri).search_experiments()
        else:
            backend = self.pg.uri if self.pg else f"sqlite:///{self.db}"
            self.uri = self._serve(backend, workers)

    def _serve(self, backend: str, workers: int) -> str:
        port = free_port()
        log = self.folder / "server.log"
        self.server = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", backend, "--artifacts-destination",
             str(self.folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    return f"http://127.0.0.1:{port}"
            except OSError:
                if self.server.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"mlflow server on {backend} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)

    def count(self, table: str) -> int:
        if self.pg is not None:
            return self.pg.query(f"select count(*) from {table}")[0][0]
        with sqlite3.connect(self.db) as db:
            return db.execute(f"select count(*) from {table}").fetchone()[0]

    def close(self) -> None:
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(timeout=60)
        if self.pg is not None:
            self.pg.stop()


# --- studies ---------------------------------------------------------------------------------------------------


def run_study(study: dict, store: Store, num_cpus: int) -> dict:
    folder = store.folder / "study"
    folder.mkdir()
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "ganlab"), "run", str(path), "--tracking-uri", store.uri, "--num-cpus",
                           str(num_cpus)], cwd=folder, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{study['name']} on {store.kind} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    from ganlab.analysis import load_study

    df = load_study(study["name"], tracking_uri=store.uri, window=None)
    assert (df["status"] == "FINISHED").all(), df["status"].value_counts()
    io, compute = df["cost/io_s"].sum(), df["cost/compute_s"].sum()
    return {"wall": wall, "trials": len(df), "runs": store.count("runs"), "points": store.count("metrics"),
            "share": io / (io + compute)}


# --- micro -----------------------------------------------------------------------------------------------------


def _tags(i: int) -> dict[str, str]:
    return {f"ganlab.bench.tag{k}": f"value-{i}-{k}" for k in range(20)}


def _batch(b: int):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(f"m{k}", float(b * 40 + s) * 1e-3 + k, now, b * 40 + s) for s in range(40) for k in range(25)]


def _writer(uri: str, experiment_id: str, batches: int, barrier, out) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id).info.run_id
    payload = [_batch(b) for b in range(batches)]
    barrier.wait()
    started, failed = time.time(), 0
    for metrics in payload:
        try:
            client.log_batch(run_id, metrics=metrics)
        except Exception as e:  # noqa: BLE001 - counted: a lock timeout is what this part looks for
            failed += 1
            print(f"    writer: {type(e).__name__}: {str(e)[:160]}", file=sys.stderr)
    out.put((started, time.time(), failed))


def micro(store: Store, runs: int, batches: int, writers: int) -> dict:
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.uri)
    exp = client.create_experiment(f"micro-{store.kind}")
    params = [Param(f"param.{k}", str(k * 0.5)) for k in range(60)]
    client.log_batch(client.create_run(exp, tags=_tags(-1)).info.run_id, params=params)  # warm: connections
    started = time.perf_counter()
    for i in range(runs):
        run_id = client.create_run(exp, tags=_tags(i)).info.run_id
        client.log_batch(run_id, params=params)
        client.set_terminated(run_id)
    run_s = time.perf_counter() - started
    run_id = client.create_run(exp).info.run_id
    payload = [_batch(b) for b in range(batches)]
    started = time.perf_counter()
    for metrics in payload:
        client.log_batch(run_id, metrics=metrics)
    point_s = time.perf_counter() - started
    before = store.count("metrics")

    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no engine or connection shared by fork
    barrier, out = ctx.Barrier(writers), ctx.Queue()
    each = max(1, batches // writers)
    procs = [ctx.Process(target=_writer, args=(store.uri, exp, each, barrier, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    first, last = min(r[0] for r in results), max(r[1] for r in results)
    failed = sum(r[2] for r in results)
    stored = store.count("metrics") - before
    return {"runs_s": runs / run_s, "ms_run": 1000 * run_s / runs, "points_s": batches * 1000 / point_s,
            "us_point": 1e6 * point_s / (batches * 1000), "conc_points_s": stored / (last - first),
            "conc_failed": failed, "conc_lost": writers * each * 1000 - stored}


# --- main ------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=[*STUDIES, "micro"], default=[*STUDIES, "micro"])
    ap.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--server-workers", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200, help="micro: runs created")
    ap.add_argument("--batches", type=int, default=100, help="micro: log_batch calls of 1000 points")
    ap.add_argument("--writers", type=int, default=4, help="micro: concurrent writer processes")
    ap.add_argument("--no-fsync", action="store_true", help="PostgreSQL without fsync (a bound, not a setup)")
    ap.add_argument("--keep", action="store_true", help="keep the folders (printed)")
    args = ap.parse_args()
    if any("postgres" in s for s in args.stores) and unavailable():
        raise SystemExit(f"PostgreSQL: {unavailable()}")
    root = Path(tempfile.mkdtemp(prefix="ganlab-stores-"))
    commit = subprocess.run(["git", "-C", str(REPO), "log", "--oneline", "-1"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "ganlab"],
                                capture_output=True, text=True).stdout.strip())
    import ganlab

    print(f"# {datetime.date.today()}, {platform.node()}: {os.cpu_count()} cores, {platform.python_version()}; "
          f"ganlab from {Path(ganlab.__file__).parent}, commit {commit or 'unknown (not a git checkout)'}"
          f"{' (ganlab/ modified)' if dirty else ''}; PostgreSQL fsync "
          f"{'off' if args.no_fsync else 'on'}; server workers {args.server_workers}", flush=True)

    studies = [n for n in args.only if n in STUDIES]
    if studies:
        print(f"\nwhole `ganlab run` (pack: auto, --num-cpus {args.num_cpus}), one store after the other")
        print(f"{'study':<9} {'store':<16} {'trials':>6} {'wall s':>7} {'runs':>5} {'points':>8} "
              f"{'runs/s':>7} {'points/s':>9} {'MLflow share':>13}", flush=True)
        for name in studies:
            for kind in args.stores:
                print(f"  {name} on {kind} ...", file=sys.stderr, flush=True)
                store = Store(kind, root / f"{name}-{kind}", args.server_workers, not args.no_fsync)
                try:
                    r = run_study(STUDIES[name], store, args.num_cpus)
                finally:
                    store.close()
                print(f"{name:<9} {kind:<16} {r['trials']:>6} {r['wall']:>7.1f} {r['runs']:>5} {r['points']:>8} "
                      f"{r['runs'] / r['wall']:>7.2f} {r['points'] / r['wall']:>9.0f} {r['share']:>12.1%}",
                      flush=True)

    if "micro" in args.only:
        kinds = list(args.stores)
        print(f"\nmicro, one process: {args.runs} runs (create_run + 20 tags, log_batch 60 params, set_terminated); "
              f"{args.batches} x log_batch(1000 points); then {args.writers} writer processes at once")
        print(f"{'store':<16} {'runs/s':>7} {'ms/run':>7} {'points/s':>9} {'µs/point':>9} "
              f"{f'{args.writers} writers points/s':>20} {'failed calls':>13} {'points lost':>12}", flush=True)
        for kind in kinds:
            print(f"  micro on {kind} ...", file=sys.stderr, flush=True)
            store = Store(kind, root / f"micro-{kind}", args.server_workers, not args.no_fsync)
            try:
                r = micro(store, args.runs, args.batches, args.writers)
            finally:
                store.close()
            label = kind if kind != "postgres" else "postgres (direct)"
            print(f"{label:<16} {r['runs_s']:>7.1f} {r['ms_run']:>7.1f} {r['points_s']:>9.0f} {r['us_point']:>9.1f} "
                  f"{r['conc_points_s']:>20.0f} {r['conc_failed']:>13} {r['conc_lost']:>12}", flush=True)

    if args.keep:
        print(f"folders: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
