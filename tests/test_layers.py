"""The project's layering, as a test: which package may import which, no import cycles, no TensorFlow on the model path.

Layers, lowest first: paligemma (0) < datasets (1) < evaluators (2) < trainers (3) < tools, configs (4). A module
may import its own layer and the layers below it, never one above. Every `.py` of these packages is parsed with
`ast` (imports at module level and inside functions/classes, relative imports resolved; imports under
`if TYPE_CHECKING:` are skipped, they never run) into a graph of project modules.
"""

import ast
import functools
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANKS = {"paligemma": 0, "datasets": 1, "evaluators": 2, "trainers": 3, "tools": 4, "configs": 4}


def _module_files() -> dict[str, tuple[str, bool]]:
    """Module name -> (file path, is a package `__init__`) for every .py under the layered packages."""
    out = {}
    for package in RANKS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, package)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                parts = os.path.relpath(os.path.join(dirpath, name), ROOT)[:-3].split(os.sep)
                is_package = parts[-1] == "__init__"
                if is_package:
                    parts = parts[:-1]
                out[".".join(parts)] = (os.path.join(dirpath, name), is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node of the tree (any depth), except those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules) -> str | None:
    """The most specific project module that `import name` loads (`a.b.c` -> `a.b` when c is not a module)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


@functools.cache
def import_graph() -> dict[str, dict[str, int]]:
    """Project module -> {imported project module: line of the first such import}."""
    modules = _module_files()
    graph = {}
    for module, (path, is_package) in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        package = module if is_package else module.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _imports(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = package.split(".")
                    if node.level > 1:
                        base_parts = base_parts[: -(node.level - 1)]
                    base = ".".join(p for p in [*base_parts, node.module or ""] if p)
                else:
                    base = node.module or ""
                # `from a.b import c`: c is a submodule (an edge to a.b.c) or a name of a.b (an edge to a.b).
                targets = [f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != module:
                    edges.setdefault(resolved, node.lineno)
        graph[module] = edges
    return graph


def _rank(module: str) -> int:
    return RANKS[module.split(".")[0]]


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every elementary cycle (as a chain a -> b -> ... -> a, starting at its smallest module), sorted."""
    # Strongly connected components (Tarjan), then the elementary cycles inside each non-trivial one.
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def strongconnect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            components.append(component)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    cycles = []

    def walk(path, allowed):
        # Extends `path` (from its smallest module, path[0]) through `allowed` modules back to path[0].
        for w in sorted(graph[path[-1]]):
            if w == path[0]:
                cycles.append([*path, w])
            elif w in allowed and w not in path:
                walk([*path, w], allowed)

    for component in components:
        for start in sorted(component) if len(component) > 1 else ():
            walk([start], {m for m in component if m > start})  # each cycle once, from its smallest module
    return sorted(cycles)


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """`module -> module (file:line)` for every import of a higher layer."""
    modules = _module_files()
    bad = []
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            if _rank(target) > _rank(module):
                path = os.path.relpath(modules[module][0], ROOT)
                bad.append(f"{module} -> {target}  ({path}:{line})")
    return bad


def test_graph_sees_module_and_function_level_and_relative_imports():
    graph = import_graph()
    assert {"paligemma.model", "datasets.pp", "trainers.step", "tools.predict", "configs.transfer.easyvqa"} <= set(
        graph
    )
    # Every layer above the model builds on it.
    for package in ("datasets", "evaluators", "trainers", "tools"):
        assert any(t.startswith("paligemma.") for m, e in graph.items() if m.startswith(package + ".") for t in e)
    # Every layered package is there, and every edge stays inside the project.
    assert {m.split(".")[0] for m in graph} == set(RANKS)
    assert all(t in graph for edges in graph.values() for t in edges)


def test_resolution_of_relative_and_nested_imports(tmp_path, monkeypatch):
    """The parser on a small made-up tree: relative imports, `from pkg import submodule`, imports in functions."""
    files = {
        "paligemma/__init__.py": "",
        "paligemma/a.py": "from . import b\nfrom .sub import c\n",
        "paligemma/b.py": "def f():\n    from paligemma.sub.c import X\n    import numpy\n",
        "paligemma/sub/__init__.py": "from ..b import f\n",
        "paligemma/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from trainers import t\n",
        "trainers/__init__.py": "",
        "trainers/t.py": "import paligemma.a\nfrom paligemma import nothing_here\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "RANKS", {"paligemma": 0, "trainers": 3})
    import_graph.cache_clear()
    try:
        graph = {m: set(edges) for m, edges in import_graph().items()}
    finally:
        import_graph.cache_clear()
    assert graph == {
        "paligemma": set(),
        "paligemma.a": {"paligemma.b", "paligemma.sub.c"},
        "paligemma.b": {"paligemma.sub.c"},
        "paligemma.sub": {"paligemma.b"},
        "paligemma.sub.c": set(),  # the TYPE_CHECKING import never runs
        "trainers": set(),
        "trainers.t": {"paligemma.a", "paligemma"},
    }
    assert find_cycles({"a": {"b": 1}, "b": {"a": 1, "c": 1}, "c": {"b": 1}}) == [["a", "b", "a"], ["b", "c", "b"]]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    chains = "\n".join("  " + " -> ".join(c) for c in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) among the project's modules:\n{chains}"


def test_no_upward_imports():
    bad = upward_imports(import_graph())
    order = "paligemma < datasets < evaluators < trainers < tools, configs"
    assert not bad, f"{len(bad)} import(s) of a higher layer ({order}):\n  " + "\n  ".join(bad)


def test_model_decoding_and_prediction_do_not_import_tensorflow():
    """The model, decoding, checkpoints, the train step and the predict CLI run without TensorFlow installed."""
    code = textwrap.dedent("""
        import sys, traceback
        first = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" and not first:
                    first.append("".join(traceback.format_list(
                        [f for f in traceback.extract_stack() if "importlib" not in f.filename][-12:])))
                return None

        sys.meta_path.insert(0, Watch())
        for name in ["paligemma.model", "paligemma.decode", "paligemma.checkpoints", "trainers.step",
                     "tools.predict"]:
            __import__(name)
            if "tensorflow" in sys.modules:
                print(f"importing {name} imports tensorflow, from:\\n{first[0] if first else '?'}")
                sys.exit(1)
        print("NO_TF")
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("NO_TF"), res.stdout + res.stderr[-3000:]
