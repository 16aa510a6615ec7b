"""Requests while many event streams and slow clients are open.

Starts ``simpletuner server`` (SQLite in a throw-away workspace, an admin and an API key made with the CLI), then
measures, first with nothing else open and then with ``--streams`` open event streams (each read continuously) and
``--slow`` clients sending request bodies one byte per second (reconnecting when the server drops them):

- ``/health`` and API-key ``GET /api/training/status`` latency (p50, p99) at a few clients each;
- ``GET /api/training/status`` throughput at 64 clients, and its ratio to the run without streams.

Targets: p99 ≤ 50 ms for both under load, and the throughput ratio ≥ 0.90.

    python bench/stream_load.py [--streams 1000] [--slow 200] [--seconds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from http_status import load, start_server  # noqa: E402 (the same server start-up and load generator)


async def stream_reader(port: int, key: str, opened: list[int], stop: asyncio.Event) -> None:
    """One event stream, read until ``stop``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"a stream was refused: {head.decode(errors='replace')}")
    opened.append(1)
    try:
        while not stop.is_set():
            read = asyncio.ensure_future(reader.read(65536))
            done, _ = await asyncio.wait({read, asyncio.ensure_future(stop.wait())},
                                         return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                break
            if not read.result():
                raise RuntimeError("the server ended a stream")
    finally:
        writer.close()


async def slow_body(port: int, stop: asyncio.Event, dropped: list[int]) -> None:
    """A client sending a login body one byte per second, reconnecting whenever the server drops it."""
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        try:
            while not stop.is_set():
                writer.write(b" ")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), 1.0):
                        dropped.append(1)  # answered (408): the server gave up on it
                        break
                except TimeoutError:
                    continue
        except ConnectionError:
            dropped.append(1)
        finally:
            writer.close()


async def measure(port: int, key: str, seconds: float) -> dict[str, tuple[float, float, float]]:
    auth = f"X-API-Key: {key}\r\n"
    return {
        "health@8": await load(port, "/health", "", 8, seconds),
        "status@8": await load(port, "/api/training/status", auth, 8, seconds),
        "status@64": await load(port, "/api/training/status", auth, 64, seconds),
    }


async def under_load(port: int, key: str, streams: int, slow: int, seconds: float
                     ) -> tuple[dict[str, tuple[float, float, float]], int, int]:
    stop = asyncio.Event()
    opened: list[int] = []
    dropped: list[int] = []
    tasks = []
    for index in range(streams):
        tasks.append(asyncio.ensure_future(stream_reader(port, key, opened, stop)))
        if index % 50 == 49:
            await asyncio.sleep(0.05)  # open them at a realistic pace rather than in one burst
    tasks += [asyncio.ensure_future(slow_body(port, stop, dropped)) for _ in range(slow)]
    while len(opened) < streams:
        failed = [task for task in tasks if task.done() and task.exception()]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)  # the slow clients have started sending
    results = await measure(port, key, seconds)
    still_open = sum(1 for task in tasks[:streams] if not task.done())
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return results, still_open, len(dropped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # each stream is a socket on both sides
    server = start_server("current", args.workers, {}, "--streams-per-user", str(args.streams + 10),
                          "--streams-per-key", str(args.streams + 10))
    try:
        quiet = asyncio.run(measure(server.port, server.key, args.seconds))
        loaded, still_open, dropped = asyncio.run(under_load(server.port, server.key, args.streams, args.slow,
                                                             args.seconds))
    finally:
        server.process.terminate()
        server.process.wait(timeout=60)
    print(f"{'load':>10}  {'open':>22}  {'req/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}")
    for name in quiet:
        for label, results in (("nothing", quiet), (f"{args.streams} streams+{args.slow} slow", loaded)):
            rate, p50, p99 = results[name]
            print(f"{name:>10}  {label:>22}  {rate:>7.0f}  {p50:>7.2f}  {p99:>7.2f}")
    ratio = loaded["status@64"][0] / quiet["status@64"][0]
    worst_p99 = max(loaded["health@8"][2], loaded["status@8"][2])
    print(f"streams still open at the end: {still_open}/{args.streams}; slow clients dropped by the server: "
          f"{dropped}")
    print(f"status throughput at 64 clients with streams / without: {ratio:.2f} (target ≥ 0.90)")
    print(f"p99 of /health and status at 8 clients with streams: {worst_p99:.1f} ms (target ≤ 50 ms)")


if __name__ == "__main__":
    main()
