"""The package's shape: no import circles (type-only and function-level imports too), small modules, a lone client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ws_diag"
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every ws_diag module ``name`` imports, wherever the import statement is (``if TYPE_CHECKING:``, functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from pkg import name` imports the submodule pkg.name when there is one.
            found.update(
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target for alias in node.names
            )
    return {module for module in found if module in modules and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_graph_sees_type_only_and_function_level_imports() -> None:
    """The import graph counts imports under TYPE_CHECKING and inside functions (a cycle hidden there is found)."""
    graph = _graph()
    assert "ws_diag.health.probes.http" in graph["ws_diag.health.probes"]  # under TYPE_CHECKING
    assert "ws_diag.demo" in graph["ws_diag.cli"]  # inside a function
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    """No ws_diag module imports itself through others, counting type-only and function-level imports."""
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_is_too_long() -> None:
    """Every module of the package stays under 450 lines: one job per room."""
    lengths = {name: len(path.read_text("utf-8").splitlines()) for name, path in _modules().items()}
    too_long = {name: lines for name, lines in lengths.items() if lines > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_the_client_imports_nothing_of_the_server_side() -> None:
    """`import ws_diag.client` loads neither pydantic nor the middleware nor the health checker."""
    code = (
        "import sys, ws_diag.client\n"
        "server = ('pydantic', 'pydantic_settings', 'ws_diag.middleware', 'ws_diag.health', 'ws_diag.settings')\n"
        "print(sorted(name for name in server if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_the_top_level_names_import_lazily() -> None:
    """`import ws_diag` imports no submodule; each public name still resolves from the top level."""
    code = (
        "import sys, ws_diag\n"
        "print(sorted(name for name in sys.modules if name.startswith('ws_diag.')))\n"
        "missing = [name for name in ws_diag.__all__ if getattr(ws_diag, name, None) is None]\n"
        "print(missing, sorted(ws_diag.__all__) == ws_diag.__all__, set(ws_diag.__all__) <= set(dir(ws_diag)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines() == ["[]", "[] True True"]
