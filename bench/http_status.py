"""Throughput and latency of ``GET /api/training/status`` with an API key, beside a bare Falcon route.

Starts ``simpletuner server`` (SQLite in a throw-away workspace, an admin and an API key made with the CLI) and a
bare Falcon app returning constant JSON under the same gunicorn settings, then drives both with an asyncio load
generator (keep-alive connections) at 1, 16 and 64 concurrent clients. Prints requests/s, p50 and p99 latency, the
authenticated/bare throughput ratio, server start-up time and the resident memory of the server processes.

    python bench/http_status.py [--seconds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PASSWORD = "bench password 123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_bare(port: int, workers: int) -> None:
    """A bare Falcon route under the gunicorn settings ``simpletuner server`` uses."""
    import falcon
    from gunicorn.app.base import BaseApplication

    class Constant:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {"status": "idle", "job": None}

    class Bare(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {"bind": [f"127.0.0.1:{port}"], "workers": workers, "worker_class": "gthread",
                               "threads": 4, "keepalive": 5, "accesslog": None, "loglevel": "warning"}.items():
                self.cfg.set(key, value)

        def load(self):  # type: ignore[no-untyped-def]
            app = falcon.App()
            app.add_route("/api/training/status", Constant())
            return app

    Bare().run()


async def client(port: int, path: str, headers: str, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode()
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def load(port: int, path: str, headers: str, concurrency: int, seconds: float) -> tuple[float, float, float]:
    latencies: list[float] = []
    until = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(client(port, path, headers, until, latencies) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(latencies) / elapsed, statistics.median(ordered) * 1000, p99 * 1000


def wait_healthy(port: int, path: str, process: subprocess.Popen) -> None:
    import http.client

    while True:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {process.stdout.read() if process.stdout else ''}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status in (200, 401):
                return
        except OSError:
            time.sleep(0.02)


def rss_mib(pid: int) -> float:
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.workers)
        return
    workspace = Path(tempfile.mkdtemp(prefix="st-bench-"))
    env = {**os.environ, "SIMPLETUNER_WORKSPACE": str(workspace)}
    subprocess.run([BIN / "simpletuner", "users", "create", "--username", "bench", "--email", "b@example.org",
                    "--admin"], input=PASSWORD + "\n", text=True, env=env, check=True, capture_output=True)
    key = subprocess.run([BIN / "simpletuner", "apikeys", "create", "--user", "bench"], text=True, env=env,
                         check=True, capture_output=True).stdout.strip()
    port, bare_port = free_port(), free_port()
    started = time.perf_counter()
    server = subprocess.Popen([BIN / "simpletuner", "server", "--port", str(port), "--workers", str(args.workers)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_healthy(port, "/health", server)
    startup = time.perf_counter() - started
    bare = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(bare_port), "--workers",
                             str(args.workers)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_healthy(bare_port, "/api/training/status", bare)
    results = {}
    try:
        for concurrency in (1, 16, 64):
            auth = asyncio.run(load(port, "/api/training/status", f"X-API-Key: {key}\r\n", concurrency,
                                    args.seconds))
            plain = asyncio.run(load(bare_port, "/api/training/status", "", concurrency, args.seconds))
            results[concurrency] = (auth, plain)
        memory = rss_mib(server.pid)
    finally:
        for process in (server, bare):
            process.terminate()
            process.wait(timeout=30)
    print(f"{'clients':>7}  {'auth req/s':>10}  {'p50 ms':>7}  {'p99 ms':>7}  {'bare req/s':>10}  {'p50 ms':>7}  "
          f"{'p99 ms':>7}  {'auth/bare':>9}")
    for concurrency, (auth, plain) in results.items():
        print(f"{concurrency:>7}  {auth[0]:>10.0f}  {auth[1]:>7.2f}  {auth[2]:>7.2f}  {plain[0]:>10.0f}  "
              f"{plain[1]:>7.2f}  {plain[2]:>7.2f}  {auth[0] / plain[0]:>9.2f}")
    print(f"server start-up (spawn to first /health answer): {startup:.2f} s")
    print(f"server resident memory (master + {args.workers} workers): {memory:.0f} MiB")
    print(json.dumps({"startup_s": round(startup, 2), "rss_mib": round(memory),
                      "results": {c: {"auth": a, "bare": b} for c, (a, b) in results.items()}}))


if __name__ == "__main__":
    main()
