"""Fixtures of the job tests: a throw-away data backend that can hold a run in its caching phase, environments on a
tiny Flux pipeline, and a live server shared by the tests of a module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_models import build_tiny

from simpletuner.plugins.executors.processes import descendants, group_members, signal_tree

from .live import LiveServer, make_users

#: A data backend ``held-local``: a local folder whose writes wait while a file ``.hold`` exists in its root. A
#: text-embeds cache on it holds a run in its caching phase until the test releases or stops it.
HELD_BACKEND = '''
import os, time
from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.specs import DataBackendSpec


def _held(root, options=None):
    from simpletuner.plugins.data_backends.local import LocalDataBackend

    class HeldBackend(LocalDataBackend):
        def write(self, path, data):
            while os.path.exists(os.path.join(self.root, ".hold")):
                time.sleep(0.05)
            super().write(path, data)

    return HeldBackend(root)


@hookimpl
def register_data_backends(register):
    register(DataBackendSpec(name="held-local", title="Held local folder", description="For tests.",
                             factory=_held))
'''


@pytest.fixture(scope="session")
def held_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder (for PYTHONPATH) with the ``held-local`` backend installed as a real distribution."""
    root = tmp_path_factory.mktemp("held")
    source = root / "src"
    (source / "st_held").mkdir(parents=True)
    (source / "st_held" / "__init__.py").write_text(HELD_BACKEND)
    (source / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "simpletuner-plugin-held"
        version = "0.1"
        [project.entry-points.simpletuner]
        held = "st_held"
        [tool.setuptools]
        packages = ["st_held"]
    """))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(root / "site"), str(source)], check=True, capture_output=True)
    return root / "site"


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Flux pipeline (built once per session)."""
    return build_tiny("flux", tmp_path_factory.mktemp("tiny-flux") / "pipeline")


def write_env(workspace: Path, model: Path, name: str, *, held: bool = False, images: int = 4,
              **overrides: Any) -> str:
    """An environment on the tiny pipeline; ``held`` puts its text cache on ``held-local`` with the hold set."""
    from simpletuner.core.cli.demo_commands import make_demo_images

    data = workspace / "datasets" / name
    if not data.exists():
        make_demo_images(data, images)
    config = {"model_family": "flux", "pretrained_model_name_or_path": str(model), "lora_rank": 4,
              "learning_rate": 1e-3, "max_train_steps": 1000, "num_train_epochs": 0, "train_batch_size": 1,
              "resolution": 128, "resolution_type": "pixel", "mixed_precision": "no", "checkpointing_steps": 0,
              "output_dir": f"output/{name}", "flux_t5_max_tokens": 16, "report_to": "none", **overrides}
    text_cache = workspace / "cache" / name / "text"
    datasets = [{"id": "shapes", "instance_data_dir": str(data), "caption_strategy": "textfile",
                 "cache_dir_vae": f"cache/{name}/vae"},
                {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": str(text_cache),
                 **({"type": "held-local"} if held else {})}]
    folder = workspace / "configs" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "multidatabackend.json").write_text(json.dumps(datasets))
    if held:
        text_cache.mkdir(parents=True, exist_ok=True)
        (text_cache / ".hold").write_text("")
    return name


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, held_site: Path, tiny_flux: Path) -> Iterator[LiveServer]:
    """A server (2 workers, a 20 s stop grace) on a fresh workspace with users and keys (see :data:`USERS`)."""
    workspace = tmp_path_factory.mktemp("live") / "ws"
    workspace.mkdir()
    server = LiveServer(workspace, make_users(workspace), {"PYTHONPATH": str(held_site)})
    server.allow_roots(tiny_flux)
    server.model = tiny_flux  # type: ignore[attr-defined]
    yield server
    server.stop()
    kill_leftover_jobs(workspace)


def kill_leftover_jobs(workspace: Path) -> None:
    """Kill every job process a test left running (their pids are in the workspace database)."""
    import signal

    from simpletuner.plugins.executors.processes import is_running
    from simpletuner.ui.db import open_database
    from simpletuner.ui.jobs.models import Job, bind_job_models

    database = open_database(None, workspace)
    bind_job_models(database)
    with database:
        for job in Job.select().where(Job.pid.is_null(False)):
            if is_running(job.pid, job.process_start):
                signal_tree(job.pid, signal.SIGKILL)
    shutil.rmtree(workspace / "cache", ignore_errors=True)


def wait_for(user_events: Callable[..., list[dict[str, Any]]], job_id: int, *kinds: str,
             **match: Any) -> dict[str, Any]:
    """The first event of ``job_id`` among ``kinds`` whose fields match ``match``."""
    def wanted(event: dict[str, Any]) -> bool:
        return event["job_id"] == job_id and event["event"] in kinds and all(event.get(k) == v
                                                                             for k, v in match.items())
    return user_events(wanted)[-1]


def job_processes(pid: int) -> list[int]:
    """The job's wrapper, its group and everything below it."""
    return sorted({pid, *descendants(pid), *group_members(pid)})
