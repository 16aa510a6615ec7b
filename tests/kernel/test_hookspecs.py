"""The hookspecs are documented, and every hook has a test of its own."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from simpletuner.core import hookspecs
from simpletuner.core.specs import Kind

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]
TESTS_ROOT = Path(__file__).resolve().parents[1]


def test_one_hook_per_kind() -> None:
    assert sorted(HOOKS) == sorted(kind.hook_name for kind in Kind)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    for section in ("When:", "Parameters:", "register:", "Returns:", "Example::", "@hookimpl"):
        assert section in doc, f"{hook}'s docstring lacks {section!r}"
    assert len(doc.splitlines()[0]) > 20, f"{hook}'s docstring lacks a summary line"
    assert list(inspect.signature(getattr(hookspecs, hook)).parameters) == ["register"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_of_its_own(hook: str) -> None:
    pattern = re.compile(rf"^def test_{hook}\w*\(", re.MULTILINE)
    found = [p for p in TESTS_ROOT.rglob("test_*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert found, f"no test function named test_{hook}... exists under tests/"
