"""The import rules of udass: every import in udass/ (module-level and inside functions) goes down
the layers written in docs/architecture.md ("Layers": base -> data -> models -> method -> train ->
experiments -> interface), no module imports a module that imports it back (no cycle), a module
over 600 lines says why at its top, and an import inside a function says why in a comment.

The layers are read from docs/architecture.md, so the document and the check cannot drift
apart. `check` takes a source tree and a layer table, so the tests below also show that it
reports a planted back-arrow and a planted cycle.
"""
from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
MAX_LINES = 600
LONG_REASON = "over 600 lines"   # what a longer module's docstring says, with the reason


# ----------------------------------------------------------------------------------- the checker
def read_layers(doc: Path = DOC) -> list[tuple[str, tuple[str, ...]]]:
    """[(layer, module prefixes)] from the indented block under "## Layers", lowest layer first.
    A line is `<layer> <module> <module> ...`; a line that starts with a module continues the
    layer above; text after `#` is a comment."""
    text = doc.read_text(encoding="utf-8")
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    layers: list[tuple[str, list[str]]] = []
    for line in section.splitlines():
        if not line.startswith("    ") or not line.strip():
            continue
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0].startswith("udass"):
            layers[-1][1].extend(words)
        else:
            layers.append((words[0], list(words[1:])))
    return [(name, tuple(mods)) for name, mods in layers]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """{module: {imported udass module: line}} of every .py under the package folder `root`,
    counting imports inside functions too. `from udass.x import y` is an arrow to udass.x.y when
    that is a module, else to udass.x."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        edges: dict[str, int] = {}
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                if t.split(".")[0] == root.name and t != mod:
                    # the innermost module that exists (import udass.a.b names udass.a.b)
                    while t not in files and "." in t:
                        t = t.rsplit(".", 1)[0]
                    if t != mod:
                        edges.setdefault(t, node.lineno)
        graph[mod] = edges
    return graph


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> int | None:
    """Index of the layer whose prefix matches `module` longest (a prefix matches itself and its
    submodules; the package root `udass` matches only itself)."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            hit = module == p or ("." in p and module.startswith(p + "."))
            if hit and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(root: Path, layers: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """Every violation of the import rules in the package folder `root`, one line each."""
    graph = import_graph(root)
    problems = [f"{m}: no layer in docs/architecture.md" for m in graph if layer_of(m, layers) is None]
    for mod, edges in sorted(graph.items()):
        here = layer_of(mod, layers)
        for target, line in sorted(edges.items()):
            there = layer_of(target, layers)
            if here is not None and there is not None and there > here:
                problems.append(f"{mod}:{line} imports {target}: {layers[here][0]} -> "
                                f"{layers[there][0]} goes up the layers")
    problems += [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    return problems


# ----------------------------------------------------------------------------------- the rules
def test_the_layers_are_written_in_the_document():
    names = [name for name, _ in read_layers()]
    assert names == ["base", "data", "models", "method", "train", "experiments", "interface"]


def test_imports_follow_the_layers_without_cycles():
    assert check(REPO / "udass", read_layers()) == []


def test_the_checker_reports_a_planted_back_arrow_and_a_planted_cycle(tmp_path):
    pkg = tmp_path / "udass"
    shutil.copytree(REPO / "udass", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    layers = read_layers()
    assert check(pkg, layers) == []
    # data reaching up to the experiments, inside a function (a local import counts)
    flow = pkg / "data" / "flow.py"
    flow.write_text(flow.read_text() + "\n\ndef _planted():\n    from udass.experiments import run_table\n")
    # models importing the trainer at module level, as `import udass.train`
    resnet = pkg / "models" / "resnet.py"
    resnet.write_text("import udass.train.loop\n" + resnet.read_text())
    # a cycle inside one layer: io -> config -> ... -> errors -> io
    errors = pkg / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom udass.io import write_text  # noqa\n")
    problems = check(pkg, layers)
    assert any(p.startswith("udass.data.flow:") and "imports udass.experiments: data -> experiments" in p
               for p in problems), problems
    assert any(p.startswith("udass.models.resnet:1 imports udass.train.loop: models -> train") for p in problems)
    assert any(p.startswith("import cycle:") and "udass.errors" in p and "udass.io" in p for p in problems)
    # a module no layer names
    (pkg / "stray.py").write_text("")
    assert "udass.stray: no layer in docs/architecture.md" in check(pkg, layers)


def test_the_layer_of_a_module_is_its_longest_prefix():
    layers = [("base", ("udass", "udass.config")), ("data", ("udass.data",)), ("top", ("udass.data.x",))]
    assert layer_of("udass", layers) == 0 and layer_of("udass.config", layers) == 0
    assert layer_of("udass.data.flow", layers) == 1 and layer_of("udass.data.x.y", layers) == 2
    assert layer_of("udass.configs", layers) is None and layer_of("udass.other", layers) is None


SOURCES = sorted((REPO / "udass").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_modules_are_short_or_say_why(path):
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert lines <= MAX_LINES or LONG_REASON in doc, \
        f"{path.relative_to(REPO)}: {lines} lines; split it or say at its top why it is {LONG_REASON}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_an_import_inside_a_function_says_why(path):
    """Imports sit at module top; one inside a function (a heavy optional dependency, a
    subcommand's stack) has a comment between the `def` and the import saying so."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        local = [n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
        if local:
            above = lines[fn.lineno:local[0].lineno - 1]
            assert any(re.match(r"\s*#.*import", s) for s in above), \
                f"{path.relative_to(REPO)}:{local[0].lineno}: a local import in {fn.name} without a comment"
