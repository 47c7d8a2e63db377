"""The package's shape: no import cycle, the CLI on top, the terminal libraries only in the CLI layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hfbatch"
#: Modules that may talk to the terminal: only they import click and tqdm.
CLI_LAYER = {"hfbatch.cli", "hfbatch.cli_tools", "hfbatch.progress"}
MAX_LINES = 450


def module_name(path: Path) -> str:
    """The dotted name of a module file of the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` except those under `if TYPE_CHECKING:` (type-only imports are not dependencies)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports_of(path: Path) -> set[str]:
    """Every module a file imports at run time, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the hfbatch modules it imports."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in files and m != name} for name, path in files.items()}


def test_no_import_cycle() -> None:
    """No module of hfbatch imports, directly or not, a module that imports it back."""
    edges = graph()
    # A package's __init__ re-exports its modules; an import of a submodule runs the package's
    # __init__ first, which is not a dependency of the submodule on its siblings.
    for name in edges:
        edges[name] = {m for m in edges[name] if not name.startswith(m + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_nothing_below_imports_the_cli_or_the_runner() -> None:
    """The CLI is imported only by `python -m hfbatch`; the runner only by the CLI and the lazy exports."""
    for name, deps in graph().items():
        if name != "hfbatch.__main__":
            assert "hfbatch.cli" not in deps, name
        if name not in ("hfbatch.cli", "hfbatch"):
            assert "hfbatch.runner" not in deps, name


def test_only_the_cli_layer_imports_click_and_tqdm() -> None:
    """Only cli.py, cli_tools.py and progress.py touch the terminal libraries."""
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        terminal = {m for m in imports_of(path) if m.split(".")[0] in ("click", "tqdm")}
        assert not terminal or name in CLI_LAYER, f"{name} imports {terminal}"


def test_modules_stay_small() -> None:
    """No module grows past about 400 lines."""
    sizes = {module_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
