"""``GET /api/events``: server-sent events of every job the caller may see, resumable with ``Last-Event-ID``.

Each message is ``id: N`` and ``data: {...}`` (the default ``message`` type; the JSON's ``event`` field says what
happened: ``job_queued``, ``job_admitted``, ``job_started``, ``phase``, ``cache_progress``, ``step``,
``checkpoint_saved``, ``validation`` with ``image_urls``, ``finished``, ``job_finished`` …, and ``job_id``). Ids
increase across all jobs; a client that reconnects with ``Last-Event-ID`` (browsers do it by themselves) gets
everything it missed. Without one, the stream starts with the next event; ``?since=0`` replays all stored events.
``?job=N`` limits the stream to one job.

Under ``simpletuner server`` the stream is served by the worker's event loop (:mod:`simpletuner.ui.serving`): this
resource authenticates and checks the request, then hands it over; an open stream holds no thread. Under a plain
WSGI server (tests' in-process clients) it streams from a generator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import falcon

from simpletuner.ui.http import int_param
from simpletuner.ui.jobs.models import JobEvent
from simpletuner.ui.jobs.service import WORKER_STOPPING
from simpletuner.ui.resources.base import Resource
from simpletuner.ui.serving.bridge import HUB_KEY, STREAM_KEY
from simpletuner.ui.serving.hub import StreamRequest, format_event

#: How often a stream looks for new events, and how often it sends a comment to keep proxies from closing it.
POLL_S = 0.05
KEEPALIVE_S = 15.0
BATCH = 200


class Events(Resource):
    """The event stream (see the module documentation)."""

    permissions = {"GET": "config.view"}

    def __init__(self, context, stopping: threading.Event = WORKER_STOPPING) -> None:  # type: ignore[no-untyped-def]
        super().__init__(context)
        self.stopping = stopping

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        last = req.get_header("Last-Event-ID") or req.get_param("since")
        job_param = req.get_param("job")
        job_id = int_param(job_param, "job", 0, 2**62) if job_param is not None else None
        after = int_param(last, "Last-Event-ID (or since)", 0, 2**62) if last is not None else (
            JobEvent.select(JobEvent.id).order_by(JobEvent.id.desc()).scalar() or 0)
        resp.content_type = "text/event-stream"
        resp.set_header("X-Accel-Buffering", "no")  # nginx: pass events on at once
        if HUB_KEY in req.env:
            principal = req.context.principal
            req.env[STREAM_KEY] = StreamRequest(after=after, job_id=job_id, user_id=principal.user_id,
                                                session_hash=principal.session_hash,
                                                api_key_id=principal.api_key_id)
            resp.data = b""
            return
        resp.stream = self._stream(after, job_id)

    def _stream(self, after: int, job_id: int | None) -> Iterator[bytes]:
        yield b"retry: 2000\n\n"
        quiet_since = time.monotonic()
        while not self.stopping.is_set():
            query = JobEvent.select().where(JobEvent.id > after)
            if job_id is not None:
                query = query.where(JobEvent.job == job_id)
            rows = list(query.order_by(JobEvent.id).limit(BATCH))
            if rows:
                after = rows[-1].id
                yield b"".join(format_event(row.id, row.data) for row in rows)
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since >= KEEPALIVE_S:
                yield b": keepalive\n\n"
                quiet_since = time.monotonic()
            time.sleep(POLL_S)
