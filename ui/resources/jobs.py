"""Training jobs over HTTP: start, stop, list, inspect, reorder the queue, download logs and outputs."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from pathlib import Path

import attrs
import falcon

from simpletuner.core.config.loading import build_schema
from simpletuner.core.config.snapshot import read_run_snapshot, snapshot_differences
from simpletuner.core.errors import ConfigError, WorkspaceError
from simpletuner.core.training.run_folders import read_run
from simpletuner.core.trying import TryError, TryRequest
from simpletuner.ui.http import bad_request, int_param, only_keys, read_json
from simpletuner.ui.jobs import queue
from simpletuner.ui.jobs.guard import check_job
from simpletuner.ui.jobs.launch import LOG_FILE, job_dir, job_request, run_folder, tail_lines
from simpletuner.ui.jobs.models import ACTIVE, COMPLETED, STATUSES, TRY, Job
from simpletuner.ui.jobs.views import detail, summary
from simpletuner.ui.resources.base import Resource, send_json
from simpletuner.ui.workflow import ownership

VIEW = "config.view"
STOP = ("job.stop.own", "job.stop.all")


def _job(job_id: int) -> Job:
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise falcon.HTTPNotFound(description=f"no job with id {job_id}")
    return job


def _job_id(data: dict, key: str = "job_id") -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"{key} must be a job id (a positive integer)")
    return value


class TrainingStart(Resource):
    """``POST /api/training/start`` ``{"environment": NAME, "executor": NAME, "executor_options": {...}}`` →
    ``{job_id, status, position, executor}``.

    The environment is loaded and checked first; a config with problems is refused (422) with every problem, and
    nothing is queued. ``executor`` (optional) runs this job elsewhere than the environment's ``executor`` says, and
    ``executor_options`` override the executor's options for this job (by key, or without the executor's prefix:
    ``{"address": …}`` for ``ray_address``); privileged ones need ``config.trusted``.
    """

    permissions = {"POST": "job.start"}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"environment", "executor", "executor_options"})
        name = data.get("environment")
        if not isinstance(name, str) or not name:
            raise bad_request("environment is required: the name of an environment (a folder under configs/)")
        executor = data.get("executor")
        if executor is not None and (not isinstance(executor, str) or not executor):
            raise bad_request("executor must be the name of an installed executor (local, ray, slurm, ...)")
        overrides = data.get("executor_options")
        if overrides is not None and not isinstance(overrides, dict):
            raise bad_request("executor_options must be an object of the executor's options, e.g. "
                              '{"partition": "gpu"}')
        principal = self.principal(req)
        try:
            request = job_request(self.ctx.workspace, self.ctx.registry, name, principal.user_id,
                                  principal.username, executor=executor, executor_options=overrides,
                                  permissions=frozenset(principal.permissions))
            ownership.require_change(principal, name)
            guard = check_job(self.ctx.workspace, self.ctx.registry, name)
        except ConfigError as exc:
            send_json(resp, {"title": "Invalid configuration",
                             "description": f"environment {name!r} has {len(exc.problems)} problem(s); fix them "
                                            "and start again", "problems": exc.problems}, status=422)
            return
        except WorkspaceError as exc:
            raise falcon.HTTPNotFound(description=str(exc)) from None
        if guard.path_problems:
            send_json(resp, {"title": "Paths outside the allowed roots",
                             "description": f"environment {name!r} names files or folders the server does not allow",
                             "problems": guard.path_problems}, status=422)
            return
        if guard.pending:
            self.audit(req, "job_held_for_approval", target=name, success=False,
                       detail={"pending": [env for env, _ in guard.pending]})
            send_json(resp, {"title": "Approval needed",
                             "description": "privileged values wait for approval by a user holding config.trusted",
                             "problems": guard.approval_problems,
                             "pending": [{"environment": env, "keys": keys} for env, keys in guard.pending]},
                      status=409)
            return
        job = queue.submit(self.ctx.database, request, self.ctx.now())
        self.audit(req, "job_start", target=name, detail={"job_id": job.id, "executor": job.executor or "local",
                                                           "executor_options": sorted(overrides or {})})
        position = queue.positions().get(job.id)
        send_json(resp, {"job_id": job.id, "status": "queued" if job.status == "queued" else "running",
                         "position": position, "executor": job.executor or "local"}, status=202)


class JobTry(Resource):
    """``POST /api/jobs/{id}/try`` ``{"prompts": [...], "strength": 1.0, "seed": N, "steps": N, "checkpoint":
    "checkpoint-500"}`` → ``{job_id, status, position}``: queue a short job that renders the prompts with the
    training job's model (its final model, or a checkpoint) beside the base model, on the training job's GPU set
    and executor, into ``tries/`` of its run folder (listed under the training job's ``outputs.tries``).

    It needs what starting the environment needs (``job.start``, the right to change the environment, a config
    that loads, paths inside the allowed roots, approved privileged values).
    """

    permissions = {"POST": "job.start"}

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        try:
            request = TryRequest.from_json(data)
        except TryError as exc:
            raise bad_request(str(exc)) from None
        source = _job(job_id)
        if source.kind == TRY:
            raise bad_request(f"job {source.id} is a try; give the id of the training job whose model to try")
        folder = run_folder(source)
        if folder is None or not folder.is_dir():
            raise falcon.HTTPConflict(description=f"job {source.id} has no run folder yet; try it once it has "
                                                  "finished or saved a checkpoint")
        if request.checkpoint is None and source.status != COMPLETED:
            raise falcon.HTTPConflict(description=f"job {source.id} is {source.status}: only a completed job has a "
                                                  "final model; give one of its checkpoints (checkpoint-N)")
        if request.checkpoint is not None and not (folder / request.checkpoint).is_dir():
            raise falcon.HTTPConflict(description=f"job {source.id} has no {request.checkpoint} in its run folder")
        principal = self.principal(req)
        name = source.environment
        try:
            started = job_request(self.ctx.workspace, self.ctx.registry, name, principal.user_id,
                                  principal.username, executor=source.executor,
                                  executor_options=source.executor_options,
                                  permissions=frozenset(principal.permissions))
            ownership.require_change(principal, name)
            guard = check_job(self.ctx.workspace, self.ctx.registry, name)
        except ConfigError as exc:
            send_json(resp, {"title": "Invalid configuration", "description": f"environment {name!r} has "
                             f"{len(exc.problems)} problem(s)", "problems": exc.problems}, status=422)
            return
        except WorkspaceError as exc:
            raise falcon.HTTPNotFound(description=str(exc)) from None
        problems = guard.path_problems or guard.approval_problems
        if problems:
            send_json(resp, {"title": "The environment cannot run", "description": f"environment {name!r} cannot "
                             "run jobs until these are fixed", "problems": problems}, status=409)
            return
        # one process on the training job's GPUs; the output folder is the run's own, so a try never waits for the
        # environment's next training job (only for the GPUs)
        job = queue.submit(self.ctx.database, attrs.evolve(
            started, output_dir=str(folder), launcher_args=None, resources=None, kind=TRY,
            gpu_ids=tuple(source.gpu_ids) if source.gpu_ids is not None else None,
            task={"request": request.to_json(), "run_dir": str(folder), "job_id": source.id}), self.ctx.now())
        self.audit(req, "job_try", target=name, detail={"job_id": job.id, "trained_job": source.id,
                                                         "prompts": len(request.prompts)})
        send_json(resp, {"job_id": job.id, "status": "queued" if job.status == "queued" else "running",
                         "position": queue.positions().get(job.id)}, status=202)


class TrainingStop(Resource):
    """``POST /api/training/stop`` ``{"job_id": N}`` (default: the caller's running job).

    A running job gets SIGTERM, then SIGKILL after the grace period; a queued one is cancelled. Stopping someone
    else's job needs ``job.stop.all``.
    """

    permissions = {"POST": STOP}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"job_id"})
        principal = self.principal(req)
        job_id = _job_id(data)
        if job_id is None:
            own = (Job.select().where(Job.status.in_(ACTIVE) & (Job.owner == principal.user_id))
                   .order_by(Job.started_at.desc()).first())
            if own is None:
                raise falcon.HTTPNotFound(description="you have no running job; give the job_id to stop")
            job = own
        else:
            job = _job(job_id)
        if job.owner_id != principal.user_id and "job.stop.all" not in principal.permissions:
            raise falcon.HTTPForbidden(title="Not permitted",
                                       description="you may stop only your own jobs (stopping others' jobs needs "
                                                   "the permission job.stop.all)")
        try:
            status = queue.request_stop(self.ctx.database, job.id, principal.username, self.ctx.now())
        except LookupError as exc:
            raise falcon.HTTPConflict(description=str(exc)) from None
        self.audit(req, "job_stop", target=job.environment, detail={"job_id": job.id, "status": status})
        send_json(resp, {"job_id": job.id, "status": status}, status=202)


class Jobs(Resource):
    """``GET /api/jobs?status=&environment=&owner=&limit=&before=``: job history, newest first."""

    permissions = {"GET": VIEW}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = Job.select().order_by(Job.id.desc())
        statuses = [s for s in (req.get_param("status") or "").split(",") if s]
        unknown = sorted(set(statuses) - set(STATUSES))
        if unknown:
            raise bad_request(f"unknown status {', '.join(unknown)}; use any of {', '.join(STATUSES)}")
        if statuses:
            query = query.where(Job.status.in_(statuses))
        if req.get_param("environment"):
            query = query.where(Job.environment == req.get_param("environment"))
        if req.get_param("owner"):
            query = query.where(Job.owner_name == req.get_param("owner"))
        before = req.get_param("before")
        if before is not None:
            query = query.where(Job.id < int_param(before, "before", 0, 2**62))
        limit = int_param(req.get_param("limit"), "limit", 50, 500)
        jobs = list(query.limit(limit))
        places = queue.positions()
        send_json(resp, {"jobs": [summary(job, places.get(job.id)) for job in jobs],
                         "next_before": jobs[-1].id if len(jobs) == limit else None})


class JobItem(Resource):
    """``GET /api/jobs/{id}``: the full record; ``PATCH`` ``{"position": N}`` moves a waiting job in the queue."""

    permissions = {"GET": VIEW, "PATCH": "job.reorder"}

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        lines = int_param(req.get_param("log_lines"), "log_lines", 40, 1000)
        send_json(resp, detail(_job(job_id), self.ctx.workspace, lines))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        data = read_json(req, self.ctx.settings.max_body_bytes)
        only_keys(data, {"position"})
        position = _job_id(data, "position")
        if position is None:
            raise bad_request("position is required: the job's new place in the queue (1 = next)")
        job = _job(job_id)
        try:
            order = queue.move(self.ctx.database, job.id, position, self.ctx.now())
        except LookupError as exc:
            raise falcon.HTTPConflict(description=str(exc)) from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        self.audit(req, "job_reorder", target=job.environment, detail={"job_id": job.id, "position": position})
        send_json(resp, {"queue": order})


def _snapshot(job: Job) -> dict:
    """The training configuration a job ran with (404 naming why there is none)."""
    if job.kind == TRY:
        raise falcon.HTTPNotFound(description=f"job #{job.id} is a try of a trained model: the configuration is "
                                              "that of the job it tried")
    snapshot = read_run_snapshot(Path(job.run_dir)) if job.run_dir else None
    if snapshot is None:
        raise falcon.HTTPNotFound(description=f"job #{job.id} has no configuration record: it "
                                              + ("has not started yet" if job.run_dir is None else
                                                 "its run ended before recording it, ran before runs recorded "
                                                 "theirs, or its run folder was removed"))
    return snapshot


class JobConfig(Resource):
    """``GET /api/jobs/{id}/config``: the configuration the job's run started with — every option's value and
    source, its datasets and LyCORIS config, secrets left out (see :mod:`simpletuner.core.config.snapshot`) — with
    the options' labels."""

    permissions = {"GET": VIEW}

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        snapshot = _snapshot(_job(job_id))
        send_json(resp, {**snapshot, "labels": _labels(self, snapshot["settings"])})


def _labels(resource: Resource, keys: Iterable[str]) -> dict[str, str]:
    schema = build_schema(resource.ctx.registry)
    return {key: schema.info(key).label if schema.knows(key) else key for key in keys}


class JobCompare(Resource):
    """``GET /api/jobs/compare?a=ID&b=ID``: two training runs side by side — their summaries, the settings whose
    values differ (with labels and sources), and whether their datasets and LyCORIS configs are the same."""

    permissions = {"GET": VIEW}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ids = [int_param(req.get_param(name), name, 0, 2**62) for name in ("a", "b")]
        if not all(ids):
            raise bad_request("name the two jobs to compare: /api/jobs/compare?a=ID&b=ID")
        jobs = [_job(job_id) for job_id in ids]
        first, second = (_snapshot(job) for job in jobs)
        rows = snapshot_differences(first, second)
        labels = _labels(self, [row["key"] for row in rows])
        send_json(resp, {
            "jobs": [summary(job) for job in jobs],
            "environments": [first.get("environment"), second.get("environment")],
            "settings": [{**row, "label": labels[row["key"]]} for row in rows],
            "datasets": {"same": first.get("datasets") == second.get("datasets"),
                         "a": first.get("datasets"), "b": second.get("datasets")},
            "lycoris_config": {"same": first.get("lycoris_config") == second.get("lycoris_config"),
                               "a": first.get("lycoris_config"), "b": second.get("lycoris_config")},
        })


class JobLog(Resource):
    """``GET /api/jobs/{id}/log[?tail=N]``: the job's console output as text."""

    permissions = {"GET": VIEW}

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        path = job_dir(self.ctx.workspace, _job(job_id).id) / LOG_FILE
        resp.content_type = "text/plain; charset=utf-8"
        tail = req.get_param("tail")
        if tail is not None:
            resp.text = "\n".join(tail_lines(path, int_param(tail, "tail", 40, 10000), max_bytes=4 << 20)) + "\n"
        elif path.is_file():
            resp.stream, resp.content_length = path.open("rb"), path.stat().st_size
        else:
            resp.text = ""


class JobFile(Resource):
    """``GET /api/jobs/{id}/files/{path}``: a file of the job's run folder (model, checkpoint, image).

    The path is resolved (symbolic links included) and must stay inside the job's own run folder, so a job's links
    serve the files that job made and never another job's. A job that ran before run folders existed serves its
    output folder, except the run folders of later jobs in it.
    """

    permissions = {"GET": VIEW}

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int, path: str) -> None:
        job = _job(job_id)
        folder = run_folder(job)
        if folder is None:
            raise falcon.HTTPNotFound(description=f"job {job.id} has not started: it has no files yet")
        root = folder.resolve()
        if "\x00" in path or path.startswith("/"):
            raise bad_request("path must be relative to the job's run folder")
        target = (root / path).resolve()
        if root not in target.parents or (job.run_dir is None and _in_run_folder(root, target)):
            raise falcon.HTTPForbidden(title="Outside the job's run folder",
                                       description="only files inside the job's own run folder can be downloaded")
        if not target.is_file():
            raise falcon.HTTPNotFound(description=f"no file {path!r} in the job's run folder")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        resp.content_type = kind
        if not kind.startswith("image/"):
            resp.downloadable_as = download_name(job, target.relative_to(root))
        resp.stream, resp.content_length = target.open("rb"), target.stat().st_size


def download_name(job: Job, relative: Path) -> str:
    """The name a downloaded file is saved under: environment, job and (inside a checkpoint) step before the file's
    own name, so that files of several runs and checkpoints can sit in one downloads folder —
    ``demo-flux-job3-step500-pytorch_lora_weights.safetensors``."""
    parts = [job.environment, f"job{job.id}"]
    step = next((p.removeprefix("checkpoint-") for p in relative.parts[:-1] if p.startswith("checkpoint-")), None)
    if step is not None:
        parts.append(f"step{step}")
    return "-".join([*parts, relative.name])


def _in_run_folder(root: Path, target: Path) -> bool:
    """Whether ``target`` lies in a run folder below ``root`` (a later job's, seen from an older job's folder)."""
    return any(read_run(parent) is not None for parent in target.parents if root in parent.parents)
