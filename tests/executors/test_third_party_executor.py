"""A third-party executor plugin, pip-installed by the test, runs jobs of the live server: it is listed with its
distribution, its option is checked, and a job started over HTTP runs, reports and stops through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jobs.conftest import write_env
from jobs.live import LiveServer, make_users
from kernel.conftest import pip_install_target, write_distribution

pytestmark = pytest.mark.timeout(300)

#: A detached-process executor as a third party would write it: only the public interface.
DETACHED_EXECUTOR = '''
"""Jobs as detached shell processes that write their exit status next to their log."""
import os
import shlex
import subprocess
import sys

import attrs
from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.interfaces import Executor, JobState, SubmitError
from simpletuner.core.options import option
from simpletuner.core.specs import ExecutorSpec


@attrs.define(kw_only=True)
class DetachedOptions:
    detached_nice: int = option(0, help="Niceness of the job's processes.", section="environment", minimum=0,
                                maximum=19)


class DetachedExecutor(Executor):
    """Starts ``nice -n N python -m simpletuner ...`` in a session of its own."""

    def __init__(self, options):
        self.options = options

    def submit(self, job):
        job.folder.mkdir(parents=True, exist_ok=True)
        command = shlex.join(["nice", "-n", str(self.options.detached_nice), sys.executable, "-m",
                              "simpletuner.core.cli.main", *job.arguments])
        status = shlex.quote(str(job.folder / "detached-exit"))
        with job.log_file.open("ab") as log:
            try:
                process = subprocess.Popen(["sh", "-c", f"{command}; echo $? > {status}"], stdout=log,
                                           stderr=subprocess.STDOUT, cwd=job.working_dir, start_new_session=True,
                                           env={**os.environ, **job.environment})
            except OSError as exc:
                raise SubmitError(str(exc))
        return str(process.pid)

    def poll(self, job):
        status = job.folder / "detached-exit"
        if status.exists():
            code = int(status.read_text())
            return JobState(state="succeeded" if code == 0 else "failed", exit_code=code,
                            reason=None if code == 0 else f"exited with {code}")
        try:
            os.waitpid(int(job.ref), os.WNOHANG)  # reap it when it is a child of this process
        except ChildProcessError:
            pass
        try:
            os.kill(int(job.ref), 0)
        except ProcessLookupError:
            return JobState(state="stopped", reason="the process ended without an exit status")
        return JobState(state="running")

    def stop(self, job, force=False):
        try:
            os.killpg(int(job.ref), 9 if force else 15)
        except ProcessLookupError:
            pass


@hookimpl
def register_executors(register):
    register(ExecutorSpec(name="detached", title="Detached process", description="A detached shell process.",
                          options=DetachedOptions, factory=DetachedExecutor))
'''


@pytest.fixture(scope="module")
def executor_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("executor-dist")
    source = write_distribution(root, "simpletuner-plugin-detached", "st_detached", DETACHED_EXECUTOR, "detached")
    site = root / "site"
    pip_install_target([source], site)
    return site


def test_a_pip_installed_executor_runs_jobs_of_the_server(tmp_path: Path, executor_site: Path, held_site: Path,
                                                           tiny_flux: Path, run_cli: Any, workspace: Any) -> None:
    path = f"{executor_site}:{held_site}"
    listed = json.loads(run_cli("plugins", "list", "--json", env={"PYTHONPATH": path}).stdout)
    row = next(r for r in listed if r["name"] == "detached")
    assert row["kind"] == "executor" and row["distribution"] == "simpletuner-plugin-detached" and not row["error"]

    write_env(workspace.root, tiny_flux, "niced", executor="detached", detached_nice=40)
    result = run_cli("config", "check", "--env", "niced", env={"PYTHONPATH": path})
    assert result.returncode == 1 and "$.detached_nice" in result.stderr, result.stderr

    server = LiveServer(workspace.root, make_users(workspace.root), {"PYTHONPATH": path})
    try:
        server.allow_roots(tiny_flux)
        write_env(workspace.root, tiny_flux, "niced", executor="detached", detached_nice=5, max_train_steps=2)
        server.adopt("niced", "rita")
        status, answer = server.call("POST", "/api/training/start", {"environment": "niced"}, "rita")
        assert status == 202 and answer["executor"] == "detached", answer
        job_id = answer["job_id"]
        events = server.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == "job_finished",
                                    job=job_id, timeout=240)
        assert events[-1]["status"] == "completed", events[-1]
        started = next(e for e in events if e["event"] == "job_started")
        assert started["executor"] == "detached" and started["executor_ref"].isdigit()
        assert "step" in {e["event"] for e in events}
        status, job = server.call("GET", f"/api/jobs/{job_id}", user="rita")
        assert job["step"] == 2 and job["outputs"]["model"]["path"].endswith(".safetensors")

        write_env(workspace.root, tiny_flux, "niced-held", held=True, executor="detached")
        server.adopt("niced-held", "rita")
        job_id = server.call("POST", "/api/training/start", {"environment": "niced-held"}, "rita")[1]["job_id"]
        server.read_events("rita", lambda e: e["job_id"] == job_id and e.get("phase") == "caching", job=job_id)
        assert server.call("POST", "/api/training/stop", {"job_id": job_id}, "rita")[0] == 202
        last = server.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == "job_finished",
                                  job=job_id, timeout=120)[-1]
        assert last["status"] == "stopped", last
    finally:
        server.stop()
