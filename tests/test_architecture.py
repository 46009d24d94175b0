"""The shape of the package (ARCHITECTURE.md): no import cycles, no command importing another.

The import graph is read statically, imports inside functions included (that is where a cycle
hides from a plain ``import``): an edge goes from a module to every package module it names.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deepmad_evo"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports anywhere in its body}."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # "from pkg import sub" names a submodule when one exists, else an attribute of pkg.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "deepmad_evo.model" in graph["deepmad_evo.trace"] or "deepmad_evo.model" in graph["deepmad_evo.commands.build"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_package_import_resolves():
    """Imports inside functions run late; a module moved into a package must not leave one dangling."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    missing = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
                if base not in modules:
                    missing.append(f"{name}:{node.lineno} imports {base}")
    assert not missing


def test_no_import_cycles():
    graph = import_graph()
    # A package's __init__ re-exports its modules; those importing siblings is the usual shape, not a cycle.
    graph = {m: {n for n in e if not m.startswith(n + ".")} for m, e in graph.items()}
    assert find_cycle(graph) is None


def test_no_command_imports_another():
    commands = {m: e for m, e in import_graph().items() if m.startswith("deepmad_evo.commands.")}
    shared = {"deepmad_evo.commands.common", "deepmad_evo.commands.progress"}
    for name, edges in commands.items():
        others = {e for e in edges if e in commands and e not in shared}
        assert not others, f"{name} imports the command(s) {sorted(others)}; shared code goes to commands/common.py"
