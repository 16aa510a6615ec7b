"""Requests while many event streams and slow clients are open.

Starts ``simpletuner server`` (SQLite in a throw-away workspace, an admin and an API key made with the CLI), then
measures, first with nothing else open and then with ``--streams`` open event streams (each read continuously) and
``--slow`` clients sending request bodies one byte per second (reconnecting when the server drops them):

- ``/health`` and API-key ``GET /api/training/status`` latency (p50, p99) at a few clients each;
- ``GET /api/training/status`` throughput at 64 clients, and its ratio to the run without streams;
- the server's resident memory per open stream (its workers' growth once every stream is open, divided by their
  number);
- how long a step event takes from a run's write to its events file to every open stream: a "running" job whose
  process is a stand-in (``sleep``) is adopted by the server's job runner, and the bench appends step events to the
  run's ``events.jsonl`` while the streams are open.

Targets: p99 ≤ 50 ms for both under load, the throughput ratio ≥ 0.90, ≤ 20 KiB per idle stream, and step events
at every stream with p99 ≤ 250 ms.

    python bench/stream_load.py [--streams 1000] [--slow 200] [--seconds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
# the same server start-up, load generator and memory reading as the status bench
from http_status import Server, load, rss_mib, start_server  # noqa: E402


async def stream_reader(port: int, key: str, opened: list[int], stop: asyncio.Event, delays: list[float]) -> None:
    """One event stream, read until ``stop``; the delay of each step event (arrival − the time written in it) goes
    to ``delays``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"a stream was refused: {head.decode(errors='replace')}")
    opened.append(1)
    pending = b""
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
            arrived = time.time()
            pending += read.result()
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.startswith(b"data: ") and b'"event":"step"' in line:
                    delays.append(arrived - json.loads(line[6:])["time"])
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


@dataclasses.dataclass
class Loaded:
    """What the run with streams open measured."""

    results: dict[str, tuple[float, float, float]]
    still_open: int
    dropped: int
    rss_growth_mib: float
    delays: list[float]


async def write_steps(events: Path, count: int, every_s: float) -> None:
    """Append step events to a run's event file, as a trainer does, each stamped with its write time."""
    for step in range(1, count + 1):
        with events.open("a") as handle:
            handle.write(json.dumps({"event": "step", "step": step, "loss": 0.1, "time": time.time()}) + "\n")
        await asyncio.sleep(every_s)


async def under_load(server: Server, streams: int, slow: int, seconds: float, events: Path) -> Loaded:
    port, key = server.port, server.key
    stop = asyncio.Event()
    opened: list[int] = []
    dropped: list[int] = []
    delays: list[float] = []
    before = workers_rss_mib(server.process.pid)
    tasks = []
    for index in range(streams):
        tasks.append(asyncio.ensure_future(stream_reader(port, key, opened, stop, delays)))
        if index % 50 == 49:
            await asyncio.sleep(0.05)  # open them at a realistic pace rather than in one burst
    while len(opened) < streams:
        failed = [task for task in tasks if task.done() and task.exception()]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    growth = workers_rss_mib(server.process.pid) - before  # the idle streams alone
    tasks += [asyncio.ensure_future(slow_body(port, stop, dropped)) for _ in range(slow)]
    await asyncio.sleep(2.0)  # the slow clients have started sending
    await write_steps(events, 20, 0.25)
    await asyncio.sleep(1.0)  # the last event reaches everyone
    results = await measure(port, key, seconds)
    still_open = sum(1 for task in tasks[:streams] if not task.done())
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Loaded(results, still_open, len(dropped), growth, delays)


def workers_rss_mib(master: int) -> float:
    """Resident memory of the server's request workers together."""
    return sum(mib for role, mib in rss_mib(master).items() if role.startswith("worker"))


def adoptable_job(workspace: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A "running" job in the workspace database whose process is a stand-in: the server's job runner adopts it
    at start and stores what is appended to its ``events.jsonl``. Returns the stand-in and that file."""
    from simpletuner.plugins.executors.processes import start_ticks
    from simpletuner.ui.db import bind_models, open_database
    from simpletuner.ui.db.models import User
    from simpletuner.ui.jobs.models import Job, bind_job_models

    stand_in = subprocess.Popen(["sleep", "3600"])
    run_dir = workspace / "output" / "bench" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").touch()
    database = open_database(None, workspace)
    bind_models(database)
    bind_job_models(database)
    with database:
        now = time.time()
        Job.create(environment="bench", owner=User.get(), status="running", phase="training", created_at=now,
                   started_at=now, output_dir=str(run_dir.parent), run_dir=str(run_dir), pid=stand_in.pid,
                   process_start=start_ticks(stand_in.pid))
    return stand_in, run_dir / "events.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # each stream is a socket on both sides
    stand_in: list[subprocess.Popen[bytes]] = []
    events: list[Path] = []

    def before_start(workspace: Path) -> None:
        process, path = adoptable_job(workspace)
        stand_in.append(process)
        events.append(path)

    server = start_server("current", args.workers, {}, "--streams-per-user", str(args.streams + 10),
                          "--streams-per-key", str(args.streams + 10), before_start=before_start)
    try:
        quiet = asyncio.run(measure(server.port, server.key, args.seconds))
        loaded = asyncio.run(under_load(server, args.streams, args.slow, args.seconds, events[0]))
    finally:
        server.process.terminate()
        server.process.wait(timeout=60)
        for process in stand_in:
            process.kill()
    print(f"{'load':>10}  {'open':>22}  {'req/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}")
    for name in quiet:
        for label, results in (("nothing", quiet), (f"{args.streams} streams+{args.slow} slow", loaded.results)):
            rate, p50, p99 = results[name]
            print(f"{name:>10}  {label:>22}  {rate:>7.0f}  {p50:>7.2f}  {p99:>7.2f}")
    ratio = loaded.results["status@64"][0] / quiet["status@64"][0]
    worst_p99 = max(loaded.results["health@8"][2], loaded.results["status@8"][2])
    delays = sorted(loaded.delays)
    expected = 20 * args.streams
    print(f"streams still open at the end: {loaded.still_open}/{args.streams}; slow clients dropped by the server: "
          f"{loaded.dropped}")
    print(f"server memory per open stream: {loaded.rss_growth_mib * 1024 / args.streams:.1f} KiB (target ≤ 20 KiB)")
    print(f"step events received: {len(delays)}/{expected}; write → client p50 "
          f"{statistics.median(delays) * 1000:.0f} ms, p99 {delays[int(len(delays) * 0.99) - 1] * 1000:.0f} ms "
          f"(target ≤ 250 ms)")
    print(f"status throughput at 64 clients with streams / without: {ratio:.2f} (target ≥ 0.90)")
    print(f"p99 of /health and status at 8 clients with streams: {worst_p99:.1f} ms (target ≤ 50 ms)")


if __name__ == "__main__":
    main()
