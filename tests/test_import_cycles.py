"""No import cycle among the modules of ``workbench`` (issue 31), lazy imports included.

The graph is read from the source with :mod:`ast`, nothing imported: an edge ``a -> b`` for every
``import`` / ``from ... import`` of a workbench module in ``a``, at module level or inside a function
or method (a lazy import still ties the two modules together: it only hides the cycle until the
function runs). Imports under ``if TYPE_CHECKING:`` are type-only and skipped. ``from pkg import name``
is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (its ``__init__``). Importing
``pkg.sub.mod`` first runs ``pkg/sub/__init__.py``: that package is an edge too, unless it is one of
the importer's own packages (already running when the importer runs, so it adds no order).
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "workbench"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package under ``root``: dotted name -> file (``__init__.py`` for a package)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)  # the ``else:`` of a type-only block runs
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The workbench modules that module ``name`` (its source at ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in modules)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            if f"{source}.{alias.name}" in modules:
                edges.add(f"{source}.{alias.name}")
            elif source in modules:
                edges.add(source)
    own = _packages_of(name)
    edges |= {p for edge in edges for p in _packages_of(edge) if p in modules and p not in own}
    edges.discard(name)
    return edges


def _packages_of(name: str) -> set[str]:
    """The packages whose ``__init__`` runs before module ``name``: ``a.b.c`` -> ``{"a", "a.b"}``."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the workbench modules it imports (see the module docstring for what counts)."""
    files = module_files(root)
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` for every strongly connected group of modules (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth <= number of modules (a few hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(_one_cycle(graph, set(group)) for group in groups)


def _one_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module, by breadth-first search inside the group."""
    start = min(group)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in the group {sorted(group)}")  # Tarjan's groups always have one


def test_no_import_cycle_in_workbench() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles among workbench modules (lazy imports included):\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles)


def test_the_graph_holds_the_known_edges() -> None:
    """The reader sees module-level, relative and function-level imports (else the test above proves nothing)."""
    graph = import_graph()
    assert len(graph) > 100
    assert "workbench.errors" in graph["workbench"]  # module level, in a package's __init__
    assert "workbench.models.supernet.sizes" in graph["workbench.cli"]  # imported inside the command's function
    assert "workbench.models.whisper.ct2" in graph["workbench.models.whisper.weights"]  # likewise
    # a module of another package runs that package's __init__ first; one's own packages are no edge
    assert {"workbench.workflow.busy", "workbench.workflow"} <= graph["workbench.live.corrections"]
    assert "workbench.live" not in graph["workbench.live.corrections"]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.mark.parametrize(("files", "cycle"), [
    # a lazy import inside a function closes the cycle
    ({"a.py": "import pkg.b\n", "b.py": "def f():\n    from pkg import a\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
    # relative imports, through a subpackage's __init__
    ({"a.py": "from .sub import thing\n", "sub/__init__.py": "from ..a import x\n"},
     ["pkg.a", "pkg.sub", "pkg.a"]),
    # a method's import, three modules round
    ({"a.py": "from pkg.b import y\n", "b.py": "from pkg import c\n",
      "c.py": "class C:\n    def m(self):\n        import pkg.a\n"}, ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]),
    # type-only imports do not count; the else branch does
    ({"a.py": "import pkg.b\n",
      "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"}, None),
    ({"a.py": "import pkg.b\n",
      "b.py": "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    import pkg.a\n"},
     ["pkg.a", "pkg.b", "pkg.a"]),
    # importing a module of another package runs that package's __init__, which closes the cycle
    ({"a/__init__.py": "", "a/x.py": "def f():\n    from pkg.b.y import g\n",
      "b/__init__.py": "from pkg.b.z import h\n", "b/y.py": "", "b/z.py": "from pkg.a.x import f\n"},
     ["pkg.a.x", "pkg.b", "pkg.b.z", "pkg.a.x"]),
    # one's own package's __init__ is no edge: it is already running
    ({"a/__init__.py": "from pkg.a.x import f\n", "a/x.py": "from pkg.a.y import g\n", "a/y.py": ""}, None),
])
def test_cycles_are_found_in_a_small_package(tmp_path: Path, files: dict[str, str], cycle: list[str] | None) -> None:
    found = find_cycles(import_graph(_package(tmp_path, files)))
    assert found == ([cycle] if cycle else [])
