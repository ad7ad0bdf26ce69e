"""The package's shape stays true: imports point one way, down a stack of layers, with no cycles, and no
module grows past the size a reader can hold. Reads the source (``ast``), imports nothing of ganlab."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ganlab"

# Bottom to top; a module may import its own subpackage and any subpackage of a lower layer. Layers with two
# subpackages hold peers that never import each other (study runs on Ray, analysis reads with pandas).
LAYERS = (("config",), ("data",), ("diagnose",), ("train",), ("track",), ("study", "analysis"), ("cli",))
RANK = {pkg: rank for rank, names in enumerate(LAYERS) for pkg in names}
MAX_LINES = 520  # "about 500": a module past this is doing more than one job


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """Every ganlab module this one imports (top level or inside functions), with its line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "ganlab"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ganlab":
                continue
            # `from ganlab.x import y` may name a submodule y
            found += [(f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target, node.lineno)
                      for a in node.names]
    return found


MODULES = modules()


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_subpackage_has_a_layer():
    subpackages = {p.parent.name for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    assert subpackages == set(RANK), "add a new subpackage to LAYERS (and to docs/architecture.md)"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules belong in a subpackage: {loose}"


def test_imports_point_down_the_layers():
    wrong = []
    for name, path in MODULES.items():
        here = layer(name)
        for target, line in imports_of(name, path):
            there = layer(target)
            if here is None:  # the package root: only lazy imports (checked below) and its version
                continue
            if there is None:
                if target != "ganlab":  # `import ganlab` for __version__ is fine anywhere
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
                continue
            if there != here and RANK[there] >= RANK[here]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here}) imports {target} ({there})")
    assert not wrong, "imports against the layer order " + " > ".join("|".join(n) for n in LAYERS[::-1]) + ":\n" + \
        "\n".join(wrong)


def test_the_package_root_imports_lazily():
    """``import ganlab`` stays cheap: the root imports its subpackages only inside functions."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not top


def test_no_import_cycles():
    graph = {name: {t for t, _ in imports_of(name, path) if t in MODULES and t != name} for name, path in MODULES.items()}
    # a package's __init__ re-exporting its modules is not a cycle with them
    graph = {n: {t for t in ts if not (n.startswith(t + ".") and MODULES[t].name == "__init__.py")}
             for n, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_modules_stay_small():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along their jobs): {long}"


def test_the_checker_sees_a_violation(tmp_path):
    """The checker itself can fail: an upward import and a relative one are both caught."""
    bad = tmp_path / "x.py"
    bad.write_text("from ganlab.cli import main\nfrom ..study import runner\n")
    found = imports_of("ganlab.train.x", bad)
    assert [t for t, _ in found] == ["ganlab.cli", "ganlab.study.runner"]
    assert all(RANK[layer(t)] > RANK["train"] for t, _ in found)


def test_tests_mirror_the_layout():
    tests = Path(__file__).parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders == set(RANK), "tests/<subpackage>/ for each subpackage of ganlab"
