"""What the API says about jobs: the training status, job summaries, full records with log tail and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.core.workspace import Workspace
from simpletuner.ui.jobs.ingest import file_url
from simpletuner.ui.jobs.launch import LOG_FILE, job_dir, tail_lines
from simpletuner.ui.jobs.models import ACTIVE, ENDED, Job, JobEvent
from simpletuner.ui.jobs.queue import positions, queued_in_order


def summary(job: Job, position: int | None = None) -> dict[str, Any]:
    """The fields of a job that lists and the status show."""
    return {
        "id": job.id, "environment": job.environment, "owner": job.owner_name, "owner_id": job.owner_id,
        "status": job.status, "phase": job.phase, "position": position, "gpu_ids": job.gpu_ids,
        "step": job.step, "total_steps": job.total_steps, "epoch": job.epoch, "loss": job.loss,
        "it_per_s": job.it_per_s, "eta_s": job.eta_s, "created_at": job.created_at, "started_at": job.started_at,
        "ended_at": job.ended_at, "exit_code": job.exit_code, "exit_signal": job.exit_signal, "error": job.error,
    }


def training_status() -> dict[str, Any]:
    """``GET /api/training/status``: the running job(s), the queue and the last finished job.

    ``status`` is ``running`` while a job runs, ``queued`` while jobs only wait, else ``idle``; ``job`` is the
    earliest started running job (``jobs`` lists all of them, for jobs side by side on disjoint GPUs).
    """
    active = list(Job.select().where(Job.status.in_(ACTIVE)).order_by(Job.started_at, Job.id))
    waiting = queued_in_order()
    places = positions(waiting)
    last = Job.select().where(Job.status.in_(ENDED)).order_by(Job.ended_at.desc(), Job.id.desc()).first()
    return {
        "status": "running" if active else "queued" if waiting else "idle",
        "job": summary(active[0]) if active else None,
        "jobs": [summary(job) for job in active],
        "queue": [summary(job, places[job.id]) for job in waiting],
        "last_finished": summary(last) if last is not None else None,
    }


def _files(job: Job, folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    return [{"name": p.name, "size": p.stat().st_size, "url": file_url(job.id, job.output_dir, str(p))}
            for p in sorted(folder.iterdir()) if p.is_file()]


def outputs(job: Job) -> dict[str, Any]:
    """This job's outputs, from its own events: the final model, checkpoints still on disk, validation images."""
    model: dict[str, Any] | None = None
    checkpoints: dict[str, dict[str, Any]] = {}
    images: list[dict[str, Any]] = []
    query = (JobEvent.select().where((JobEvent.job == job.id)
                                     & JobEvent.event.in_(("checkpoint_saved", "validation", "finished")))
             .order_by(JobEvent.id))
    for row in query:
        data = row.data
        if row.event == "checkpoint_saved":
            for pruned in data.get("pruned") or []:
                checkpoints.pop(str(pruned), None)
            checkpoints[str(data.get("path"))] = {"step": data.get("step"), "path": data.get("path")}
        elif row.event == "validation":
            for path in data.get("images") or []:
                if Path(path).is_file():
                    images.append({"step": data.get("step"), "path": path,
                                   "url": file_url(job.id, job.output_dir, path)})
        elif isinstance(data.get("output"), str):
            path = Path(data["output"])
            model = {"path": str(path), "url": file_url(job.id, job.output_dir, str(path)) if path.is_file()
                     else None, "size": path.stat().st_size if path.is_file() else None,
                     "files": _files(job, path) if path.is_dir() else []}
    saved = [{**c, "files": _files(job, Path(c["path"]))} for c in checkpoints.values() if Path(c["path"]).is_dir()]
    return {"model": model, "checkpoints": saved, "validation_images": images}


def detail(job: Job, workspace: Workspace, log_lines: int = 40) -> dict[str, Any]:
    """``GET /api/jobs/{id}``: the summary plus stop request, output folder, log tail and outputs."""
    position = positions().get(job.id) if job.status == "queued" else None
    log = job.log_tail if job.status in ENDED and job.log_tail is not None else \
        tail_lines(job_dir(workspace, job.id) / LOG_FILE, log_lines)
    return {
        **summary(job, position), "output_dir": job.output_dir, "launcher_args": job.launcher_args,
        "pid": job.pid, "stop_requested_at": job.stop_requested_at, "stop_requested_by": job.stop_requested_by,
        "log_tail": log[-log_lines:], "log_url": f"/api/jobs/{job.id}/log", "outputs": outputs(job),
    }
