"""What the API says about jobs: the training status, job summaries, full records with log tail and outputs."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import peewee

from simpletuner.core.trying import MANIFEST_FILE, TRIES_DIR
from simpletuner.core.workspace import Workspace
from simpletuner.ui.db import prepared
from simpletuner.ui.db.unchanged import UnchangedCache
from simpletuner.ui.jobs.ingest import file_url
from simpletuner.ui.jobs.launch import LOG_FILE, job_dir, run_folder, tail_lines
from simpletuner.ui.jobs.models import ACTIVE, ENDED, QUEUED, TRY, Job, JobEvent
from simpletuner.ui.jobs.queue import positions

#: The job columns a summary shows, as (JSON key, column) pairs.
_SUMMARY_COLUMNS = (
    ("id", "id"), ("environment", "environment"), ("owner", "owner_name"), ("owner_id", "owner_id"),
    ("status", "status"), ("phase", "phase"), ("gpu_ids", "gpu_ids"), ("step", "step"),
    ("total_steps", "total_steps"), ("epoch", "epoch"), ("loss", "loss"), ("it_per_s", "it_per_s"),
    ("eta_s", "eta_s"), ("created_at", "created_at"), ("started_at", "started_at"), ("ended_at", "ended_at"),
    ("exit_code", "exit_code"), ("exit_signal", "exit_signal"), ("error", "error"), ("kind", "kind"),
)


def summary(job: Job, position: int | None = None) -> dict[str, Any]:
    """The fields of a job that lists and the status show."""
    data = {key: getattr(job, column) for key, column in _SUMMARY_COLUMNS}
    data["position"] = position
    return data


def _row_summary(row: dict[str, Any], position: int | None = None) -> dict[str, Any]:
    """:func:`summary` of a row read by the status statements."""
    data = {key: row[column] for key, column in _SUMMARY_COLUMNS}
    if isinstance(data["gpu_ids"], str):
        data["gpu_ids"] = json.loads(data["gpu_ids"])
    data["position"] = position
    return data


def _status_columns() -> list[peewee.Field]:
    return [*(getattr(Job, column) for _, column in _SUMMARY_COLUMNS), Job.queue_rank]


def _unfinished() -> peewee.ModelSelect:
    # Both the waiting and the active jobs in one pass over the status index; split and ordered below.
    return Job.select(*_status_columns()).where(Job.status.in_((QUEUED, *ACTIVE)))


def _last_finished() -> peewee.ModelSelect:
    # ``ended_at`` is set exactly when a job ends (see the model), so the newest end is one step backwards through
    # its index (migration 4), however long the job history grows. Filtering on the ended statuses as well would
    # lead the planner to the status index and a sort of the whole history.
    return (Job.select(*_status_columns()).where(Job.ended_at.is_null(False))
            .order_by(Job.ended_at.desc(), Job.id.desc()).limit(1))


def _earliest(value: float | None) -> float:
    return float("-inf") if value is None else value


_STATUS_READS = UnchangedCache()


def _status_rows(database: peewee.Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    unfinished = prepared.run(database, *prepared.statement(database, "jobs.unfinished", _unfinished))
    return unfinished, prepared.run(database, *prepared.statement(database, "jobs.last_finished", _last_finished))


def training_status() -> dict[str, Any]:
    """``GET /api/training/status``: the running job(s), the queue and the last finished job.

    ``status`` is ``running`` while a job runs, ``queued`` while jobs only wait, else ``idle``; ``job`` is the
    earliest started running job (``jobs`` lists all of them, for jobs side by side on disjoint GPUs).

    Every client polls this, so it is two indexed statements built once per process (see
    :mod:`simpletuner.ui.db.prepared`), run again only once the database has changed (see
    :mod:`simpletuner.ui.db.unchanged`); the queue is ordered as :func:`queued_in_order` orders it.
    """
    database = Job._meta.database
    rows, last = _STATUS_READS.get(database, "status", lambda: _status_rows(database))
    active = sorted((r for r in rows if r["status"] in ACTIVE), key=lambda r: (_earliest(r["started_at"]), r["id"]))
    waiting = sorted((r for r in rows if r["status"] == QUEUED), key=lambda r: (r["queue_rank"], r["id"]))
    return {
        "status": "running" if active else "queued" if waiting else "idle",
        "job": _row_summary(active[0]) if active else None,
        "jobs": [_row_summary(row) for row in active],
        "queue": [_row_summary(row, place) for place, row in enumerate(waiting, start=1)],
        "last_finished": _row_summary(last[0]) if last else None,
    }


def _files(job: Job, folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    return [{"name": p.name, "size": p.stat().st_size, "url": file_url(job, str(p))}
            for p in sorted(folder.iterdir()) if p.is_file()]


def outputs(job: Job) -> dict[str, Any]:
    """This job's outputs, from its own events: the final model (with ``usage``, the code that loads it, from
    runs that wrote one), checkpoints still on disk, validation images (with their prompts, see
    :func:`image_details`)."""
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
                url = file_url(job, path) if Path(path).is_file() else None
                if url is not None:  # only the job's own files are described (and served)
                    images.append({"step": data.get("step"), "path": path, "url": url, **image_details(Path(path))})
        elif isinstance(data.get("output"), str):
            path = Path(data["output"])
            model = {"path": str(path), "url": file_url(job, str(path)) if path.is_file()
                     else None, "size": path.stat().st_size if path.is_file() else None,
                     "files": _files(job, path) if path.is_dir() else [],
                     "usage": data["usage"] if isinstance(data.get("usage"), str) else None}
    saved = [{**c, "files": _files(job, Path(c["path"]))} for c in checkpoints.values() if Path(c["path"]).is_dir()]
    return {"model": model, "checkpoints": saved, "validation_images": images, "tries": tries(job)}


#: The text chunks of a validation PNG that the gallery shows (written by the ``pipeline`` validation method).
IMAGE_DETAILS = ("name", "prompt", "negative_prompt", "seed", "steps", "guidance")


def image_details(path: Path) -> dict[str, Any]:
    """What a validation image says about itself: its prompt's name, the prompt, seed, steps and guidance from its
    PNG text chunks (read from the file's header, not decoded; empty for images without them), and its size."""
    stat = path.stat()
    return dict(_image_details(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4096)
def _image_details(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, Any], ...]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            found: list[tuple[str, Any]] = [("width", image.width), ("height", image.height)]
            found += [(key, str(image.info[key])) for key in IMAGE_DETAILS if isinstance(image.info.get(key), str)]
    except (OSError, UnidentifiedImageError, ValueError):
        return ()
    return tuple(found)


def tries(job: Job) -> list[dict[str, Any]]:
    """The finished tries of a training job's run, newest first: each try's request, settings and image pairs with
    their download URLs (through this job's files)."""
    folder = run_folder(job)
    if job.kind == TRY or folder is None or not (folder / TRIES_DIR).is_dir():
        return []
    found = []
    for manifest_path in sorted((folder / TRIES_DIR).glob(f"*/{MANIFEST_FILE}"), reverse=True):
        try:
            manifest = json.loads(manifest_path.read_text())
            pairs = [{"prompt": str(pair["prompt"]),
                      **{side: file_url(job, str(manifest_path.parent / pair[side])) for side in ("base", "trained")}}
                     for pair in manifest["images"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a try still being written, or a damaged manifest: not listed
        found.append({"folder": manifest_path.parent.name, "request": manifest.get("request"),
                      "settings": manifest.get("settings"), "images": pairs})
    return found


def detail(job: Job, workspace: Workspace, log_lines: int = 40) -> dict[str, Any]:
    """``GET /api/jobs/{id}``: the summary plus stop request, output folder, run folder (``run_dir``: where this job's
    files are, null until it is launched), where it runs (``executor`` and the executor's reference to it), log tail
    (``log_offset``: the log's size when it was read, see :mod:`simpletuner.ui.jobs.live_log`) and outputs."""
    position = positions().get(job.id) if job.status == "queued" else None
    path = job_dir(workspace, job.id) / LOG_FILE
    # measured before the tail is read: a live client applies the ``log`` events past it (a line may come twice,
    # none is lost)
    log_offset = path.stat().st_size if path.is_file() else 0
    log = job.log_tail if job.status in ENDED and job.log_tail is not None else tail_lines(path, log_lines)
    return {
        **summary(job, position), "output_dir": job.output_dir, "run_dir": job.run_dir,
        "launcher_args": job.launcher_args, "executor": job.executor or "local", "executor_ref": job.executor_ref,
        "pid": job.pid, "stop_requested_at": job.stop_requested_at, "stop_requested_by": job.stop_requested_by,
        "log_tail": log[-log_lines:], "log_offset": log_offset, "log_url": f"/api/jobs/{job.id}/log",
        "outputs": outputs(job),
        "task": job.task,
    }
