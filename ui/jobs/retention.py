"""Keeping the database small under a long-lived server: the audit log is kept by age and count, and the events of
finished jobs are compacted — their step history thinned to evenly spaced steps (the first and the last kept, so
the loss chart still draws the whole run), their live-log events dropped and their progress events bounded.

The supervisor applies the policy at start and then every :data:`APPLY_EVERY_S` seconds; running jobs are never
touched, so a client resuming a live stream loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import peewee

from simpletuner.core.errors import SimpleTunerError
from simpletuner.ui.db.models import AuditEvent, Setting
from simpletuner.ui.jobs.models import Job, JobEvent

RETENTION_KEY = "retention"
APPLY_EVERY_S = 600.0
#: Events of a finished job dropped first when it holds too many (progress ticks, not outcomes).
DISPOSABLE_EVENTS = ("cache_progress", "phase", "warning")
_LIMITS = {"audit_days": (1, 36500), "audit_max_events": (100, 10_000_000), "steps_per_finished_job": (10, 100_000),
           "events_per_finished_job": (50, 1_000_000)}


@attrs.frozen
class Retention:
    """How much history the server keeps.

    Attributes:
        audit_days: audit events older than this are deleted.
        audit_max_events: at most this many audit events are kept (the newest).
        steps_per_finished_job: a finished job keeps at most this many step events, evenly spaced.
        events_per_finished_job: a finished job keeps at most this many other events; progress events go first.
    """

    audit_days: int = 365
    audit_max_events: int = 200_000
    steps_per_finished_job: int = 1000
    events_per_finished_job: int = 2000

    def to_json(self) -> dict[str, int]:
        """JSON-ready."""
        return attrs.asdict(self)


def parse_retention(raw: Mapping[str, Any]) -> Retention:
    """Settings from an admin's request (unknown keys and out-of-range values refused by name)."""
    unknown = sorted(set(raw) - set(_LIMITS))
    if unknown:
        raise SimpleTunerError(f"unknown retention setting(s) {', '.join(unknown)}; known: {', '.join(_LIMITS)}")
    values = retention_settings().to_json()
    for key, value in raw.items():
        low, high = _LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SimpleTunerError(f"{key} must be a whole number from {low} to {high}")
        values[key] = value
    return Retention(**values)


def retention_settings() -> Retention:
    """The stored settings (the defaults where none are stored)."""
    row = Setting.get_or_none(Setting.key == RETENTION_KEY)
    stored = row.value if row is not None and isinstance(row.value, dict) else {}
    return Retention(**{k: v for k, v in stored.items() if k in _LIMITS})


def save_retention(settings: Retention) -> None:
    """Store the settings."""
    if not Setting.update(value=settings.to_json()).where(Setting.key == RETENTION_KEY).execute():
        Setting.create(key=RETENTION_KEY, value=settings.to_json())


def evenly_spaced(count: int, keep: int) -> set[int]:
    """Indexes of ``keep`` evenly spaced items among ``count`` (the first and the last among them)."""
    if count <= keep:
        return set(range(count))
    if keep == 1:
        return {count - 1}
    stride = (count - 1) / (keep - 1)
    return {round(i * stride) for i in range(keep)}


def _delete_ids(ids: list[int]) -> int:
    for start in range(0, len(ids), 500):  # bounded statements on every database
        JobEvent.delete().where(JobEvent.id.in_(ids[start:start + 500])).execute()
    return len(ids)


def _compact_job(job_id: int, settings: Retention) -> int:
    steps = [row.id for row in JobEvent.select(JobEvent.id).where(
        (JobEvent.job == job_id) & (JobEvent.event == "step")).order_by(JobEvent.id)]
    kept = evenly_spaced(len(steps), settings.steps_per_finished_job)
    removed = _delete_ids([event_id for index, event_id in enumerate(steps) if index not in kept])
    # the live log's events only mattered while the job ran: its log file holds all of it
    removed += JobEvent.delete().where((JobEvent.job == job_id) & (JobEvent.event == "log")).execute()
    others = JobEvent.select().where((JobEvent.job == job_id) & (JobEvent.event != "step")).count()
    excess = others - settings.events_per_finished_job
    if excess > 0:
        disposable = [row.id for row in JobEvent.select(JobEvent.id).where(
            (JobEvent.job == job_id) & JobEvent.event.in_(DISPOSABLE_EVENTS)).order_by(JobEvent.id).limit(excess)]
        removed += _delete_ids(disposable)
    return removed


def apply_retention(database: peewee.Database, now: float, settings: Retention | None = None) -> dict[str, int]:
    """Apply the policy once; returns how many audit and job events were deleted."""
    settings = settings or retention_settings()
    with database.atomic():
        audit = AuditEvent.delete().where(AuditEvent.at < now - settings.audit_days * 86400).execute()
        newest = (AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc())
                  .offset(settings.audit_max_events).limit(1).first())
        if newest is not None:
            audit += AuditEvent.delete().where(AuditEvent.id <= newest.id).execute()
    events = 0
    finished = Job.select(Job.id).where(Job.ended_at.is_null(False))
    for job in finished:
        with database.atomic():
            events += _compact_job(job.id, settings)
    return {"audit_events": audit, "job_events": events}
