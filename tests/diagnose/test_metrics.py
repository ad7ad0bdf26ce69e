"""The metric registry (``ganlab.diagnose.metrics``) is the one list of metric names: the README's table is
generated from it, every metric name written anywhere in the package, the studies, the docs and the dashboards
is registered, and every name the trainer really emits is registered (and every registered per-step and eval
name is emitted by some config)."""

import ast
import json
import re
from pathlib import Path

import pytest

from ganlab.config import apply_overrides
from ganlab.diagnose import metrics as M

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = "loss|acc|acc_sign|d|eq|osc|grad|param|update|reg|eval|progress|cost|hp|window"
# a whole string that is a metric name, "{}" standing for a placeholder (an f-string's field, a format field)
NAME = re.compile(rf"^(?:{PREFIXES}|\{{\}})/[a-z0-9_./{{}}]*[a-z0-9_}}]$")
# a metric name inside prose, YAML or Markdown (patterns such as `osc/<series>_std` or `acc_sign/*` are not names)
TOKEN = re.compile(rf"(?<![\w./<{{*-])(?:{PREFIXES})/[a-z0-9_.]*[a-z0-9_](?:/[a-z0-9_.]*[a-z0-9_])*(?![\w<{{*(/-])")
FIX = ("register it in ganlab/diagnose/metrics.py (or fix the spelling), then "
       "`.venv/bin/python -m ganlab.diagnose.metrics` to regenerate the README's table")


def _known(template: str) -> bool:
    """Is a metric name, or a template with ``{}`` placeholders, a registered name (or derived from one)?"""
    if "{}" not in template:
        return M.registered(template)
    template = M.base_name(template)
    pattern = re.compile("[a-z0-9_./]+".join(re.escape(part) for part in template.split("{}")))
    return any(pattern.fullmatch(name) for name in M.REGISTRY)


def _field(expression: str) -> str:
    """A placeholder: ``{}``; one that leads a name stands for a metric prefix only when it names the accuracies'
    prefix (``{acc}``, ``{prefix}``), so ``f"{uri}/health"`` is not read as a metric."""
    return "{}" if re.search(r"acc|prefix", expression) else "{?}"


def unregistered_in_python(source: str, where: str = "<string>") -> list[str]:
    """Every string constant (or f-string, its fields read as placeholders) that looks like a metric name and is
    not registered: 'file:line name', in source order."""
    tree = ast.parse(source, where)
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            template = "".join(v.value if isinstance(v, ast.Constant) else _field(ast.unparse(v.value))
                               for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            # "{acc}/real" (for str.format) reads as "{}/real"
            template = re.sub(r"\{([^{}]*)\}", lambda m: _field(m.group(1)), node.value)
        else:
            continue
        template = template[3:] if template.startswith("{?}") else template.replace("{?}", "{}")
        if NAME.fullmatch(template) and not _known(template):
            bad.append((node.lineno, node.col_offset, f"{where}:{node.lineno} {template}"))
    return [entry for *_, entry in sorted(bad)]


def unregistered_in_text(text: str, where: str = "<text>") -> list[str]:
    bad = []
    for match in TOKEN.finditer(text):
        if not M.registered(match.group()):
            bad.append(f"{where}:{text.count(chr(10), 0, match.start()) + 1} {match.group()}")
    return bad


def _text_of(path: Path) -> str:
    if path.suffix == ".ipynb":  # the cells' sources, not their (stale) outputs
        return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])
    return path.read_text()


def _closest(bad: list[str]) -> str:
    lines = []
    for entry in bad:
        name = entry.rsplit(" ", 1)[1]
        try:
            M.metric(name)
            hint = ""
        except KeyError as e:
            hint = f"  ({e.args[0]})"
        lines.append(entry + hint)
    return "\n".join(lines)


# --- the registry -------------------------------------------------------------------------------------------

def test_registry_entries_are_complete_and_consistent():
    assert len(M.REGISTRY) == len(M.names()) > 80
    for name, m in M.REGISTRY.items():
        assert m.name == name and NAME.fullmatch(name), name
        assert m.meaning and m.unit and m.group in M.GROUPS, name
        assert m.cadence in ("step", "eval", "trial"), name
        assert name.startswith("eval/") == (m.cadence == "eval"), name
        assert (name.split("/")[0] in ("cost", "hp")) == (m.cadence == "trial"), name
    assert set(M.names("step")) | set(M.names("eval")) | set(M.names("trial")) == set(M.REGISTRY)
    assert all(any(m.group == g for m in M.REGISTRY.values()) for g in M.GROUPS), "a group without metrics"
    for g in M.GROUPS.values():
        assert all(name in M.REGISTRY for name in g.also)


