"""Throughput and latency of ``GET /api/training/status`` with an API key, beside a bare Falcon route.

Starts ``simpletuner server`` (SQLite in a throw-away workspace, an admin and an API key made with the CLI) and a
bare Falcon app returning constant JSON under the same gunicorn settings, then drives both with an asyncio load
generator (keep-alive connections) at 1, 16 and 64 concurrent clients. Prints requests/s, p50 and p99 latency, the
authenticated/bare throughput ratio, server start-up time and the resident memory of the server processes.

With ``--baseline REF`` a second ``simpletuner server`` runs the ``ui/`` and ``core/`` of that git revision (its own
workspace, so its schema is its own) and is measured in the same run, turn about with the current tree, so that a
change is judged against the same machine load.

    python bench/http_status.py [--seconds 5] [--workers 2] [--baseline REF]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


#: Imported first by a baseline server (``PYTHONPATH``): serves ``simpletuner.<folder>`` from the baseline tree.
BASELINE_SITECUSTOMIZE = """
import importlib.machinery, sys

class _BaselineTree:
    root = {root!r}

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        parts = name.split(".")
        if parts[0] != "simpletuner" or len(parts) < 2:
            return None
        return importlib.machinery.PathFinder.find_spec(name, ["/".join([cls.root, *parts[1:-1]])])

sys.meta_path.insert(0, _BaselineTree)
"""


def baseline_env(ref: str) -> dict[str, str]:
    """Environment variables that make a child process import SimpleTuner from git revision ``ref``."""
    repository = Path(__file__).resolve().parent.parent
    tree = Path(tempfile.mkdtemp(prefix="st-bench-baseline-"))
    archive = subprocess.run(["git", "-C", str(repository), "archive", "--format=tar", ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    shim = tree / "_bench_site"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BASELINE_SITECUSTOMIZE.format(root=str(tree)))
    return {"PYTHONPATH": str(shim)}


@dataclasses.dataclass
class Server:
    """A ``simpletuner server`` with an admin's API key."""

    name: str
    process: subprocess.Popen
    port: int
    key: str
    startup_s: float


def start_server(name: str, workers: int, extra_env: dict[str, str], *flags: str,
                 before_start: Callable[[Path], None] | None = None) -> Server:
    """A fresh workspace, an admin and an API key made with the CLI, and the server on a free loopback port;
    ``before_start(workspace)`` runs just before the server starts."""
    workspace = Path(tempfile.mkdtemp(prefix="st-bench-"))
    env = {**os.environ, **extra_env, "SIMPLETUNER_WORKSPACE": str(workspace)}
    subprocess.run([BIN / "simpletuner", "users", "create", "--username", "bench", "--email", "b@example.org",
                    "--admin"], input=PASSWORD + "\n", text=True, env=env, check=True, capture_output=True)
    key = subprocess.run([BIN / "simpletuner", "apikeys", "create", "--user", "bench"], text=True, env=env,
                         check=True, capture_output=True).stdout.strip()
    if before_start is not None:
        before_start(workspace)
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([BIN / "simpletuner", "server", "--port", str(port), "--workers", str(workers), *flags],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_healthy(port, "/health", process)
    return Server(name, process, port, key, time.perf_counter() - started)


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of the server's processes: the master, then each child (workers, the job supervisor)."""
    memory: dict[str, float] = {}
    for index, p in enumerate([pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]):
        cmdline = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        role = "master" if index == 0 else "supervisor" if b"simpletuner.ui.jobs.supervisor" in cmdline else "worker"
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                memory[f"{role} {p}"] = int(line.split()[1]) / 1024
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", metavar="REF", help="also measure the server of this git revision")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.workers)
        return
    servers = [start_server("current", args.workers, {})]
    if args.baseline:
        servers.append(start_server(args.baseline, args.workers, baseline_env(args.baseline)))
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(bare_port), "--workers",
                             str(args.workers)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_healthy(bare_port, "/api/training/status", bare)
    results: dict[int, dict[str, tuple[float, float, float]]] = {}
    try:
        for concurrency in (1, 16, 64):
            row = results[concurrency] = {}
            for server in servers:
                row[server.name] = asyncio.run(load(server.port, "/api/training/status",
                                                    f"X-API-Key: {server.key}\r\n", concurrency, args.seconds))
            row["bare"] = asyncio.run(load(bare_port, "/api/training/status", "", concurrency, args.seconds))
        memory = {server.name: rss_mib(server.process.pid) for server in servers}
    finally:
        for process in (*(server.process for server in servers), bare):
            process.terminate()
            process.wait(timeout=30)
    names = [server.name for server in servers]
    print(f"{'clients':>7}  {'server':>10}  {'req/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'/bare':>6}")
    for concurrency, row in results.items():
        for name in [*names, "bare"]:
            rate, p50, p99 = row[name]
            print(f"{concurrency:>7}  {name[:10]:>10}  {rate:>7.0f}  {p50:>7.2f}  {p99:>7.2f}  "
                  f"{rate / row['bare'][0]:>6.2f}")
    for server in servers:
        parts = ", ".join(f"{role.split()[0]} {mib:.0f}" for role, mib in memory[server.name].items())
        print(f"{server.name}: start-up (spawn to first /health answer) {server.startup_s:.2f} s; resident memory "
              f"{sum(memory[server.name].values()):.0f} MiB ({parts})")
    print(json.dumps({"startup_s": {s.name: round(s.startup_s, 2) for s in servers}, "rss_mib": memory,
                      "results": results}))


if __name__ == "__main__":
    main()
