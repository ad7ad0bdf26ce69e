"""MLflow's own SQL store, written in bulk: a pack's points, params and tags for all of its runs in one
transaction per flush.

Through ``log_batch`` MLflow stores a point in ~100 µs (its ORM builds an object per row and reconciles the
run's latest metrics key by key, in one transaction per run); the same rows inserted in one transaction cost
~2 µs. With a pack of hundreds of trials that is the difference between seconds and half an hour of
bookkeeping. So where the process holds the database itself (``sqlite:///``, or a ``postgresql://`` URI), the
rows go in through MLflow's store: its session maker (its engine, its SQLite settings) and its table models
(``SqlMetric``, ``SqlLatestMetric``, ``SqlParam``, ``SqlTag``, ``SqlRun``), with MLflow's value rules (NaN and
infinities as ``sanitize_metric_value`` stores them; the latest metric as the greatest (step, timestamp,
value)). What MLflow reads back is what ``log_batch`` would have stored: tests/track/test_sql.py compares the
two row by row. A tracking server (``http://``) gets ``log_batch`` requests instead (``ganlab.track.writer``).

A flush is atomic here: the points and the ``logged_through`` tags that commit them land together or not at
all, so a pack killed mid-flush never leaves points beyond the step its tags say.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

IN_CHUNK = 500  # run ids per IN (...) clause: some databases cap bound parameters per statement
VALUES_PAGE = 1000  # rows per multi-row INSERT on PostgreSQL


def bulk_capable(uri: str) -> bool:
    """A store this process writes in SQL itself (not through a tracking server)."""
    return uri.startswith(("sqlite:", "postgresql:", "postgresql+", "mysql:", "mysql+"))


class SqlWriter:
    """Bulk writes to one MLflow SQL store."""

    def __init__(self, uri: str):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from mlflow.tracking._tracking_service.utils import _get_store

        store = _get_store(uri)
        if not isinstance(store, SqlAlchemyStore):
            raise TypeError(f"{uri} is not an MLflow SQL store")
        self.store = store

    def write(self, points: Sequence[tuple[str, str, float, int, int]] = (),
              tags: dict[str, dict[str, str]] | None = None,
              params: dict[str, dict[str, str]] | None = None) -> None:
        """``points``: (run_id, key, value, timestamp_ms, step) rows; ``tags`` / ``params``: run id -> {key: value}.
        One transaction: every row lands, or none."""
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlTag

        tags, params = tags or {}, params or {}
        sanitize = self.store.sanitize_metric_value
        rows, seen, latest = [], set(), {}
        for run_id, key, value, timestamp, step in points:
            is_nan, stored = sanitize(float(value))
            identity = (run_id, key, timestamp, step, stored, is_nan)
            if identity in seen:  # MLflow's primary key: the same point twice is stored once
                continue
            seen.add(identity)
            rows.append({"run_uuid": run_id, "key": key, "value": stored, "timestamp": timestamp, "step": step,
                         "is_nan": is_nan})
            order = (step, timestamp, stored)
            best = latest.get((run_id, key))
            if best is None or order > best[0]:
                latest[(run_id, key)] = (order, is_nan)
        with self.store.ManagedSessionMaker(read_only=False) as session:
            if rows:
                _insert(session, SqlMetric, rows)
                self._latest(session, SqlLatestMetric, latest)
            if params:
                _insert(session, SqlParam, [{"run_uuid": r, "key": k, "value": v}
                                            for r, kv in params.items() for k, v in kv.items()])
            if tags:
                self._tags(session, SqlTag, tags)

    @staticmethod
    def _latest(session, SqlLatestMetric, latest: dict) -> None:
        """Each (run, key)'s latest point, kept where the new one is not later (MLflow's order: step, then
        timestamp, then value)."""

        runs = sorted({run for run, _ in latest})
        stored = {}
        for chunk in _chunks(runs):
            for m in session.query(SqlLatestMetric).filter(SqlLatestMetric.run_uuid.in_(chunk)).with_for_update():
                stored[(m.run_uuid, m.key)] = m
        new = []
        for (run, key), ((step, timestamp, value), is_nan) in latest.items():
            old = stored.get((run, key))
            if old is None:
                new.append({"run_uuid": run, "key": key, "value": value, "timestamp": timestamp, "step": step,
                            "is_nan": is_nan})
            elif (step, timestamp, value) > (old.step, old.timestamp, old.value):
                old.value, old.step, old.timestamp, old.is_nan = value, step, timestamp, is_nan
        if new:
            _insert(session, SqlLatestMetric, new)

    @staticmethod
    def _tags(session, SqlTag, tags: dict[str, dict[str, str]]) -> None:
        """Set (insert or overwrite) tags on many runs."""

        stored = {}
        for chunk in _chunks(sorted(tags)):
            for t in session.query(SqlTag).filter(SqlTag.run_uuid.in_(chunk)):
                stored[(t.run_uuid, t.key)] = t
        new = []
        for run, kv in tags.items():
            for key, value in kv.items():
                old = stored.get((run, key))
                if old is None:
                    new.append({"run_uuid": run, "key": key, "value": str(value)})
                else:
                    old.value = str(value)
        if new:
            _insert(session, SqlTag, new)

    def create_runs(self, experiment_id: str, runs: Sequence[tuple[str, dict[str, str]]]) -> list[tuple[str, str]]:
        """Many runs at once, as ``MlflowClient.create_run`` makes each: ``runs`` are (name, tags); returns
        (run id, artifact URI) per run. ``create_run`` costs ~10 ms a run (a transaction, the experiment read
        again, the run read back); a pack of hundreds is created here in one transaction."""
        import uuid

        from mlflow.entities import LifecycleStage, RunStatus, SourceType
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_USER
        from mlflow.utils.uri import append_to_uri_path

        experiment = self.store.get_experiment(experiment_id)
        self.store._check_experiment_is_active(experiment)
        now = int(time.time() * 1000)
        rows, tag_rows, out = [], [], []
        for name, tags in runs:
            run_id = uuid.uuid4().hex
            uri = append_to_uri_path(experiment.artifact_location, run_id, self.store.ARTIFACTS_FOLDER_NAME)
            rows.append({"run_uuid": run_id, "name": name, "source_type": SourceType.to_string(SourceType.UNKNOWN),
                         "source_name": "", "entry_point_name": "", "user_id": tags.get(MLFLOW_USER, "unknown"),
                         "status": RunStatus.to_string(RunStatus.RUNNING), "start_time": now, "end_time": None,
                         "source_version": "", "lifecycle_stage": LifecycleStage.ACTIVE, "artifact_uri": uri,
                         "experiment_id": int(experiment_id), "deleted_time": None})
            tag_rows.extend({"run_uuid": run_id, "key": k, "value": str(v)}
                            for k, v in {**tags, MLFLOW_RUN_NAME: name}.items())
            out.append((run_id, uri))
        with self.store.ManagedSessionMaker(read_only=False) as session:
            if rows:
                _insert(session, SqlRun, rows)
                _insert(session, SqlTag, tag_rows)
        return out

    def terminate(self, run_ids: Iterable[str], status: str) -> None:
        """End many runs at once (``set_terminated`` run by run costs a transaction each)."""
        from mlflow.store.tracking.dbmodels.models import SqlRun

        end = int(time.time() * 1000)
        with self.store.ManagedSessionMaker(read_only=False) as session:
            for chunk in _chunks(sorted(run_ids)):
                session.query(SqlRun).filter(SqlRun.run_uuid.in_(chunk)).update(
                    {SqlRun.status: status, SqlRun.end_time: end}, synchronize_session=False)


def _insert(session, model, rows: list[dict]) -> None:
    """Rows into ``model``'s table in as few round trips as the driver allows. SQLite: the statement compiled
    from MLflow's table for its dialect, the rows through the driver's ``executemany`` (~5 µs a point, against
    ~25 µs through SQLAlchemy's per-row parameter processing). PostgreSQL through psycopg2: its
    ``executemany`` sends one statement per row (a round trip each), so the rows go as multi-row
    ``VALUES`` lists (``psycopg2.extras.execute_values``, ``VALUES_PAGE`` rows a statement)."""
    columns = list(rows[0])
    dialect = session.bind.dialect
    if dialect.driver == "psycopg2":
        from psycopg2.extras import execute_values

        quote = dialect.identifier_preparer
        sql = (f"INSERT INTO {quote.format_table(model.__table__)} "
               f"({', '.join(quote.quote(c) for c in columns)}) VALUES %s")
        cursor = session.connection().connection.cursor()
        try:
            execute_values(cursor, sql, [tuple(row[c] for c in columns) for row in rows], page_size=VALUES_PAGE)
        finally:
            cursor.close()
        return
    statement = model.__table__.insert().compile(dialect=dialect, column_keys=columns)
    if statement.positional:
        order = statement.positiontup
        data = [tuple(row[c] for c in order) for row in rows]
    else:
        data = rows
    session.connection().exec_driver_sql(str(statement), data)


def _chunks(items: list, size: int = IN_CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]
