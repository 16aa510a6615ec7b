"""Fixtures shared by every test folder, and the hooks that make a skipped test fail a CI run (ci_skips)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import postgres_server
import pytest
from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 (hooks: CI fails on skips)

from simpletuner.core.workspace import WORKSPACE_ENV_VAR, Workspace

SIMPLETUNER_BIN = Path(sys.executable).parent / "simpletuner"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """An empty workspace, also set as ``$SIMPLETUNER_WORKSPACE``."""
    root = tmp_path / "workspace"
    root.mkdir()
    monkeypatch.setenv(WORKSPACE_ENV_VAR, str(root))
    return Workspace(root)


@pytest.fixture
def run_cli(workspace: Workspace) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed ``simpletuner`` console script as a subprocess in the test workspace."""
    executable = str(SIMPLETUNER_BIN) if SIMPLETUNER_BIN.exists() else shutil.which("simpletuner")
    assert executable, "the simpletuner console script is not installed"

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, WORKSPACE_ENV_VAR: str(workspace.root), **(env or {})}
        return subprocess.run([executable, *args], capture_output=True, text=True, env=full_env, input=input,
                              cwd=cwd or workspace.root, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL server for this test run (skipped, with the reason, where it cannot run)."""
    reason = postgres_server.missing()
    if reason:
        pytest.skip(reason)
    with postgres_server.run_postgres() as url:
        yield url


@pytest.fixture
def fresh_postgres(postgres_url: str) -> str:
    """A new, empty database on the test run's PostgreSQL server."""
    return postgres_server.create_database(postgres_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The URL of an empty database of each kind (None: SQLite in the workspace, as the server's default)."""
    return request.getfixturevalue("fresh_postgres") if request.param == "postgresql" else None


@pytest.fixture
def fresh_accelerate_state() -> Iterator[None]:
    """Each in-process run builds its own Accelerator; accelerate keeps process-wide singletons, reset afterwards."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()
