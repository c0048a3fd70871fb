"""The import graph points one way: core -> LLM access and runners -> stages, training,
evaluation -> the CLI. Read with `ast` (nothing is imported), so a cycle or an upward import
anywhere in the tree fails here, lazy imports inside functions included."""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("core", "pipeline", "training", "evaluation", "infra", "data")

# Layer of each group of modules, from the bottom; the longest matching prefix wins.
LAYERS = {
    "webinstruct": 0,
    "webinstruct.core": 0,
    "webinstruct.data": 0,
    "webinstruct.pipeline.llm": 1,
    "webinstruct.pipeline.runners": 1,
    "webinstruct.pipeline": 2,
    "webinstruct.training": 2,
    "webinstruct.evaluation": 2,
    "webinstruct.infra": 3,
}
# Packages: a cycle between two of them fails even within one layer.
UNITS = ("webinstruct.core", "webinstruct.pipeline.llm", "webinstruct.pipeline.runners",
         "webinstruct.pipeline.text", "webinstruct.pipeline.recall", "webinstruct.pipeline.extract",
         "webinstruct.pipeline.refine", "webinstruct.pipeline.augment", "webinstruct.pipeline.report",
         "webinstruct.pipeline", "webinstruct.training", "webinstruct.evaluation", "webinstruct.infra",
         "webinstruct.data")


def _longest(name: str, table) -> str:
    best = ""
    for prefix in table:
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return best


def layer(module: str) -> int:
    return LAYERS[_longest(module, LAYERS)]


def unit(module: str) -> str:
    return _longest(module, UNITS) or module


def modules() -> dict[str, pathlib.Path]:
    out = {"webinstruct": ROOT / "webinstruct" / "__init__.py"}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(("webinstruct",) + parts)] = path
    return out


def imports(module: str, path: pathlib.Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import of a project module, relative ones resolved."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names]
    return found


def edges(mods: dict[str, pathlib.Path]) -> list[tuple[str, str, int]]:
    out = []
    for mod, path in mods.items():
        for target, line in imports(mod, path):
            if target.split(".")[0] in FOLDERS:
                out.append((mod, target, line))  # a bare `import pipeline...`: flagged below
            elif target.startswith("webinstruct") and (target in mods or target.rsplit(".", 1)[0] in mods):
                out.append((mod, target if target in mods else target.rsplit(".", 1)[0], line))
    return out


def upward(edge_list) -> list[str]:
    return [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)}) at line {n}"
            for m, t, n in edge_list if t.startswith("webinstruct") and layer(t) > layer(m)]


def cycles(edge_list) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for m, t, _ in edge_list:
        a, b = unit(m), unit(t)
        if a != b and not (b.startswith(a + ".") or a.startswith(b + ".")):
            graph.setdefault(a, set()).add(b)
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_import_uses_the_one_namespace():
    bare = [f"{m} imports {t} at line {n}" for m, t, n in edges(modules()) if t.split(".")[0] in FOLDERS]
    assert not bare, "import through webinstruct.*:\n" + "\n".join(bare)


def test_no_upward_import():
    bad = upward(edges(modules()))
    assert not bad, "\n".join(bad)


def test_no_cycle_between_packages():
    assert not cycles(edges(modules()))


def test_the_checker_catches_an_upward_import_and_a_cycle():
    # The rules themselves: an import from core into a stage, and two packages importing each other.
    assert upward([("webinstruct.core.schema", "webinstruct.pipeline.recall.job", 3)])
    assert upward([("webinstruct.pipeline.llm.client", "webinstruct.pipeline.refine.job", 1)])
    assert not upward([("webinstruct.infra.cli", "webinstruct.core.config", 1)])
    assert cycles([("webinstruct.training.data", "webinstruct.evaluation.run", 1),
                   ("webinstruct.evaluation.run", "webinstruct.training.trainer", 2)])
    assert not cycles([("webinstruct.evaluation.run", "webinstruct.core.registry", 1)])


@pytest.mark.parametrize("rel", ["core/config.py", "pipeline/recall/job.py", "infra/cli.py"])
def test_relative_imports_are_resolved(rel):
    path = ROOT / rel
    mod = "webinstruct." + ".".join(pathlib.Path(rel).with_suffix("").parts)
    assert all(t.startswith("webinstruct.") or "." not in t or t.split(".")[0] not in FOLDERS
               for t, _ in imports(mod, path))
