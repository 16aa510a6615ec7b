"""The ASGI application gunicorn's asyncio worker runs: the Falcon (WSGI) app behind an event loop.

A request is read on the event loop — headers by the worker, the body here, within deadlines — and only a request
that has fully arrived takes a thread of the pool to run the Falcon app. A response body is sent from the loop too,
so a client that reads slowly holds no thread either. Event streams (``GET /api/events``) leave the pool once the
app has authenticated them and checked their parameters: the hub (:mod:`.hub`) feeds them from the loop.

Bodies up to :attr:`BridgeSettings.small_body_bytes` are read completely before the app runs and must arrive within
``body_timeout_s``. A larger body (a dataset upload, an environment archive) is accepted only from a caller whose
session or API key is valid — an anonymous client never gets to send one — and must state its Content-Length; it
is streamed to the app as it arrives, and a pause longer than ``body_idle_s`` ends the request.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from simpletuner.ui.serving.hub import EventHub, StreamRequest, Subscriber
from simpletuner.ui.serving.stream_limits import TooManyStreams

#: The WSGI environ key through which ``GET /api/events`` hands its stream to the bridge.
STREAM_KEY = "simpletuner.event_stream"
#: Bytes read per trip to the pool when a file is sent.
FILE_BLOCK = 256 * 1024
#: The WSGI environ key telling the app that a bridge will serve its streams (absent under plain WSGI servers).
HUB_KEY = "simpletuner.stream_hub"


@attrs.frozen(kw_only=True)
class BridgeSettings:
    """Deadlines of request headers and bodies, the size up to which a body is read before the app runs, and
    the size of the thread pool that runs the app."""

    threads: int = 8
    header_timeout_s: float = 10.0
    small_body_bytes: int = 1024 * 1024
    body_timeout_s: float = 15.0
    body_idle_s: float = 30.0


class BodyTimeout(Exception):
    """The client did not send its body in time."""


class ClientGone(Exception):
    """The client disconnected while its body was being read."""


Authenticated = Callable[[dict[str, str]], bool]


class AsgiBridge:
    """The ASGI app (see the module documentation).

    Args:
        wsgi_app: the Falcon app.
        authenticated: given a request's lower-cased headers, whether they carry a valid session or API key (run
            in the pool; used before accepting a large body).
        hub_factory: builds the worker's event hub from a ``run_sync`` function, at lifespan start-up.
        settings: deadlines, sizes and the pool's size.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], authenticated: Authenticated,
                 hub_factory: Callable[[Callable[..., Any]], EventHub], settings: BridgeSettings | None = None) -> None:
        self.app = wsgi_app
        self.authenticated = authenticated
        self.hub_factory = hub_factory
        self.settings = settings or BridgeSettings()
        self.pool = ThreadPoolExecutor(max_workers=self.settings.threads, thread_name_prefix="app")
        self.hub: EventHub | None = None

    async def run_sync(self, function: Callable[[], Any]) -> Any:
        """Run a blocking function in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, function)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    # -- lifespan ----------------------------------------------------------------------------------------------

    async def _lifespan(self, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.hub = self.hub_factory(self.run_sync)
                    await self.hub.start()
                except Exception as exc:  # the worker cannot serve streams: say why and stop it
                    await send({"type": "lifespan.startup.failed", "message": f"event hub: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.hub is not None:
                    await self.hub.stop()
                self.pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests ----------------------------------------------------------------------------------------------

    async def _http(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        headers = _headers(scope)
        try:
            body = await self._body(headers, receive)
        except BodyTimeout as exc:
            await _plain(send, 408, f"Request timeout: {exc}")
            return
        except ClientGone:
            return
        except _Refused as refused:
            await _plain(send, refused.status, refused.message)
            return
        environ = _environ(scope, headers, body)
        if self.hub is not None:
            environ[HUB_KEY] = self.hub
        status, response_headers, chunks, rest = await self.run_sync(lambda: _call(self.app, environ))
        stream = environ.get(STREAM_KEY)
        if isinstance(stream, StreamRequest) and self.hub is not None and status.startswith("200"):
            try:
                subscriber = await self.hub.subscribe(stream)
            except TooManyStreams as exc:
                await _plain(send, 429, f"Too many event streams: {exc}", [(b"retry-after", b"30")])
                return
            # the stream's length is unknown: drop the Content-Length of the app's empty placeholder body
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(name, value) for name, value in response_headers if name != b"content-length"]})
            del environ, body, headers, response_headers, chunks, stream  # an open stream keeps only what it needs
            await self._stream(subscriber, receive, send)
            return
        await send({"type": "http.response.start", "status": int(status[:3]), "headers": response_headers})
        try:
            for chunk in chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            while rest is not None:
                chunk = await self.run_sync(lambda: next(rest, None))
                if chunk is None:
                    break
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if rest is not None and hasattr(rest, "close"):
                await self.run_sync(rest.close)

    async def _body(self, headers: dict[str, str], receive: Callable[..., Any]) -> io.IOBase:
        """The request body: read whole when small, else a stream the app reads as it arrives."""
        declared = headers.get("content-length")
        length = int(declared) if declared and declared.isdigit() else None
        if length is not None and length > self.settings.small_body_bytes:
            if not await self.run_sync(lambda: self.authenticated(headers)):
                raise _Refused(401, "Authentication required: bodies over "
                                    f"{self.settings.small_body_bytes} bytes are accepted from logged-in users only")
            return _StreamingBody(receive, asyncio.get_running_loop(), length, self.settings.body_idle_s)
        deadline = time.monotonic() + self.settings.body_timeout_s
        parts: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except TimeoutError:
                raise BodyTimeout(f"the body did not arrive within {self.settings.body_timeout_s:g} s") from None
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.small_body_bytes:
                raise _Refused(411, "Length required: send a Content-Length header with bodies over "
                                    f"{self.settings.small_body_bytes} bytes")
            parts.append(chunk)
            if not message.get("more_body", False):
                return io.BytesIO(b"".join(parts))

    async def _stream(self, subscriber: Subscriber, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        """Send a subscribed stream's events until the client leaves or the hub ends the stream."""
        assert self.hub is not None
        watcher = asyncio.get_running_loop().create_task(_end_on_disconnect(receive, subscriber))
        try:
            ends = False
            while not ends:
                data, ends = await subscriber.take()
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            await self.hub.unsubscribe(subscriber)


