"""Reading a run's event stream (``events.jsonl``) as it grows, and turning it into job events and progress.

Only complete lines are taken (a line the trainer is still writing waits for the next read). The byte offset read
so far is stored on the job, so a supervisor that restarts continues where the last one stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from simpletuner.ui.jobs.launch import run_folder
from simpletuner.ui.jobs.models import Job, JobEvent

#: Most bytes read from one stream per pass (a pass that finds more comes back for the rest at once).
READ_CHUNK = 1 << 20

#: The phase a job is in after each event of its run.
PHASE_AFTER = {
    "datasets_scanned": "caching", "cache_progress": "caching", "cache_ready": "caching",
    "run_started": "training", "step": "training", "checkpoint_saved": "training", "validation": "training",
    "validation_failed": "training", "finished": "finishing", "failed": "failing",
}


def file_url(job: Job, path: str) -> str | None:
    """The download URL of a file inside the job's run folder (None for anything outside it, also through ``..`` or
    a symbolic link: the events naming files are written by the run, so they are not taken at their word)."""
    root, target = run_folder(job), Path(path)
    if root is None:
        return None
    try:
        relative = target.relative_to(root)
    except ValueError:
        return None
    if ".." in relative.parts or not target.resolve().is_relative_to(root.resolve()):
        return None
    return f"/api/jobs/{job.id}/files/{quote(relative.as_posix())}"


def read_new_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines of ``path`` from byte ``offset``; returns them and the offset after the last one."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if size < offset:  # the file was replaced: read the new one from the start
                offset = 0
            if size == offset:
                return [], offset
            handle.seek(offset)
            chunk = handle.read(READ_CHUNK)
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    records = []
    for line in chunk[:end].split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a killed writer
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            records.append(record)
    return records, offset + end + 1


def present(job: Job, record: dict[str, Any]) -> dict[str, Any]:
    """A run event as clients see it: the job id, the event's fields, and URLs for files the job can serve."""
    data = {k: v for k, v in record.items() if k != "seq"}
    data["job_id"] = job.id
    if isinstance(data.get("images"), list):
        data["image_urls"] = [file_url(job, str(p)) for p in data["images"]]
    if data["event"] == "finished" and isinstance(data.get("output"), str):
        data["url"] = file_url(job, data["output"]) if Path(data["output"]).is_file() else None
    return data


def progress_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Job columns an event updates."""
    event = record["event"]
    if event == "run_started":
        return {"total_steps": record.get("total_steps"), "step": record.get("start_step")}
    if event == "step":
        return {key: record.get(key) for key in ("step", "epoch", "loss", "it_per_s", "eta_s")}
    if event == "finished":
        return {"output": record.get("output"), "step": record.get("step"), "eta_s": 0.0}
    return {}


def store(job: Job, records: list[dict[str, Any]], offset: int, now: float) -> str | None:
    """Store the events and the progress they carry (one call per batch, inside the caller's transaction).

    Returns the job's phase after the batch when it changed.
    """
    rows, updates, phase = [], {}, job.phase
    for record in records:
        data = present(job, record)
        at = float(data.get("time") or now)
        rows.append({"job": job.id, "at": at, "event": data["event"][:64], "data": data})
        updates.update(progress_fields(record))
        new_phase = PHASE_AFTER.get(record["event"])
        if new_phase is not None and new_phase != phase:
            rows.append({"job": job.id, "at": at, "event": "phase",
                         "data": {"job_id": job.id, "event": "phase", "time": at, "phase": new_phase}})
            phase = new_phase
    if rows:
        JobEvent.insert_many(rows).execute()
    changed = phase != job.phase
    Job.update(events_offset=offset, last_event_at=now if records else job.last_event_at,
               **({"phase": phase} if changed else {}), **updates).where(Job.id == job.id).execute()
    job.phase = phase
    return phase if changed else None
