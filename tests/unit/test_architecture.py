"""The import rules of docs/architecture.md, checked on the source with ``ast``.

Every module under ``src/minidisc`` is parsed (nothing is imported); every import of a
``minidisc`` module is recorded with its kind: ``module`` (runs when the module is
imported), ``typing`` (under ``if TYPE_CHECKING:``, never runs) or ``local`` (inside a
function, runs when the function is called). The rules:

* a unit (a subpackage such as ``training``, or a top-level module such as ``models``)
  imports only units of its own layer or of lower layers (:data:`LAYERS`), whatever the
  kind of the import, except the edges listed in :data:`EXCEPTIONS`, each with its reason;
* counting module-level imports only, the units form no cycle;
* a few rules the document names outright (:func:`test_named_rules`), which no exception
  can waive.

The checker itself is tested on synthetic trees, so a broken rule fails the test.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: Layer of each unit: a unit may import units of its own or a lower layer (docs/architecture.md).
LAYERS: dict[str, int] = {
    # 0: foundation
    "(root)": 0,  # minidisc/__init__.py: the version, a lazy `load_student`
    "errors": 0,
    "fileio": 0,
    "seeding": 0,
    "runtime": 0,  # the device and precision every stage computes in
    # 1: building blocks
    "elastic": 1,
    "models": 1,
    "tasks": 1,
    "compute": 1,
    "config": 1,
    "scaling": 1,
    "runfolder": 1,
    # 2: training machinery
    "objectives": 2,
    "training": 2,
    "evaluation": 2,
    # 3: reports
    "report": 3,
    # 4: pipelines
    "schedules": 4,
    "pretrain": 4,
    # 5: entry points
    "cli": 5,
    # 6: the Python API, which calls the commands' own code
    "api": 6,
}

#: Upward imports that exist on purpose: (importer module, imported module) -> reason.
#: Every one is function-local or annotation-only (none runs at import time).
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("minidisc", "minidisc.elastic.io"): (
        "lazy public `minidisc.load_student` (module __getattr__), keeps `import minidisc` fast"
    ),
    ("minidisc", "minidisc.api"): (
        "lazy public `minidisc.compress` and the other API functions (module __getattr__), keeps `import minidisc` fast"
    ),
}


@dataclass(frozen=True)
class Import:
    """One import of a ``minidisc`` module: who, what, how (module/typing/local), where."""

    importer: str
    target: str
    kind: str
    line: int


def module_name(path: Path, root: Path) -> str:
    """Dotted name of the module at ``path`` under the source folder ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def unit_of(module: str) -> str:
    """The unit of a module: its subpackage, or top-level module, under ``minidisc``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_of(tree: ast.Module, name: str, base: list[str], known: set[str], package: str) -> list[Import]:
    """The imports of ``package`` modules in the parsed module ``name`` (``base``: the
    package that relative imports start from; ``known``: every module name)."""
    found: list[Import] = []

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test) and kind == "module":
                for stmt in child.body:
                    visit_stmt(stmt, "typing")
                for stmt in child.orelse:
                    visit_stmt(stmt, kind)
                continue
            visit_stmt(child, kind)

    def visit_stmt(child: ast.AST, kind: str) -> None:
        targets: list[str] = []
        if isinstance(child, ast.Import):
            targets = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                anchor = base[: len(base) - (child.level - 1)]
                mod = ".".join(anchor + ([child.module] if child.module else []))
            else:
                mod = child.module or ""
            subs = [f"{mod}.{a.name}" for a in child.names if f"{mod}.{a.name}" in known]
            targets = subs if len(subs) == len(child.names) else [mod, *subs]
        for target in targets:
            if target == package or target.startswith(package + "."):
                found.append(Import(name, target, kind, child.lineno))
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            kind = "local"
        visit(child, kind)

    visit(tree, "module")
    return found


def collect_imports(root: Path, package: str = "minidisc") -> list[Import]:
    """Every import of a ``package`` module by a module under ``root/package``.

    ``from a import b`` where ``a.b`` is itself a module counts as an import of ``a.b``;
    relative imports are resolved. Raises ``SyntaxError`` on a module that does not parse.
    """
    files = sorted((root / package).rglob("*.py"))
    known = {module_name(p, root) for p in files}
    found: list[Import] = []
    for path in files:
        name = module_name(path, root)
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found += _imports_of(tree, name, base, known, package)
    return found


def upward_imports(
    imports: Iterable[Import], layers: Mapping[str, int], exceptions: Mapping[tuple[str, str], str]
) -> list[str]:
    """Imports into a higher layer (or from/to a unit with no layer) that are not excepted."""
    problems = []
    for imp in imports:
        src, dst = unit_of(imp.importer), unit_of(imp.target)
        if src == dst or (imp.importer, imp.target) in exceptions:
            continue
        if src not in layers or dst not in layers:
            problems.append(f"{imp.importer}:{imp.line}: unit without a layer ({src} -> {dst})")
        elif layers[dst] > layers[src]:
            problems.append(
                f"{imp.importer}:{imp.line} ({imp.kind}) imports {imp.target}: "
                f"layer {layers[src]} ({src}) -> layer {layers[dst]} ({dst})"
            )
    return problems


def unit_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Cycles between units counting module-level imports: each strongly connected
    component of more than one unit, sorted (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        src, dst = unit_of(imp.importer), unit_of(imp.target)
        if imp.kind == "module" and src != dst:
            graph[src].add(dst)
            graph.setdefault(dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(components)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return collect_imports(SRC)


# --- the package -----------------------------------------------------------------------


def test_every_unit_has_a_layer(imports):
    units = {unit_of(module_name(p, SRC)) for p in (SRC / "minidisc").rglob("*.py")}
    assert units - set(LAYERS) == set(), "add the new unit to LAYERS and docs/architecture.md"
    assert set(LAYERS) - units == set(), "a unit in LAYERS no longer exists"


def test_no_import_goes_up_a_layer(imports):
    assert upward_imports(imports, LAYERS, EXCEPTIONS) == []


def test_every_exception_is_still_needed(imports):
    present = {(i.importer, i.target) for i in imports}
    assert set(EXCEPTIONS) - present == set(), "remove the stale exception(s)"
    # and none of them runs at import time
    runtime = {(i.importer, i.target) for i in imports if i.kind == "module"}
    assert set(EXCEPTIONS) & runtime == set()


def test_no_cycle_between_units_at_module_level(imports):
    assert unit_cycles(imports) == []


def test_named_rules(imports):
    """The rules docs/architecture.md names outright; no exception waives them."""
    lower = {"training", "objectives", "elastic", "models", "tasks"}
    for imp in imports:
        src, dst = unit_of(imp.importer), unit_of(imp.target)
        where = f"{imp.importer}:{imp.line} imports {imp.target}"
        if src in lower:
            assert dst not in {"schedules", "cli"}, where
        if src == "elastic":
            assert dst not in {"training", "schedules"}, where
        if src == "report":
            assert imp.target != "minidisc.schedules.minidisc", where
        if src not in ("cli", "api"):  # the API runs the commands' own code
            assert dst != "cli", where


def test_the_checker_sees_the_kinds_of_imports_in_the_package(imports):
    # guards the checker against silently seeing nothing
    kinds = {(i.importer, i.target): i.kind for i in imports}
    assert kinds[("minidisc.training.distill", "minidisc.models")] == "module"
    assert kinds[("minidisc.cli.compress", "minidisc.schedules.minidisc")] == "local"
    assert kinds[("minidisc.report.compress", "minidisc.runfolder.run")] == "typing"
    assert kinds[("minidisc.runfolder.run", "minidisc")] == "module"  # from minidisc import __version__


# --- the checker, on synthetic trees ---------------------------------------------------


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_flags_an_upward_import_at_any_depth(tmp_path):
    root = _tree(
        tmp_path,
        {
            "minidisc/__init__.py": "",
            "minidisc/low/__init__.py": "",
            "minidisc/low/a.py": "def f():\n    if True:\n        from minidisc.high.b import g\n",
            "minidisc/high/__init__.py": "",
            "minidisc/high/b.py": "from ..low import a\n",
        },
    )
    found = collect_imports(root)
    assert {(i.importer, i.target, i.kind) for i in found} == {
        ("minidisc.low.a", "minidisc.high.b", "local"),
        ("minidisc.high.b", "minidisc.low.a", "module"),
    }
    layers = {"(root)": 0, "low": 0, "high": 1}
    problems = upward_imports(found, layers, {})
    assert len(problems) == 1 and "minidisc.low.a:3 (local) imports minidisc.high.b" in problems[0]
    assert upward_imports(found, layers, {("minidisc.low.a", "minidisc.high.b"): "why"}) == []
    assert "without a layer" in upward_imports(found, {"low": 0}, {})[0]


def test_checker_finds_a_module_level_cycle_but_not_a_local_or_typing_one(tmp_path):
    files = {
        "minidisc/__init__.py": "",
        "minidisc/x/__init__.py": "from minidisc.y import thing\n",
        "minidisc/y/__init__.py": "thing = 1\n",
        "minidisc/y/m.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import minidisc.z\n",
        "minidisc/z.py": "def f():\n    import minidisc.y\n",
    }
    root = _tree(tmp_path / "a", files)
    found = collect_imports(root)
    assert unit_cycles(found) == []
    assert {i.kind for i in found if i.importer == "minidisc.y.m"} == {"typing"}
    files["minidisc/y/m.py"] = "from minidisc import x\n"  # y -> x -> y, module level
    assert unit_cycles(collect_imports(_tree(tmp_path / "b", files))) == [["x", "y"]]
