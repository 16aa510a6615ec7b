"""What the cluster executors' tests share: waiting for a job's events, starting a job over HTTP, and the journey
of a server restarted while its cluster job runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.conftest import write_env
from jobs.live import LiveServer, make_users


def ended(job_id: int) -> Callable[[dict[str, Any]], bool]:
    """Until the job has finished."""
    return lambda e: e["job_id"] == job_id and e["event"] == "job_finished"


def caching_or_ended(job_id: int) -> Callable[[dict[str, Any]], bool]:
    """Until the held job caches (it then waits for its hold), or ends early (the test then fails at once)."""
    return lambda e: e["job_id"] == job_id and (e.get("phase") == "caching" or e["event"] == "job_finished")


def start(live: LiveServer, environment: str, executor: str, body: dict[str, Any] | None = None,
          user: str = "rita") -> int:
    """Give ``environment`` to rita and start it as ``user``; returns the job id."""
    live.adopt(environment, "rita")
    status, answer = live.call("POST", "/api/training/start", {"environment": environment, **(body or {})}, user)
    assert status == 202, answer
    assert answer["executor"] == executor
    return int(answer["job_id"])


def restart_and_reattach(tmp_path: Path, model: Path, executor: str, serve: Callable[..., LiveServer],
                         cluster_state: Callable[[str], str], waiting_states: tuple[str, ...],
                         **options: Any) -> None:
    """A held job runs on the cluster while its server stops; the next server adopts it by its reference, and the
    job completes under it."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    keys = make_users(workspace)
    name = f"{executor}-restart"
    write_env(workspace, model, name, held=True, executor=executor, max_train_steps=2, **options)
    first = serve(workspace, keys)
    try:
        job_id = start(first, name, executor)
        started = first.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == "job_started",
                                    job=job_id)[-1]
    finally:
        assert first.stop() == 0
    assert cluster_state(started["executor_ref"]) in waiting_states
    second = serve(workspace, keys)
    try:
        adopted = second.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == "job_adopted",
                                     job=job_id)[-1]
        assert adopted["executor_ref"] == started["executor_ref"]
        (workspace / "cache" / name / "text" / ".hold").unlink()  # let the run go on
        last = second.read_events("rita", ended(job_id), job=job_id, timeout=300)[-1]
        assert last["status"] == "completed", last
        assert second.call("GET", f"/api/jobs/{job_id}", user="rita")[1]["step"] == 2
    finally:
        second.stop()