def test_constants_and_builders_name_registered_metrics():
    constants = {k: v for k, v in vars(M).items() if k.isupper() and isinstance(v, str) and "/" in v}
    assert len(constants) > 50
    for key, value in constants.items():
        assert value == M.WINDOW_PREFIX or M.registered(value), key
    assert M.OSC_LOSS_D_EXCESS == M.osc_name("loss_d", "excess") == "osc/loss_d_excess"
    assert {M.osc_name(s, k) for s in M.OSC_SERIES for k in M.OSC_STATS} <= set(M.REGISTRY)
    assert len({M.osc_name(s, k) for s in M.OSC_SERIES for k in M.OSC_STATS}) == 28
    assert [M.acc_name(p, w) for p in M.ACC_PREFIXES for w in ("real", "fake", "mean")] == [
        "acc/real", "acc/fake", "acc/mean", "acc_sign/real", "acc_sign/fake", "acc_sign/mean"]
    assert M.acc_prefix({"acc/real": 1.0}) == "acc" and M.acc_prefix(["acc_sign/real", "loss/d"]) == "acc_sign"
    assert M.hp_name("optim.lr_ratio") == "hp/optim.lr_ratio"
    assert M.window_name(M.EQ_ACC_GAP) == "window/eq/acc_gap" and M.base_name("window/eq/acc_gap") == "eq/acc_gap"
    for bad in (lambda: M.osc_name("loss_d", "excesss"), lambda: M.acc_name("acc", "reel"),
                lambda: M.hp_name("seed"), lambda: M.window_name("loss/dd")):
        with pytest.raises(KeyError):
            bad()


def test_a_misspelt_name_is_refused_with_the_closest_names():
    assert M.registered("d/auc") and M.registered("window/loss/d") and M.registered("hp/optim.lr_g")
    assert not M.registered("d/acu") and not M.registered("window/loss/dd") and not M.registered("hp/seed")
    with pytest.raises(KeyError, match=r"d/acu.*closest: d/auc"):
        M.metric("d/acu")
    with pytest.raises(KeyError, match="osc/loss_d_excess"):
        M.metric("osc/loss_d_exces")
    derived = M.metric("window/loss/d")
    assert (derived.name, derived.unit, derived.cadence) == ("window/loss/d", M.metric("loss/d").unit, "derived")
    with pytest.raises(ValueError):
        M.names("per_step")


# --- the README's table ----------------------------------------------------------------------------------------

def test_readme_table_is_generated_from_the_registry():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(M.BEGIN) == 1 and readme.count(M.END) == 1
    assert M.with_table(readme) == readme, (
        "README.md's metric table differs from ganlab.diagnose.metrics.markdown_table(): run "
        "`.venv/bin/python -m ganlab.diagnose.metrics` to rewrite it (edit the registry, not the README)")


def test_table_has_a_row_per_group_naming_every_metric():
    table = M.markdown_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(M.GROUPS) + len(M.DERIVED)
    for name in M.REGISTRY:
        series = next((s for s in M.OSC_SERIES if name.startswith(f"osc/{s}_")), None)
        if series is not None:
            stat = name.removeprefix(f"osc/{series}_")
            assert f"`osc/<series>_{stat}`" in table or f"`_{stat}`" in table, name
        elif name.startswith("hp/") and name not in (M.HP_LR_G, M.HP_LR_D):
            assert "`hp/<key>`" in table
        else:
            assert f"`{name}`" in table, name


