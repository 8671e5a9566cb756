"""The layout's import rules (DESIGN.md): no import cycle among the project's modules, and the
library packages never import gin or ray. Imports are read with `ast` (every import statement,
including those inside functions: a lazy import is still a dependency)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("walt_probe", "walt", "backbones", "readouts", "tasks", "probing", "pretraining", "search_spaces",
            "runners")
LIBRARY = ("walt_probe", "walt", "backbones", "readouts", "tasks", "probing", "pretraining")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, name: str) -> set[str]:
    """Every module name `path` imports (absolute; relative imports resolved against `name`)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import mod`
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for imported in _imports(path, name):
            # a.b.c -> the deepest project module it names (a.b.c, else a.b, else a)
            parts = imported.split(".")
            for k in range(len(parts), 0, -1):
                cand = ".".join(parts[:k])
                if cand in mods:
                    if cand != name:
                        deps.add(cand)
                    break
        # A package's __init__ importing its own submodules is how Python packages work; the
        # reverse edge (submodule -> its package) is only the package being initialised first.
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    stack: list[str] = []

    def visit(n):
        colour[n] = GREY
        stack.append(n)
        for d in sorted(graph[n]):
            if colour[d] == GREY:
                return stack[stack.index(d):] + [d]
            if colour[d] == WHITE:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        colour[n] = BLACK
        return None

    for n in sorted(graph):
        if colour[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return None


def test_the_walk_sees_imports_and_would_find_a_cycle():
    graph = _graph()
    assert "probing.cache" in graph["probing.extract"] and "runners.gin_setup" in graph["runners.cli"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("package", LIBRARY)
def test_library_packages_import_neither_gin_nor_ray(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in _imports(path, _module_name(path)):
            top = imported.split(".")[0]
            if top in ("gin", "ray"):
                bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("package", LIBRARY)
def test_library_packages_do_not_import_runners(package):
    bad = [f"{p.relative_to(ROOT)} imports {i}" for p in sorted((ROOT / package).rglob("*.py"))
           for i in _imports(p, _module_name(p)) if i.split(".")[0] in ("runners", "search_spaces")]
    assert not bad, "; ".join(bad)
