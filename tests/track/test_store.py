"""ganlab.track.store: the one home of the store's tag names. The study writes them and the analysis reads them
back (peers that share names only through ``track``), so a tag retyped as a literal anywhere else is a name
that can drift from the one its reader uses. The check reads every module's ``ast``, as tests/test_layout.py."""

import ast
import re
import textwrap
from pathlib import Path

import ganlab
from ganlab.track import store

PACKAGE = Path(ganlab.__file__).resolve().parent
TAGS = {value: name for name, value in vars(store).items() if name.startswith("TAG_")}
TAG_LIKE = re.compile(r"ganlab\.[a-z][a-z0-9_]*")  # "ganlab.<word>": a tag's shape
IN_FILTER = re.compile(r"tags\.[`\"']?(ganlab\.[a-z][a-z0-9_]*)")  # a tag inside an MLflow search filter
# "ganlab."-prefixed strings that name no tag: the package's modules (imports, loggers) and the study's log file
MODULES = {".".join(("ganlab", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
           for p in PACKAGE.rglob("*.py")}
NOT_TAGS = {"ganlab.log"}  # ganlab.cli.common.LOG_FILE
# Tag literals in code another change owns (the trainer split rewrites how TrialRun and GanTrainable consume
# the trainer's reports): each has its constant in store.py already. Switch the code to the constant, then drop
# the literal here; test_tag_names_live_in_track fails on an entry the code no longer holds.
PENDING: dict[str, set[str]] = {}  # literals awaiting their constant (none left)


def _is_tag(text: str) -> bool:
    """A tag constant's value (``ganlab.study`` is the package's name too: a tag all the same), or any other
    ``ganlab.<word>`` that names no module and no file."""
    return text in TAGS or (TAG_LIKE.fullmatch(text) is not None and text not in MODULES and text not in NOT_TAGS)


def tag_literals(root: Path) -> dict[str, set[str]]:
    """The tag names typed as string literals in each module under ``root`` (a package laid out as ganlab's),
    by path relative to it; ``track/``, their home, is not searched."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("track/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = {node.value} if _is_tag(node.value) else set()
                names |= set(IN_FILTER.findall(node.value))
                if names:
                    found.setdefault(rel, set()).update(names)
    return found


def test_tag_names_live_in_track():
    found = tag_literals(PACKAGE)
    stray = {path: sorted(names - PENDING.get(path, set())) for path, names in found.items()}
    stray = {path: names for path, names in stray.items() if names}
    assert not stray, (f"tag names typed as literals outside ganlab/track: {stray}; name each in "
                       "ganlab/track/store.py (TAG_*) and import it")
    done = {path: sorted(names - found.get(path, set())) for path, names in PENDING.items()}
    assert not any(done.values()), f"no longer literals, drop them from PENDING: {done}"
    assert set().union(*PENDING.values()) <= TAGS.keys()  # each has its constant already


def test_the_check_finds_what_it_should_and_nothing_else(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "track").mkdir()
    (tmp_path / "study" / "x.py").write_text(textwrap.dedent('''
        """A docstring may say that ganlab.phase is a tag."""
        import importlib
        import logging

        tags = {"ganlab.phase": "search", "ganlab.study": "s", "mlflow.parentRunId": "p"}  # known tags
        fresh = {"ganlab.brand_new": "1"}  # a tag store.py does not know yet
        query = "tags.`ganlab.kind` = 'trial'"  # inside a search filter
        LOG_FILE = "ganlab.log"
        moved = importlib.import_module("ganlab.diagnose.probe")
        log = logging.getLogger("ganlab.cli")
        text = f"ganlab: {tags}"
    '''))
    (tmp_path / "track" / "store.py").write_text('TAG_PHASE = "ganlab.phase"\n')  # their home
    assert tag_literals(tmp_path) == {"study/x.py": {"ganlab.phase", "ganlab.study", "mlflow.parentRunId",
                                                     "ganlab.brand_new", "ganlab.kind"}}


def test_each_tag_has_one_constant_and_ganlab_track_exports_it():
    import ganlab.track

    names = [name for name in vars(store) if name.startswith("TAG_")]
    assert len(TAGS) == len(names), "two TAG_* constants name the same tag"
    assert set(names) <= set(ganlab.track.__all__) and all(getattr(ganlab.track, n) == getattr(store, n) for n in names)
    assert all(TAG_LIKE.fullmatch(value) or value.startswith("mlflow.") for value in TAGS)
    assert {"ganlab.phase", "ganlab.confirms", "ganlab.pack", "ganlab.pack_lanes", "ganlab.trial_name",
            "ganlab.best", "ganlab.restarts", "ganlab.resumed_at", "ganlab.verdict_reason"} <= TAGS.keys()


OPENER = textwrap.dedent("""
    import sys, time
    from ganlab.track.store import open_store
    start = float(sys.argv[2])
    while time.time() < start:  # every process past its imports: they open the new store at one instant
        time.sleep(0.001)
    open_store(sys.argv[1]).search_experiments(max_results=1)
""")


def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    """MLflow creates and migrates a SQLite store's tables without a lock: four clients opening a new store at
    the same instant fail with "duplicate column name: step" or "table ... already exists" (seen every time
    here without the lock). Under ``open_store``'s file lock one creates the tables and the others find them."""
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    start = str(time.time() + 8)  # the imports take ~2-5 s on 2 cores
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, uri, start], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-600:] for e in errors)
    from mlflow.tracking import MlflowClient

    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["Default"]


MLFLOW_WRITES = {"log_batch", "log_metric", "log_metrics", "log_param", "log_params", "set_tag", "set_tags",
                 "log_artifact", "log_artifacts", "log_dict", "create_run", "set_terminated", "update_run",
                 "delete_run", "create_experiment"}
WRITERS = {"PackWriter"}  # ganlab.track's own writer objects: their methods are track's, wherever called


def mlflow_writes(root: Path) -> dict[str, set[str]]:
    """Calls of MLflow's write methods on an MlflowClient (or ``mlflow.``) in each module outside ``track/``:
    a write there bypasses track's batching, spooling and exactly-once bookkeeping."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("track/"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MLFLOW_WRITES:
                owner = ast.unparse(node.func.value)
                if "client" in owner.lower() or owner.startswith("mlflow") or "MlflowClient" in owner:
                    found.setdefault(rel, set()).add(f"{owner}.{node.func.attr}")
    return found


def test_every_mlflow_write_goes_through_track():
    assert not mlflow_writes(PACKAGE), "MLflow written outside ganlab/track (use ganlab.track.store's functions or " \
        f"the pack's writer): {mlflow_writes(PACKAGE)}"


def test_the_write_checker_sees_a_client_write(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "x.py").write_text("from mlflow.tracking import MlflowClient\n"
                                             "MlflowClient('sqlite:///x').set_tag('r', 'k', 'v')\n")
    assert mlflow_writes(tmp_path) == {"study/x.py": {"MlflowClient('sqlite:///x').set_tag"}}
