"""The floors of chalklm: no module imports itself back through others, and no floor
imports a higher one (DESIGN.md). Read from the source with `ast`, so an import inside a
function (imported on first use) counts as much as one at the top of a file.

  errors, files, config the ground floor: plain Python, importing only each other
  scratch, tokenizers   import nothing of chalklm but the ground floor (config is the model
                        contract both engines build from)
  models                imports neither training nor cli
  cli                   the top floor: only chalklm/__main__.py (and cli itself) imports it
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "chalklm"
BASE = ("chalklm.errors", "chalklm.files", "chalklm.config")  # the ground floor

# Cycles still open elsewhere in a redesign: none now. Should one ever be listed here, the
# test below fails once it is gone until its line goes too, so the list only shrinks.
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every chalklm module `name` imports, anywhere in its file: `from pkg import mod`
    counts as importing pkg.mod when that is a module, else as importing pkg."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..y import z
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
    return {m for m in found if m.split(".")[0] == "chalklm" and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def cycles() -> list[set[str]]:
    """The groups of modules that import each other, round and round (Tarjan's strongly
    connected components, kept where a group has more than one module)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v] & MODULES.keys():
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while not group or v not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            if len(group) > 1:
                found.append(group)

    for name in MODULES:
        if name not in index:
            visit(name)
    return found


def describe(group: set[str]) -> str:
    return "; ".join(f"{a} -> {b}" for a in sorted(group) for b in sorted(GRAPH[a] & group))


def test_the_reader_sees_imports_inside_functions_too():
    assert "chalklm.generation.runners" in GRAPH["chalklm.training.engines"]  # in a method
    assert "chalklm.tokenizers.bpe" in GRAPH["chalklm.tokenizers"]  # in __getattr__
    assert GRAPH["chalklm.__main__"] >= {"chalklm.cli"}


def test_no_module_imports_itself_back():
    new = [g for g in cycles() if g not in KNOWN_CYCLES]
    assert not new, "import cycles: " + " | ".join(describe(g) for g in new)


def test_the_known_cycles_are_still_listed_only_while_they_exist():
    gone = [g for g in KNOWN_CYCLES if g not in cycles()]
    assert not gone, f"these cycles are gone; drop them from KNOWN_CYCLES: {gone}"


def test_the_ground_floor_imports_only_itself():
    for name in BASE:
        assert GRAPH[name] <= set(BASE), f"{name} imports {sorted(GRAPH[name] - set(BASE))}"


@pytest.mark.parametrize("floor", ["chalklm.scratch", "chalklm.tokenizers"])
def test_the_glass_box_and_the_tokenizers_stand_alone(floor):
    upward = {f"{name} -> {target}" for name in MODULES if within(name, floor)
              for target in GRAPH[name]
              if not within(target, floor) and target not in BASE}
    assert not upward, f"{floor} imports beyond the ground floor: {sorted(upward)}"


def test_the_fast_engine_imports_neither_training_nor_the_cli():
    upward = {f"{name} -> {target}" for name in MODULES if within(name, "chalklm.models")
              for target in GRAPH[name]
              if within(target, "chalklm.training") or within(target, "chalklm.cli")}
    assert not upward, f"models import a higher floor: {sorted(upward)}"


def test_the_cli_is_the_top_floor():
    below = {f"{name} -> {target}" for name in MODULES
             if not within(name, "chalklm.cli") and name != "chalklm.__main__"
             for target in GRAPH[name] if within(target, "chalklm.cli")}
    assert not below, f"only chalklm/__main__.py may import the CLI: {sorted(below)}"
