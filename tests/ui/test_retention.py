"""Retention: finished jobs' step history is thinned (first and last kept, so the loss chart still spans the run),
their progress events are bounded, running jobs are untouched, and the audit log is kept by age and count; the
settings are validated and shown to admins only."""

from __future__ import annotations

import pytest

from simpletuner.ui.auth import audit
from simpletuner.ui.db.models import AuditEvent
from simpletuner.ui.jobs.models import Job, JobEvent
from simpletuner.ui.jobs.queue import record_event
from simpletuner.ui.jobs.retention import Retention, apply_retention, evenly_spaced

from .conftest import Client, UiServer

pytestmark = pytest.mark.timeout(60)


def _job(status: str, ended: float | None) -> Job:
    return Job.create(environment="env", status=status, output_dir="/tmp/out", created_at=1.0, ended_at=ended)


def test_evenly_spaced_keeps_the_ends() -> None:
    assert evenly_spaced(10, 4) == {0, 3, 6, 9}
    assert evenly_spaced(3, 10) == {0, 1, 2} and evenly_spaced(5, 1) == {4}


def test_finished_jobs_are_compacted_and_running_ones_left_alone(ui: UiServer, admin: Client) -> None:
    done, live = _job("completed", 100.0), _job("running", None)
    for job in (done, live):
        for step in range(1, 301):
            record_event(job.id, "step", float(step), step=step, loss=1.0 / step, lr=1e-4)
        for tick in range(50):
            record_event(job.id, "cache_progress", float(tick), kind="latents", done=tick, total=50)
        for tick in range(5):
            record_event(job.id, "log", float(tick), lines=[f"line {tick}"], offset=tick * 7, skipped=0)
        record_event(job.id, "job_finished", 400.0, status="completed")
    removed = apply_retention(ui.database, now=1000.0, settings=Retention(steps_per_finished_job=20,
                                                                           events_per_finished_job=11))
    assert removed["job_events"] == 280 + 5 + 40  # the live log's events all go: the log file has it all
    kept = [row.data["step"] for row in JobEvent.select().where((JobEvent.job == done.id) & (JobEvent.event == "step"))
            .order_by(JobEvent.id)]
    assert len(kept) == 20 and kept[0] == 1 and kept[-1] == 300
    assert JobEvent.select().where((JobEvent.job == done.id) & (JobEvent.event == "job_finished")).count() == 1
    assert JobEvent.select().where(JobEvent.job == live.id).count() == 356  # a running job keeps everything
    curve = admin.get(f"/api/jobs/{done.id}/metrics").json["steps"]
    assert [p["step"] for p in curve] == kept  # the loss chart still spans the whole run
    assert apply_retention(ui.database, now=1000.0, settings=Retention(steps_per_finished_job=20,
                                                                        events_per_finished_job=11))["job_events"] == 0


def test_the_audit_log_is_kept_by_age_and_count(ui: UiServer) -> None:
    AuditEvent.delete().execute()
    for day in range(10):
        audit.record("login", actor="root", target=None, ip=None, success=True, detail=None, now=day * 86400.0)
    removed = apply_retention(ui.database, now=10 * 86400.0, settings=Retention(audit_days=7, audit_max_events=100))
    assert removed["audit_events"] == 3 and AuditEvent.select().count() == 7
    apply_retention(ui.database, now=10 * 86400.0, settings=Retention(audit_days=365, audit_max_events=100))
    assert AuditEvent.select().count() == 7
    removed = apply_retention(ui.database, now=10 * 86400.0, settings=Retention(audit_days=365, audit_max_events=5))
    assert removed["audit_events"] == 2 and min(e.at for e in AuditEvent.select()) == 5 * 86400.0


def test_settings_are_validated_and_only_for_admins(ui: UiServer, admin: Client) -> None:
    assert admin.get("/api/settings/retention").json["steps_per_finished_job"] == 1000
    for body, fragment in (({"audit_days": 0}, "audit_days"), ({"steps_per_finished_job": "many"}, "whole number"),
                           ({"keep_everything": True}, "unknown retention setting")):
        refused = admin.patch("/api/settings/retention", body)
        assert refused.status_code == 400 and fragment in refused.json["description"], refused.text
    assert admin.patch("/api/settings/retention", {"audit_days": 30}).json["audit_days"] == 30
    assert admin.get("/api/settings/retention").json == {"audit_days": 30, "audit_max_events": 200_000,
                                                         "steps_per_finished_job": 1000,
                                                         "events_per_finished_job": 2000}
    assert "Steps kept per finished job" in admin.get("/admin/retention").text
    rita = ui.user(admin, "rita", ["researcher"])
    assert rita.get("/api/settings/retention").status_code == 403
