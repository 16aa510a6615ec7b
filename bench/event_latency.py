"""Event latency and status throughput of the job runner on a live ``simpletuner server``.

1. Event latency: a job is started through the API and held in its caching phase (a throw-away data backend whose
   writes wait on a file); this script then appends 1,000 ``step`` events to the run's ``events.jsonl`` exactly as the
   trainer does (:class:`simpletuner.core.events.EventWriter`), one every 10 ms, while a client follows
   ``/api/events``. Latency = time received by the client - ``time`` written in the event. Prints median and p99.
2. ``GET /api/training/status`` throughput (keep-alive clients, API key) while idle and while the job runs, and
   their ratio.

    python bench/event_latency.py [--events 1000] [--seconds 4] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start within 90 s")


async def _client(port: int, request: bytes, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
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
    finally:
        writer.close()


async def load(port: int, path: str, headers: str, concurrency: int, seconds: float) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 (ms) of ``concurrency`` keep-alive clients for ``seconds``."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode()
    latencies: list[float] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(_client(port, request, until, latencies) for _ in range(concurrency)))
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(ordered) / (time.perf_counter() - started), statistics.median(ordered) * 1000, p99 * 1000

BIN = Path(sys.executable).parent
HELD = '''
import os, time
from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.specs import DataBackendSpec

def _held(root, options=None):
    from simpletuner.plugins.data_backends.local import LocalDataBackend

    class Held(LocalDataBackend):
        def write(self, path, data):
            while os.path.exists(os.path.join(self.root, ".hold")):
                time.sleep(0.05)
            super().write(path, data)
    return Held(root)

@hookimpl
def register_data_backends(register):
    register(DataBackendSpec(name="held-local", title="Held", description="bench", factory=_held))
'''


def held_site(root: Path) -> Path:
    """Install the held backend as a distribution into ``root/site``."""
    source = root / "held-src"
    (source / "st_bench_held").mkdir(parents=True)
    (source / "st_bench_held" / "__init__.py").write_text(HELD)
    (source / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "st-bench-held"
        version = "0"
        [project.entry-points.simpletuner]
        bench_held = "st_bench_held"
        [tool.setuptools]
        packages = ["st_bench_held"]
    """))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(root / "site"), str(source)], check=True, capture_output=True)
    return root / "site"


def make_environment(workspace: Path) -> None:
    from simpletuner.core.cli.demo_commands import make_demo_images
    from simpletuner.model_families.flux.tiny import build_tiny_flux_pipeline

    model = build_tiny_flux_pipeline(workspace / "models" / "tiny")
    make_demo_images(workspace / "datasets" / "bench", 2)
    env = workspace / "configs" / "bench"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({
        "model_family": "flux", "pretrained_model_name_or_path": str(model), "max_train_steps": 10,
        "num_train_epochs": 0, "train_batch_size": 1, "resolution": 128, "resolution_type": "pixel",
        "mixed_precision": "no", "output_dir": "output/bench", "flux_t5_max_tokens": 16, "report_to": "none"}))
    text = workspace / "cache" / "text"
    text.mkdir(parents=True)
    (text / ".hold").write_text("")
    (env / "multidatabackend.json").write_text(json.dumps([
        {"id": "d", "instance_data_dir": str(workspace / "datasets" / "bench"), "caption_strategy": "textfile"},
        {"id": "t", "dataset_type": "text_embeds", "default": True, "cache_dir": str(text), "type": "held-local"}]))


def follow(port: int, key: str, job_id: int, until: str, arrivals: list[tuple[float, dict]], ready: threading.Event,
           count: int = 1) -> None:
    """Read the event stream of one job, timestamping each event, until ``count`` events of type ``until``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", f"/api/events?job={job_id}&since=0", headers={"X-API-Key": key})
    response = conn.getresponse()
    ready.set()
    seen = 0
    while seen < count:
        line = response.readline()
        if line.startswith(b"data: "):
            event = json.loads(line[6:])
            arrivals.append((time.time(), event))
            seen += event["event"] == until
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="st-bench-events-"))
    workspace = root / "ws"
    workspace.mkdir()
    site = held_site(root)
    make_environment(workspace)
    env = {**os.environ, "SIMPLETUNER_WORKSPACE": str(workspace), "PYTHONPATH": str(site)}
    subprocess.run([BIN / "simpletuner", "users", "create", "--username", "bench", "--email", "b@example.org",
                    "--admin"], input="bench password 123\n", text=True, env=env, check=True, capture_output=True)
    key = subprocess.run([BIN / "simpletuner", "apikeys", "create", "--user", "bench"], text=True, env=env,
                         check=True, capture_output=True).stdout.strip()
    port = free_port()
    server = subprocess.Popen([BIN / "simpletuner", "server", "--port", str(port), "--stop-grace", "5"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = f"X-API-Key: {key}\r\n"
    try:
        wait_healthy(port, server)
        asyncio.run(load(port, "/api/training/status", headers, args.concurrency, 1.0))  # warm up both workers
        idle = asyncio.run(load(port, "/api/training/status", headers, args.concurrency, args.seconds))
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST", "/api/training/start", body=json.dumps({"environment": "bench"}),
                     headers={"X-API-Key": key, "Content-Type": "application/json"})
        job_id = json.loads(conn.getresponse().read())["job_id"]
        scanned: list[tuple[float, dict]] = []
        follow(port, key, job_id, "datasets_scanned", scanned, threading.Event())
        running = asyncio.run(load(port, "/api/training/status", headers, args.concurrency, args.seconds))

        from simpletuner.core.events import EVENTS_FILE, EventWriter

        arrivals: list[tuple[float, dict]] = []
        ready = threading.Event()
        reader = threading.Thread(target=follow, args=(port, key, job_id, "step", arrivals, ready, args.events))
        reader.start()
        ready.wait()
        with EventWriter(workspace / "output" / "bench" / EVENTS_FILE) as writer:
            for step in range(1, args.events + 1):
                writer.emit("step", step=step, epoch=1, loss=0.1, lr=1e-4, grad_norm=0.0, it_per_s=100.0,
                            eta_s=0.0, data_wait_s=0.0)
                time.sleep(0.01)
        reader.join(timeout=120)
        latencies = sorted(arrived - event["time"] for arrived, event in arrivals if event["event"] == "step")
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST", "/api/training/stop", body=json.dumps({"job_id": job_id}),
                     headers={"X-API-Key": key, "Content-Type": "application/json"})
        conn.getresponse().read()
        for _ in range(200):  # the stop is over when the status is idle again
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", "/api/training/status", headers={"X-API-Key": key})
            if json.loads(conn.getresponse().read())["status"] == "idle":
                break
            time.sleep(0.1)
        idle_after = asyncio.run(load(port, "/api/training/status", headers, args.concurrency, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=60)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"event latency over {len(latencies)} step events: median {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms (target p99 < 250 ms)")
    idle_mean = (idle[0] + idle_after[0]) / 2
    print(f"/api/training/status with {args.concurrency} clients: idle {idle[0]:.0f} and {idle_after[0]:.0f} req/s "
          f"(before and after the job), job running {running[0]:.0f} req/s (p50 {running[1]:.1f} ms, p99 "
          f"{running[2]:.1f} ms); running/idle = {running[0] / idle_mean:.2f}")


if __name__ == "__main__":
    main()
