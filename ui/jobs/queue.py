"""The job queue: one job per GPU set at a time, first come first served, with reordering and cancellation.

A waiting job is admitted (status ``running``, no process yet) when nothing active uses any of its GPUs or its
output folder and no job ahead of it in the queue wants them; the supervisor then launches it. Jobs handed to a
cluster (Ray, Slurm) hold no GPUs of this server: only their output folder keeps them waiting here, and the
cluster's scheduler decides when they run. Admission runs inside a transaction that holds the table's write lock,
so two workers and the supervisor can all call :func:`admit_ready` at once and never admit two jobs onto one GPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import peewee

from simpletuner.ui.jobs.models import ACTIVE, CANCELLED, QUEUED, RUNNING, STOPPED, STOPPING, Job, JobEvent


@attrs.frozen
class JobRequest:
    """What a new job needs, checked and resolved by the caller (the environment was loaded without errors)."""

    environment: str
    output_dir: str
    gpu_ids: tuple[str, ...] | None  # None: every visible GPU
    launcher_args: tuple[str, ...] | None  # None: one process, no ``accelerate launch``
    owner_id: int | None
    owner_name: str | None
    executor: str | None = None  # None: ``local``
    executor_options: Mapping[str, Any] | None = None
    resources: Mapping[str, Any] | None = None  # nodes and processes of a job on a cluster
    cluster: bool = False  # handed to a cluster's scheduler: no GPU set of this server is held for it
    kind: str = "train"  # or "try": render a finished run's model (``task`` says what)
    task: Mapping[str, Any] | None = None


def _locked(database: peewee.Database) -> None:
    """Take the job table's write lock inside the current transaction (SQLite's BEGIN IMMEDIATE already does)."""
    if isinstance(database, peewee.PostgresqlDatabase):
        database.execute_sql("LOCK TABLE training_jobs IN SHARE ROW EXCLUSIVE MODE")


def competes(a: Job, b: Job) -> bool:
    """Whether two jobs cannot run at once: they share an output folder, or both run on this server's GPUs and
    their GPU sets overlap (a cluster's scheduler places jobs handed to it itself)."""
    return a.output_dir == b.output_dir or (not a.cluster and not b.cluster and overlaps(a.gpu_ids, b.gpu_ids))


def overlaps(a: Sequence[str] | None, b: Sequence[str] | None) -> bool:
    """Whether two GPU sets share a GPU (None, every GPU, overlaps everything)."""
    return a is None or b is None or bool(set(a) & set(b))


def record_event(job_id: int, event: str, now: float, **data: object) -> JobEvent:
    """Store one event of a job (what ``/api/events`` streams)."""
    return JobEvent.create(job=job_id, at=now, event=event, data={"job_id": job_id, "event": event, "time": now,
                                                                    **data})


def submit(database: peewee.Database, request: JobRequest, now: float | None = None) -> Job:
    """Queue a job and admit it at once when its GPUs are free; returns the job (``status`` tells which)."""
    now = time.time() if now is None else now
    with database.atomic():
        _locked(database)
        last = Job.select(peewee.fn.MAX(Job.queue_rank)).where(Job.status == QUEUED).scalar() or 0.0
        job = Job.create(environment=request.environment, owner=request.owner_id, owner_name=request.owner_name,
                         status=QUEUED, phase="queued", queue_rank=last + 1.0,
                         gpu_ids=list(request.gpu_ids) if request.gpu_ids is not None else None,
                         output_dir=request.output_dir,
                         launcher_args=list(request.launcher_args) if request.launcher_args is not None else None,
                         executor=request.executor,
                         executor_options=dict(request.executor_options) if request.executor_options else None,
                         resources=dict(request.resources) if request.resources else None, cluster=request.cluster,
                         kind=request.kind, task=dict(request.task) if request.task else None, created_at=now)
        record_event(job.id, "job_queued", now, environment=job.environment, owner=job.owner_name)
    admit_ready(database, now)
    return Job.get_by_id(job.id)


def queued_in_order() -> list[Job]:
    """Waiting jobs, first first."""
    return list(Job.select().where(Job.status == QUEUED).order_by(Job.queue_rank, Job.id))


def admit_ready(database: peewee.Database, now: float | None = None) -> list[int]:
    """Admit every waiting job whose GPUs and output folder are free, in queue order; returns their ids."""
    now = time.time() if now is None else now
    admitted: list[int] = []
    with database.atomic():
        _locked(database)
        holding: list[Job] = list(Job.select().where(Job.status.in_(ACTIVE)))
        for job in queued_in_order():
            if any(competes(job, other) for other in holding):
                holding.append(job)  # it waits, and nothing behind it may take what it waits for
                continue
            Job.update(status=RUNNING, phase="launching", started_at=now).where(
                (Job.id == job.id) & (Job.status == QUEUED)).execute()
            record_event(job.id, "job_admitted", now, gpu_ids=job.gpu_ids)
            holding.append(job)
            admitted.append(job.id)
    return admitted


def positions(jobs: Iterable[Job] | None = None) -> dict[int, int]:
    """Each waiting job's place in the queue (1 = next)."""
    return {job.id: index + 1 for index, job in enumerate(jobs if jobs is not None else queued_in_order())}


def request_stop(database: peewee.Database, job_id: int, by: str | None, now: float | None = None) -> str:
    """Stop a job: a waiting one is cancelled, an active one is asked to stop (the supervisor signals it).

    Returns the job's new status; raises ``LookupError`` when the job is already over.
    """
    now = time.time() if now is None else now
    with database.atomic():
        _locked(database)
        job = Job.get_by_id(job_id)
        if job.status == QUEUED:
            Job.update(status=CANCELLED, phase="cancelled", ended_at=now, stop_requested_at=now,
                       stop_requested_by=by, error=f"cancelled by {by or 'the server'} while queued").where(
                Job.id == job_id).execute()
            record_event(job_id, "job_finished", now, status=CANCELLED, by=by)
            status = CANCELLED
        elif job.status == RUNNING:
            Job.update(status=STOPPING, stop_requested_at=now, stop_requested_by=by).where(
                Job.id == job_id).execute()
            record_event(job_id, "job_stopping", now, by=by)
            status = STOPPING
        elif job.status == STOPPING:
            status = STOPPING
        else:
            raise LookupError(f"job {job_id} is already {job.status}")
    if status == CANCELLED:
        admit_ready(database, now)  # a job behind it may now be first in line
    return status


def move(database: peewee.Database, job_id: int, position: int, now: float | None = None) -> list[int]:
    """Move a waiting job to ``position`` (1 = next) and admit what that frees; returns the new queue order.

    Raises ``LookupError`` when the job is not waiting and ``ValueError`` for a position outside the queue.
    """
    now = time.time() if now is None else now
    with database.atomic():
        _locked(database)
        order = queued_in_order()
        ids = [job.id for job in order]
        if job_id not in ids:
            raise LookupError(f"job {job_id} is not waiting in the queue")
        if not 1 <= position <= len(ids):
            raise ValueError(f"position must be between 1 and {len(ids)} (the queue's length)")
        ids.remove(job_id)
        ids.insert(position - 1, job_id)
        for rank, queued_id in enumerate(ids, start=1):
            Job.update(queue_rank=float(rank)).where(Job.id == queued_id).execute()
        record_event(job_id, "queue_changed", now, order=ids)
    admit_ready(database, now)
    return ids


def finish_unlaunched(job_id: int, now: float) -> None:
    """A job asked to stop before its process was launched: it is stopped without ever starting."""
    Job.update(status=STOPPED, phase="stopped", ended_at=now, error="stopped before it started").where(
        (Job.id == job_id) & (Job.status == STOPPING) & Job.pid.is_null() & Job.executor_ref.is_null()).execute()
    record_event(job_id, "job_finished", now, status=STOPPED)
