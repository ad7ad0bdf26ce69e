"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` in a fresh temporary folder, a server on
127.0.0.1 on a free port (its Unix socket in that folder too), one database, and everything removed at the end.

    from pg import Postgres, unavailable        # tests/track is on sys.path for the tests beside it
    reason = unavailable()                      # None, or why no cluster can start here (a skip reason)
    with Postgres() as pg:                      # fsync stays on (honest numbers); Postgres(fsync=False) for speed
        uri = pg.uri                            # postgresql+psycopg2://ganlab@127.0.0.1:PORT/mlflow
        pg.query("select count(*) from runs")   # [(n,)], through psycopg2

The binaries: ``$GANLAB_PG_BIN`` (a folder), else ``initdb``/``pg_ctl`` on PATH, else the newest
``/usr/lib/postgresql/*/bin`` (where Debian's ``postgresql`` package puts them, off PATH).

PostgreSQL refuses to run as root. As root, the cluster's folder is given to an unprivileged user
(``$GANLAB_PG_USER``, else ``postgres``, which Debian's package creates) and ``initdb``/``pg_ctl`` run as that
user through ``runuser`` (or ``su``); as any other user they run directly. Authentication is ``trust`` and the
server listens on the loopback address only: a cluster for one test process, never for real data.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROLE = "ganlab"  # the cluster's superuser (initdb -U), the role every client connects as
DATABASE = "mlflow"
START_TIMEOUT_S = 60


def bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and createdb, or None."""
    wanted = ("initdb", "pg_ctl", "createdb")
    candidates = []
    if os.environ.get("GANLAB_PG_BIN"):
        candidates.append(Path(os.environ["GANLAB_PG_BIN"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)  # /usr/local/bin/initdb -> its real folder
        candidates.append(Path(on_path).parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=lambda p: _version(p), reverse=True)]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in wanted):
            return folder
    return None


def _version(path: str) -> tuple:
    parts = Path(path).parent.name.split(".")
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


def owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("GANLAB_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def unavailable(need_psycopg2: bool = True) -> str | None:
    """Why no throwaway cluster can run here (a skip reason), or None when one can."""
    if bin_dir() is None:
        return ("no PostgreSQL binaries (initdb, pg_ctl, createdb) on PATH, in $GANLAB_PG_BIN or "
                "/usr/lib/postgresql/*/bin: install Debian's postgresql package (.ci/run does)")
    if os.geteuid() == 0:
        name = os.environ.get("GANLAB_PG_USER", "postgres")
        if owner() is None:
            return (f"running as root, and PostgreSQL refuses root: no user {name!r} to own the cluster "
                    "(Debian's postgresql package creates 'postgres'; or set GANLAB_PG_USER)")
        if _switch_user(name) is None:
            return "running as root, and neither runuser nor su is here to run PostgreSQL as another user"
    if need_psycopg2:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "psycopg2 is not installed (scripts/setup.sh installs psycopg2-binary)"
    return None


def _switch_user(name: str) -> list[str] | None:
    if shutil.which("runuser"):
        return ["runuser", "-u", name, "--"]
    if shutil.which("su"):
        return ["su", "-s", "/bin/sh", name, "-c"]  # one shell-quoted command line follows
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traversable_tmp() -> str:
    """A temporary folder the cluster's user can reach: every folder above ours must be searchable by others."""
    base = Path(tempfile.gettempdir()).resolve()
    if os.geteuid() == 0 and any(not (p.stat().st_mode & 0o001) for p in [base, *base.parents]):
        return "/tmp"
    return str(base)


class Postgres:
    """One throwaway cluster, started by ``start()`` (or ``with``) and removed by ``stop()``."""

    def __init__(self, fsync: bool = True, role: str = ROLE, database: str = DATABASE,
                 settings: dict[str, str] | None = None):
        self.fsync, self.role, self.database = fsync, role, database
        self.settings = dict(settings or {})
        self.bin = bin_dir()
        self.user = owner()
        self.root: Path | None = None
        self.port: int | None = None

    # --- the cluster's folder and its commands -------------------------------------------------------

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _cmd(self, args: list[str]) -> list[str]:
        if self.user is None:
            return args
        prefix = _switch_user(self.user.pw_name)
        return prefix + [shlex.join(args)] if prefix[0] == "su" else prefix + args

    def _run(self, args: list[str], timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._cmd(args), cwd=self.root, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C"})
        if proc.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{shlex.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{tail}")
        return proc

    # --- life cycle -----------------------------------------------------------------------------------

    def start(self) -> "Postgres":
        reason = unavailable(need_psycopg2=False)
        if reason:
            raise RuntimeError(reason)
        self.root = Path(tempfile.mkdtemp(prefix="ganlab-pg-", dir=_traversable_tmp()))
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        try:
            # --no-sync: initdb's own writes only (a throwaway cluster); the server's fsync is set below
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.role,
                       "-E", "UTF8", "--no-locale", "--no-sync"])
            settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.root),
                        "max_connections": "200", **self.settings}
            if not self.fsync:
                settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
            for attempt in range(3):  # the free port may be taken between asking and binding: try another
                self.port = free_port()
                options = " ".join([f"-p {self.port}"] + [f"-c {k}={shlex.quote(v)}" for k, v in settings.items()])
                try:
                    self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                               "-t", str(START_TIMEOUT_S), "-o", options, "start"], timeout=START_TIMEOUT_S + 10)
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
            self._run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.role,
                       self.database])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops the server (immediate: nothing in it is kept) and removes the cluster's folder."""
        if self.root is None:
            return
        if (self.data / "postmaster.pid").exists():
            try:
                self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def _kill(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 9)
            time.sleep(0.5)
        except (OSError, ValueError, IndexError):
            pass

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- clients ------------------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The SQLAlchemy URL MLflow takes as ``--backend-store-uri``. The driver is named: SQLAlchemy 2.1 reads a
        bare ``postgresql://`` as psycopg 3 (``ModuleNotFoundError: No module named 'psycopg'``)."""
        return f"postgresql+psycopg2://{self.role}@127.0.0.1:{self.port}/{self.database}"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", port=self.port, user=self.role, dbname=self.database) as conn:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall() if cur.description else []
        conn.close()
        return rows
