"""The gunicorn worker of ``simpletuner server``: gunicorn's asyncio (ASGI) worker with a deadline on the first
request's headers and event streams that end as soon as the worker is asked to stop.

gunicorn bounds the wait for the next request on a kept-alive connection (``keepalive``) but not the headers of a
connection's first request; without a deadline a client could hold a connection open forever by sending one byte
at a time. The bridge (:mod:`.bridge`) bounds bodies.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers.gasgi import ASGIWorker

from simpletuner.ui.jobs.service import WORKER_STOPPING

#: Seconds a new connection has to send the headers of its first request.
HEADER_TIMEOUT_S = 10.0


class DeadlineProtocol(ASGIProtocol):  # type: ignore[misc]
    """gunicorn's HTTP protocol, closing a connection whose first request's headers take too long."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: Any) -> None:
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._header_timer = self.worker.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _on_headers_complete(self) -> Any:
        self._cancel_header_timer()
        return super()._on_headers_complete()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self._closed:
            self._keepalive_timeout()  # gunicorn's own way of closing an idle connection and waking its task


class ServerWorker(ASGIWorker):  # type: ignore[misc]
    """The worker (see the module documentation); the header deadline comes from the bridge's settings."""

    def _setup_event_loop(self) -> None:
        super()._setup_event_loop()
        create_server = self.loop.create_server

        async def create_deadline_server(protocol_factory: Any, *args: Any, **kwargs: Any) -> Any:
            def factory() -> DeadlineProtocol:
                protocol = DeadlineProtocol(self)
                settings = getattr(self.asgi, "settings", None)
                protocol.header_timeout_s = getattr(settings, "header_timeout_s", HEADER_TIMEOUT_S)
                return protocol
            return await create_server(factory, *args, **kwargs)

        # gunicorn builds its protocol inside its serving coroutine: this is the one place to swap a subclass in
        self.loop.create_server = create_deadline_server

    def handle_exit_signal(self) -> None:
        """SIGTERM: stop accepting requests and end every event stream now, so that the graceful shutdown does
        not wait for streams that would never end by themselves."""
        WORKER_STOPPING.set()
        hub = getattr(self.asgi, "hub", None)
        if hub is not None:
            hub.end_all()
        super().handle_exit_signal()
