"""``GET /api/jobs/{id}/metrics``: a job's loss and learning-rate curve so far, for the Training page's chart.

The live stream only carries new steps; a page opened mid-run (or after the run) draws the curve from here and
then follows the stream. Long runs are thinned to at most ``points`` evenly spaced steps (the last one always kept).
"""

from __future__ import annotations

from typing import Any

import falcon

from simpletuner.ui.http import int_param
from simpletuner.ui.jobs.models import Job, JobEvent
from simpletuner.ui.jobs.retention import evenly_spaced
from simpletuner.ui.resources.base import Resource, send_json

MAX_POINTS = 2000


def thin(rows: list[dict[str, Any]], points: int) -> list[dict[str, Any]]:
    """At most ``points`` rows, evenly spaced, keeping the first and the last."""
    return [rows[index] for index in sorted(evenly_spaced(len(rows), points))]


class JobMetrics(Resource):
    """The step curve of one job: ``{"job_id", "total_steps", "steps": [{step, loss, lr}]}``."""

    permissions = {"GET": "config.view"}

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        job = Job.get_or_none(Job.id == job_id)
        if job is None:
            raise falcon.HTTPNotFound(description=f"no job with id {job_id}")
        points = max(1, int_param(req.get_param("points"), "points", MAX_POINTS, MAX_POINTS))
        query = (JobEvent.select(JobEvent.data).where((JobEvent.job == job.id) & (JobEvent.event == "step"))
                 .order_by(JobEvent.id))
        rows = [{"step": row.data.get("step"), "loss": row.data.get("loss"), "lr": row.data.get("lr")}
                for row in query]
        send_json(resp, {"job_id": job.id, "total_steps": job.total_steps, "steps": thin(rows, points)})
