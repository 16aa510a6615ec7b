"""``GET /api/jobs/{id}/metrics``: the step curve the Training page draws when opened mid-run or afterwards."""

from __future__ import annotations

from simpletuner.ui.jobs.models import Job, JobEvent
from simpletuner.ui.resources.training_history import thin

from .conftest import Client, UiServer


def _job_with_steps(count: int) -> Job:
    job = Job.create(environment="alpha", owner=1, owner_name="root", status="running", output_dir="/tmp/out",
                     created_at=1.0, total_steps=count)
    JobEvent.create(job=job, at=1.0, event="run_started", data={"event": "run_started"})
    for step in range(1, count + 1):
        JobEvent.create(job=job, at=1.0 + step, event="step",
                        data={"event": "step", "step": step, "loss": 1.0 / step, "lr": 1e-4 * step})
        JobEvent.create(job=job, at=1.0 + step, event="cache_progress", data={"event": "cache_progress"})
    return job


def test_metrics_list_the_steps_in_order_and_thin_long_runs(ui: UiServer, admin: Client) -> None:
    job = _job_with_steps(9)
    viewer = ui.user(admin, "vera", ["viewer"])
    result = viewer.get(f"/api/jobs/{job.id}/metrics")
    assert result.status_code == 200
    assert result.json["total_steps"] == 9 and result.json["job_id"] == job.id
    assert [s["step"] for s in result.json["steps"]] == list(range(1, 10))
    assert result.json["steps"][3] == {"step": 4, "loss": 0.25, "lr": 4e-4}
    thinned = admin.get(f"/api/jobs/{job.id}/metrics?points=3").json["steps"]
    assert [s["step"] for s in thinned] == [1, 5, 9]
    assert admin.get("/api/jobs/999/metrics").status_code == 404
    assert admin.get(f"/api/jobs/{job.id}/metrics?points=x").status_code == 400


def test_thin_keeps_the_ends_and_never_exceeds_the_limit() -> None:
    rows = [{"step": i} for i in range(1, 101)]
    assert thin(rows, 200) == rows
    assert [r["step"] for r in thin(rows, 2)] == [1, 100]
    assert [r["step"] for r in thin(rows, 1)] == [100]
    picked = thin(rows, 7)
    assert len(picked) == 7 and picked[0]["step"] == 1 and picked[-1]["step"] == 100