def test_main_rewrites_and_checks_a_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{M.BEGIN}\n| metric | meaning |\n| `d/acu` | stale |\n{M.END}\n\nafter\n")
    assert M.main([str(readme), "--check"]) == 1
    assert M.main([str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith(f"{M.END}\n\nafter\n") and "d/acu" not in text
    assert M.markdown_table() in text
    assert M.main([str(readme), "--check"]) == 0
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="metrics:begin"):
        M.main([str(readme)])


# --- a misspelt metric name anywhere fails ---------------------------------------------------------------------

def test_the_checker_flags_misspelt_names():
    source = '''
x = m["d/acu"]
y = m.get("osc/loss_d_exces", 0)
ok = ("loss/d", "window/eq/acc_gap", "hp/optim.lr_g", "eval/", "docs/x.md", "not a metric: d/auc", f"{uri}/health")
z = f"{acc}/reel"
w = f"{acc}/real" + f"osc/{s}_{k}" + f"eval/{k}" + f"window/{m}" + "{acc}/fake"
v = f"osc/loss_g_{k}" + f"osc/{s}_excesss" + f"window/{m}/x" + "{acc}/fkae"
'''
    bad = [entry.split(" ", 1)[1] for entry in unregistered_in_python(source)]
    assert bad == ["d/acu", "osc/loss_d_exces", "{}/reel", "osc/{}_excesss", "window/{}/x", "{}/fkae"]
    text = "read `eval/modes` and d/auc_mean, `osc/<series>_std`, `acc_sign/*`; window/eq/acc_gap.\nbut eq/acc_gpa"
    assert [e.split(" ", 1)[1] for e in unregistered_in_text(text)] == ["eq/acc_gpa"]
    assert unregistered_in_text(text)[0].startswith("<text>:2 ")


def test_every_metric_name_in_the_package_is_registered():
    sources = sorted((ROOT / "ganlab").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py")) + \
        sorted((ROOT / "docs").glob("*.py")) + sorted((ROOT / "dashboards").glob("*.py"))
    assert len(sources) > 50
    bad = [e for p in sources for e in unregistered_in_python(p.read_text(), str(p.relative_to(ROOT)))]
    assert not bad, f"metric names that are not registered ({FIX}):\n{_closest(bad)}"
    # the scan reads real sources: a misspelt name in one is found
    path, name = next((p, n) for p in sources for n in M.REGISTRY if f'"{n}"' in p.read_text())
    wrong = path.read_text().replace(f'"{name}"', f'"{name}_typo"')
    assert f"{name}_typo" in {e.split(" ", 1)[1] for e in unregistered_in_python(wrong)}, path


def test_every_metric_name_in_studies_docs_and_dashboards_is_registered():
    paths = sorted((ROOT / "studies").glob("*.yaml")) + [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")) + \
        sorted((ROOT / "dashboards").glob("*.md")) + sorted((ROOT / "dashboards").glob("*.ipynb"))
    assert any(p.suffix == ".ipynb" for p in paths) and any(p.suffix == ".yaml" for p in paths)
    found = [m.group() for p in paths for m in TOKEN.finditer(_text_of(p))]
    assert {"eq/acc_gap", "eval/modes", "progress/g_steps", "acc/real"} <= set(found)  # the scan sees them
    bad = [e for p in paths for e in unregistered_in_text(_text_of(p), str(p.relative_to(ROOT)))]
    assert not bad, f"metric names that are not registered ({FIX}):\n{_closest(bad)}"


# --- what the trainer really emits ---------------------------------------------------------------------------

SMALL = {
    "data": {"name": "ring8", "batch_size": 64},
    "model": {"width": 32, "depth": 2},
    "optim": {"lr_g": 1e-3},
    "train": {"steps": 60, "log_every": 10, "eval_every": 30, "eval_samples": 500},
    "diagnostics": {"window": 20},
}
DIRAC = {"data": {"name": "dirac"}, "model": {"name": "dirac", "theta0": 1.0, "psi0": -1.0},
         "optim": {"name": "sgd", "lr_g": 0.2}, "loss": {"name": "minimax"},
         "diagnostics": {"jacobian": True, "duality_gap": True, "duality_gap_box": 2.0, "duality_gap_steps": 10}}
CONFIGS = {
    "bce_ring8_mlp": {},
    "wgan_critic": {"loss": {"name": "wgan"}},
    "per_step_false": {"diagnostics": {"per_step": False}},
    "dirac_jacobian_gap": DIRAC,
    "digits_probe": {"data": {"name": "digits", "batch_size": 64}, "model": {"name": "dcgan"},
                     "diagnostics": {"d_probe": True, "d_probe_per_class": 5, "d_probe_max_iter": 50}},
}


@pytest.fixture(scope="module")
def emitted() -> dict[str, set[str]]:
    from ganlab.train import metric_names

    return {key: metric_names(apply_overrides(SMALL, overrides)) for key, overrides in CONFIGS.items()}


def test_every_name_the_trainer_emits_is_registered(emitted):
    for key, got in emitted.items():
        bad = sorted(n for n in got if not M.registered(n))
        assert not bad, f"{key}: the trainer emits unregistered metrics ({FIX}): {_closest([f'- {n}' for n in bad])}"
        assert {m.cadence for n in got for m in [M.metric(n)]} <= {"step", "eval"}, key
    assert {M.ACC_SIGN_REAL, M.ACC_SIGN_FAKE} <= emitted["wgan_critic"] and M.ACC_REAL not in emitted["wgan_critic"]
    assert M.D_OUT_REAL not in emitted["per_step_false"] and M.LOSS_D in emitted["per_step_false"]
    assert M.EVAL_DIRAC_DISTANCE in emitted["dirac_jacobian_gap"] and M.EVAL_FD in emitted["digits_probe"]


def test_every_registered_training_metric_is_emitted_by_some_config(emitted):
    """No dead entries: each per-step and eval name of the registry is logged by one of these configs."""
    union = set().union(*emitted.values())
    dead = sorted((set(M.names("step")) | set(M.names("eval"))) - union)
    assert not dead, f"registered but emitted by none of {list(CONFIGS)}: {dead}"
