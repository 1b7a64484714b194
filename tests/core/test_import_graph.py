"""The house's imports, read from the source with `ast` (function-level imports included): no module
of wow_core, tasks or flows is in an import circle, no layer imports one above it (wow_core < tasks <
flows), and wow_core never imports Prefect. Run alone: `.venv/bin/python -m pytest tests/core/test_import_graph.py`."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("wow_core", "tasks", "flows")  # lowest first


def modules() -> dict[str, Path]:
    out = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path) -> set[str]:
    """Every module name that `name`'s source imports, absolute; `from a import b` names a.b when b is a module."""
    names, package = set(), name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (a name resolves to its longest known prefix)."""
    known = modules()
    out = {}
    for name, path in known.items():
        edges = set()
        for target in imported(name, path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        out[name] = edges
    return out


def strongly_connected(g: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one module (a circle)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
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
            if len(component) > 1:
                found.append(component)
    for v in g:
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_the_reader_of_this_test_finds_circles():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    g = graph()
    assert {"flows.grid", "tasks.stages", "wow_core.config", "wow_core.datasets.nlgraph"} <= set(g)
    assert strongly_connected(g) == []


def test_no_layer_imports_one_above_it():
    upward = sorted(f"{m} -> {t}" for m, targets in graph().items() for t in targets if layer(t) > layer(m))
    assert upward == []


def test_wow_core_never_imports_prefect():
    core = {name: path for name, path in modules().items() if name.startswith("wow_core")}
    prefect = sorted(name for name, path in core.items()
                     if any(n == "prefect" or n.startswith("prefect.") for n in imported(name, path)))
    assert prefect == []
