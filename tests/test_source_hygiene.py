"""Static checks on our own source: a module that defines a top-level function or class twice
silently keeps only the second (this once broke every table: a Markdown formatter shadowed the
mean/std helper of the same name in udass/experiments.py)."""
from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("udass", "benchmarks", "tests") for p in (REPO / d).rglob("*.py"))


def _redefined(body: list[ast.stmt]) -> list[str]:
    names = collections.Counter(n.name for n in body
                                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    return sorted(k for k, v in names.items() if v > 1)


def test_the_check_sees_a_redefinition():
    tree = ast.parse("def f():\n    return 1\n\ndef f():\n    return 2\n")
    assert _redefined(tree.body) == ["f"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_name_is_defined_twice(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert _redefined(tree.body) == [], f"{path.relative_to(REPO)}: top-level names defined twice"
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        assert _redefined(cls.body) == [], f"{path.relative_to(REPO)}: {cls.name} defines a method twice"


SYNTHETIC = sorted((REPO / "udass/data/synthetic").glob("*.py"))


@pytest.mark.parametrize("path", SYNTHETIC, ids=lambda p: p.name)
def test_the_synthetic_package_has_short_modules_with_imports_at_the_top(path):
    """udass/data/synthetic is split by concern: each module under 600 lines, imports at module top
    (a local import only for a heavy optional dependency, with a comment above it saying so)."""
    lines = path.read_text().splitlines()
    assert len(lines) <= 600, f"{path.name}: {len(lines)} lines"
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        local = [n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
        if local:
            above = lines[fn.lineno:local[0].lineno - 1]
            assert any(s.strip().startswith("#") and "import" in s for s in above), \
                f"{path.name}:{local[0].lineno}: a local import in {fn.name} without a comment"
