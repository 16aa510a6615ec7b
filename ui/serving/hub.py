"""One event poller per worker, fanned out to every open stream of that worker.

A stream costs a queue and a coroutine, not a thread or a database query: the hub reads new ``job_events`` rows
once per tick for all streams, formats each row once, and hands the bytes to the streams that want it. A stream
that reconnects with ``Last-Event-ID`` first catches up from the database, then joins the live fan-out without a
gap or a duplicate (both happen on the event loop, so nothing is dispatched in between). Every few seconds the hub
sends heartbeats, re-checks the credentials the streams were opened with (logout, revocation, deactivation end
them) and refreshes this worker's rows in ``open_streams``; on shutdown it ends every stream cleanly.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from simpletuner.ui.jobs.models import JobEvent
from simpletuner.ui.serving import credentials, stream_limits

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Rows read per query; a full batch is followed at once by the next.
BATCH = 500
#: A stream whose client reads slower than events arrive is ended after this many unsent chunks (it reconnects
#: with ``Last-Event-ID`` and catches up from the database).
MAX_PENDING = 256
HEARTBEAT = b": keepalive\n\n"
RETRY = b"retry: 2000\n\n"


@attrs.frozen(kw_only=True)
class StreamRequest:
    """What ``GET /api/events`` asks for, handed from the Falcon resource to the hub: events after ``after`` (of
    ``job_id`` only, when set), for a caller authenticated by a session or an API key."""

    after: int
    job_id: int | None
    user_id: int
    session_hash: str | None = None
    api_key_id: int | None = None


@attrs.frozen(kw_only=True)
class HubSettings:
    """Timing of the hub: ``poll_s`` between reads while streams are open, ``heartbeat_s`` between keep-alive
    comments, ``recheck_s`` between credential checks (and refreshes of this worker's stream rows)."""

    poll_s: float = 0.05
    heartbeat_s: float = 15.0
    recheck_s: float = 5.0
    limits: stream_limits.StreamLimits = stream_limits.StreamLimits()


def format_event(row_id: int, data: Any) -> bytes:
    """One server-sent event: ``id: N`` and the JSON data."""
    return f"id: {row_id}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class Subscriber:
    """One open stream: its request, the id of the last event it was given and the chunks not yet sent (``None``
    ends the stream). Kept small, since a worker holds a thousand of them: a list and, while the stream waits, one
    future."""

    __slots__ = ("request", "after", "row_id", "ended", "_pending", "_waiter")

    def __init__(self, request: StreamRequest, row_id: int) -> None:
        self.request = request
        self.after = request.after
        self.row_id = row_id
        self.ended = False
        self._pending: list[bytes | None] = []
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, chunk: bytes) -> None:
        """Queue ``chunk``; end the stream instead when its client has fallen too far behind."""
        if self.ended:
            return
        if len(self._pending) >= MAX_PENDING:
            self.end()
            return
        self._pending.append(chunk)
        self._wake()

    def end(self) -> None:
        """End the stream after what is already queued."""
        if not self.ended:
            self.ended = True
            self._pending.append(None)
            self._wake()

    async def take(self) -> tuple[bytes, bool]:
        """Wait for chunks; returns them joined and whether the stream ends after them."""
        while not self._pending:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks, self._pending = self._pending, []
        ends = chunks[-1] is None
        return b"".join(chunk for chunk in chunks if chunk is not None), ends

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class EventHub:
    """The fan-out of one worker (see the module documentation).

    Args:
        run_sync: runs a blocking function (database work) off the event loop and returns its result.
        settings: timing and limits.
        clock: the time source of credential and stream-row checks.
    """

    def __init__(self, run_sync: Callable[[Callable[[], T]], Awaitable[T]], settings: HubSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.run_sync = run_sync
        self.settings = settings or HubSettings()
        self.clock = clock
        self.worker = stream_limits.worker_token()
        self.subscribers: set[Subscriber] = set()
        self.last = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the newest event id and start polling."""
        self.last = await self.run_sync(_newest_event)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        """End every stream and stop polling (the worker is shutting down)."""
        self.end_all()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.run_sync(lambda: stream_limits.close_worker(self.worker))

    def end_all(self) -> None:
        """End every stream now; streams opened afterwards end at once (called from the worker's signal handler)."""
        self._stopping = True
        for subscriber in list(self.subscribers):
            subscriber.end()
        self._wake.set()

    # -- streams -----------------------------------------------------------------------------------------------

    async def subscribe(self, request: StreamRequest) -> Subscriber:
        """Open a stream: record it against the limits (raises :class:`~.stream_limits.TooManyStreams`), queue
        what it missed and join the live fan-out."""
        row_id = await self.run_sync(lambda: stream_limits.open_stream(
            self.worker, request.user_id, request.api_key_id, self.settings.limits, self.clock()))
        subscriber = Subscriber(request, row_id)
        subscriber.offer(RETRY)
        if self._stopping:
            subscriber.end()
            return subscriber
        while subscriber.after < self.last and not subscriber.ended:
            target = self.last
            rows = await self.run_sync(functools.partial(_events, subscriber.after, target, request.job_id))
            for event_id, _, chunk in rows:
                subscriber.offer(chunk)
                subscriber.after = event_id
            if len(rows) < BATCH:
                subscriber.after = max(subscriber.after, target)
        # no await between the check above and this line: nothing can be dispatched in between
        self.subscribers.add(subscriber)
        return subscriber

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a stream that ended (its client left, or the hub ended it)."""
        self.subscribers.discard(subscriber)
        subscriber.ended = True
        await self.run_sync(lambda: stream_limits.close_stream(subscriber.row_id))

    # -- the poller --------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        now = time.monotonic()
        next_heartbeat, next_recheck = now + self.settings.heartbeat_s, now + self.settings.recheck_s
        while not self._stopping:
            try:
                full = await self._poll() if self.subscribers else False
                now = time.monotonic()
                if now >= next_heartbeat:
                    next_heartbeat = now + self.settings.heartbeat_s
                    for subscriber in list(self.subscribers):
                        subscriber.offer(HEARTBEAT)
                if now >= next_recheck:
                    next_recheck = now + self.settings.recheck_s
                    await self._recheck()
            except Exception:  # a database hiccup must not end the poller; it tries again next tick
                log.exception("event hub: reading events failed; retrying")
                full = False
            if not full:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
                except TimeoutError:
                    pass

    async def _poll(self) -> bool:
        """Read and dispatch new events; True when a full batch came (more may be waiting)."""
        rows = await self.run_sync(lambda: _events(self.last, None, None))
        for row_id, job_id, chunk in rows:
            for subscriber in self.subscribers:
                wanted = subscriber.request.job_id
                if row_id > subscriber.after and (wanted is None or wanted == job_id):
                    subscriber.offer(chunk)
                    subscriber.after = row_id
            self.last = row_id
        return len(rows) >= BATCH

    async def _recheck(self) -> None:
        """End the streams whose credentials no longer hold; refresh this worker's stream rows."""
        subscribers = list(self.subscribers)
        sessions = {s.request.session_hash for s in subscribers if s.request.session_hash}
        keys = {s.request.api_key_id for s in subscribers if s.request.api_key_id is not None}
        now = self.clock()

        def check() -> tuple[set[str], set[int]]:
            stream_limits.refresh_worker(self.worker, now)
            return credentials.valid_sessions(sessions, now), credentials.valid_keys(keys, now)

        good_sessions, good_keys = await self.run_sync(check)
        for subscriber in subscribers:
            request = subscriber.request
            if request.api_key_id is not None:
                if request.api_key_id not in good_keys:
                    subscriber.end()
            elif request.session_hash not in good_sessions:
                subscriber.end()


def _newest_event() -> int:
    return int(JobEvent.select(JobEvent.id).order_by(JobEvent.id.desc()).scalar() or 0)


def _events(after: int, upto: int | None, job_id: int | None) -> list[tuple[int, int, bytes]]:
    """Up to :data:`BATCH` events after ``after`` (and at most ``upto``, of ``job_id`` only, when given), each as
    ``(id, job id, formatted bytes)``."""
    query = JobEvent.select(JobEvent.id, JobEvent.job, JobEvent.data).where(JobEvent.id > after)
    if upto is not None:
        query = query.where(JobEvent.id <= upto)
    if job_id is not None:
        query = query.where(JobEvent.job == job_id)
    return [(row.id, row.job_id, format_event(row.id, row.data)) for row in query.order_by(JobEvent.id).limit(BATCH)]
