"""Under ``CI=true`` a skipped test fails the run: CI installs every package and Debian binary the tests use, so a
skip there means something is missing (slapd, chromium, PostgreSQL, a Python package) and a part of the suite
silently did not run. The failure carries the skip's reason, which names what is missing.

The hooks are imported by ``tests/conftest.py``. Expected failures (``xfail``) are not skips and are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def in_ci() -> bool:
    """Whether the run is a CI run (``CI=true``, as CI services set it; ``1`` too)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.longrepr = f"skipped, but under CI=true every test must run; install what is missing: {_reason(report)}"
    report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A skip (a skip mark, or ``pytest.skip`` in a fixture or the test) becomes a failure under CI."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    """A module skipped whole (``pytest.importorskip``, ``pytest.skip(allow_module_level=True)``) fails too."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if in_ci() and report.skipped:
        _fail(report)
