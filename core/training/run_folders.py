"""Run folders: every training run writes into a folder of its own under the configured ``output_dir``, so no run
overwrites another's model, checkpoints, validation images, events or tracker files.

Layout::

    <output_dir>/
        cache/                             latents and text embeddings, content-keyed, shared by every run
        20250131-120005-flux-cats-job12/   a server job (job 12 of environment flux-cats)
            run.json                       {"environment", "job_id", "started_at"}
            events.jsonl  pytorch_lora_weights.safetensors  checkpoint-<step>/  validation/  logs/ ...
        20250131-130211-flux-cats/         a ``simpletuner train`` run
        checkpoint-<step>/                 checkpoints of versions before run folders (still found by ``latest``)

A name is the start time in UTC (``YYYYMMDD-HHMMSS``, so names sort by start), the environment and, for a server
job, its id; a folder is created exclusively, and a name already taken gets ``-2``, ``-3``, … appended. Only
``run.json`` says what a folder is: the name is for people.

``resume_from_checkpoint: latest`` (:func:`latest_checkpoint`) takes, among the run folders of the same environment
under ``output_dir``, the one started last that holds a complete checkpoint, and in it the checkpoint of the
highest step; only when no run folder of the environment holds one does it look at ``<output_dir>/checkpoint-<step>``
folders of earlier versions (highest step).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.atomic import atomic_write_json
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.events import EVENTS_FILE
from simpletuner.core.training.checkpoints import complete_checkpoints

RUN_FILE = "run.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@attrs.frozen
class RunRecord:
    """A run folder and what its ``run.json`` says."""

    path: Path
    environment: str
    job_id: int | None
    started_at: float


def run_folder_name(environment: str, started_at: float, job_id: int | None = None) -> str:
    """The readable name of a run folder (without the suffix a taken name gets)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started_at))
    label = _UNSAFE.sub("_", environment).strip("._-")[:60] or "run"
    return f"{stamp}-{label}" + (f"-job{job_id}" if job_id is not None else "")


def create_run_folder(output_dir: Path, environment: str, *, job_id: int | None = None,
                      now: float | None = None) -> Path:
    """Create a new run folder under ``output_dir`` (never one that exists) with its ``run.json``; returns it."""
    started_at = time.time() if now is None else now
    base = run_folder_name(environment, started_at, job_id)
    output_dir.mkdir(parents=True, exist_ok=True)
    attempt = 1
    while True:
        path = output_dir / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir()  # exclusive: two runs starting in the same second get different folders
        except FileExistsError:
            attempt += 1
            continue
        atomic_write_json(path / RUN_FILE, {"environment": environment, "job_id": job_id, "started_at": started_at})
        return path


def read_run(path: Path) -> RunRecord | None:
    """The record of a run folder; None for anything else (no or a malformed ``run.json``)."""
    try:
        data: Any = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    environment, job_id, started_at = data.get("environment"), data.get("job_id"), data.get("started_at")
    if not isinstance(environment, str) or isinstance(started_at, bool) or not isinstance(started_at, (int, float)):
        return None
    if not (job_id is None or type(job_id) is int):
        return None
    return RunRecord(path=path, environment=environment, job_id=job_id, started_at=float(started_at))


def run_folders(output_dir: Path, environment: str | None = None) -> list[RunRecord]:
    """The run folders under ``output_dir`` (of one environment when given), first started first."""
    if not output_dir.is_dir():
        return []
    records = [read_run(child) for child in output_dir.iterdir() if child.is_dir()]
    return sorted((r for r in records if r is not None and environment in (None, r.environment)),
                  key=lambda r: (r.started_at, r.path.name))


def latest_checkpoint(output_dir: Path, environment: str) -> Path | None:
    """The checkpoint ``resume_from_checkpoint: latest`` resumes (see the module's description), or None."""
    for run in reversed(run_folders(output_dir, environment)):
        found = complete_checkpoints(run.path)
        if found:
            return found[-1][1]
    legacy = complete_checkpoints(output_dir)
    return legacy[-1][1] if legacy else None


def claim_run_folder(path: Path) -> Path:
    """Check that ``path`` is a run folder no run has written into yet (the server creates one per job), so a
    finished run's outputs are never overwritten; returns it."""
    if read_run(path) is None:
        raise SimpleTunerError(f"run folder {path} has no valid {RUN_FILE}; let SimpleTuner create the run folder "
                               f"(leave --run-dir out)")
    if (path / EVENTS_FILE).exists():
        raise SimpleTunerError(f"run folder {path} already holds a run's outputs; each run needs a new one (leave "
                               f"--run-dir out)")
    return path


def shared_run_folder(accelerator: Any, output_dir: Path, environment: str, given: Path | None) -> Path:
    """The run folder of this run on every process: ``given`` (checked on the main process), else one the main
    process creates and sends to the others."""
    if given is not None:
        return claim_run_folder(given) if accelerator.is_main_process else given
    if accelerator.num_processes == 1:
        return create_run_folder(output_dir, environment)
    from accelerate.utils import broadcast_object_list

    name = [create_run_folder(output_dir, environment).name if accelerator.is_main_process else None]
    broadcast_object_list(name)  # pickled between this run's own processes: only the name the main process made
    return output_dir / str(name[0])
