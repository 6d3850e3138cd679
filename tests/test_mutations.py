"""The mutation list (tests/mutations.py): every planted rule-break still names code that exists
(fast), and every one is caught by the tests (slow: `make test-slow`, about 5 minutes)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutations  # noqa: E402


def test_every_planted_break_names_code_that_occurs_exactly_once():
    names = [m.name for m in mutations.MUTATIONS]
    assert len(names) == len(set(names)) and len(names) >= 25
    for m in mutations.MUTATIONS:
        mutations.check_planted(m)


def test_the_method_doc_lists_every_rule_and_its_mutation():
    doc = (mutations.REPO / "docs" / "method.md").read_text()
    missing = [m.name for m in mutations.MUTATIONS if f"`{m.name}`" not in doc]
    assert not missing, f"docs/method.md does not list the mutations {missing}"


@pytest.mark.slow
def test_every_planted_rule_break_is_caught():
    results = mutations.run()
    survived = [n for n, r in results.items() if r != "caught"]
    assert not survived, f"rule-breaks the tests do not catch: {survived}"