async def _end_on_disconnect(receive: Callable[..., Any], subscriber: Subscriber) -> None:
    """End ``subscriber`` once its client disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass
    subscriber.end()


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _StreamingBody(io.RawIOBase):
    """``wsgi.input`` of a large body: each read in the app's thread waits for the event loop to receive the next
    chunk, at most ``idle_s`` seconds."""

    def __init__(self, receive: Callable[..., Any], loop: asyncio.AbstractEventLoop, length: int,
                 idle_s: float) -> None:
        self._receive, self._loop, self._left, self._idle_s = receive, loop, length, idle_s
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes:
        async def next_message() -> dict[str, Any]:
            return await asyncio.wait_for(self._receive(), self._idle_s)  # type: ignore[no-any-return]

        try:
            message = asyncio.run_coroutine_threadsafe(next_message(), self._loop).result()
        except TimeoutError:
            raise OSError(f"the client paused sending its body for over {self._idle_s:g} s") from None
        if message["type"] == "http.disconnect":
            raise OSError("the client disconnected while sending its body")
        if not message.get("more_body", False):
            self._done = True
        return message.get("body", b"")  # type: ignore[no-any-return]

    def readinto(self, target: Any) -> int:
        """Fill ``target`` completely unless the body ends first: readers such as Falcon's bounded stream take a
        short read for the end of the body."""
        filled = 0
        while filled < len(target):
            if not self._buffer:
                if self._done or self._left <= 0:
                    break
                self._buffer = self._next_chunk()
                continue
            size = min(len(target) - filled, len(self._buffer))
            target[filled:filled + size] = self._buffer[:size]
            self._buffer = self._buffer[size:]
            self._left -= size
            filled += size
        return filled


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    """Request headers, lower-cased, repeated ones joined as HTTP allows (cookies with ``; ``)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in headers:
            headers[name] += ("; " if name == "cookie" else ", ") + value
        else:
            headers[name] = value
    return headers


def _environ(scope: dict[str, Any], headers: dict[str, str], body: io.IOBase) -> dict[str, Any]:
    """The WSGI environ of an ASGI request (PEP 3333: text as latin-1 code points of the raw bytes)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    path = scope.get("raw_path")
    path_info = path.split(b"?", 1)[0].decode("latin-1") if path else scope["path"].encode().decode("latin-1")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode().decode("latin-1"),
        "PATH_INFO": _unquote_path(path_info) if path else path_info,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "80",
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0] if client else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": _FileWrapper,
    }
    for name, value in headers.items():
        if "_" in name:
            continue  # "X_Forwarded_For" would land on the key of "X-Forwarded-For" (gunicorn drops these too)
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    if "CONTENT_LENGTH" not in environ and isinstance(body, io.BytesIO):
        environ["CONTENT_LENGTH"] = str(len(body.getbuffer()))
    return environ


class _FileWrapper:
    """``wsgi.file_wrapper``: a file sent in blocks of at least :data:`FILE_BLOCK` bytes, each block read in the
    pool, so that a download costs few trips between the event loop and the pool."""

    def __init__(self, filelike: Any, block_size: int = FILE_BLOCK) -> None:
        self.filelike, self.block_size = filelike, max(block_size, FILE_BLOCK)

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.filelike.read(self.block_size), b"")

    def close(self) -> None:
        if hasattr(self.filelike, "close"):
            self.filelike.close()


def _unquote_path(path: str) -> str:
    """Percent-decode a raw path into latin-1 code points of its bytes, as WSGI servers do."""
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(path).decode("latin-1")


def _call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]
          ) -> tuple[str, list[tuple[bytes, bytes]], list[bytes], Iterator[bytes] | None]:
    """Run the WSGI app in the pool: its status, headers, the body chunks it had ready and, for a streamed body,
    the iterator of the rest (read chunk by chunk later, so that a slow client holds no thread)."""
    started: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        started[:] = [status, headers]
        return written.append

    result = app(environ, start_response)
    if isinstance(result, (list, tuple)):
        chunks, rest = [*written, *result], None
    else:
        iterator = iter(result)
        first = next(iterator, None)  # start_response may come with the first chunk
        chunks = [*written, *([first] if first is not None else [])]
        rest = _closing(iterator, result) if first is not None else None
        if rest is None and hasattr(result, "close"):
            result.close()
    status, headers = started
    encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    return status, encoded, chunks, rest


class _closing(Iterator[bytes]):  # noqa: N801 - used like a function
    """An iterator over the rest of a WSGI body that closes the body's iterable when closed."""

    def __init__(self, iterator: Iterator[bytes], result: Any) -> None:
        self._iterator, self._result = iterator, result

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        if hasattr(self._result, "close"):
            self._result.close()


async def _plain(send: Callable[..., Any], status: int, text: str,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A short answer sent by the bridge itself, shaped like the app's errors (``{"title", "description"}``)."""
    title, _, description = text.partition(": ")
    body = json.dumps({"title": title, "description": description}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
