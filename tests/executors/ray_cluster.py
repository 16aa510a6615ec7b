"""A private single-node Ray cluster for tests: ``ray start --head --block`` with its own temporary folder and free
ports; its Jobs API (the dashboard) is at :attr:`RayCluster.address`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RAY_BIN = Path(sys.executable).parent / "ray"


def ray_missing() -> str | None:
    """Why a Ray cluster cannot start here, or None."""
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        return "Ray is not installed: pip install 'simpletuner[ray]'"
    if not RAY_BIN.exists():
        return f"the ray command is missing next to {sys.executable}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RayCluster:
    """A Ray head with ``cpus`` CPUs whose jobs see ``path`` as PATH and ``environ`` in their environment (what a
    cluster's machines have installed); :meth:`stop` ends all its processes."""

    def __init__(self, root: Path, path: str, environ: dict[str, str] | None = None, cpus: int = 2) -> None:
        self.root = root
        dashboard = _free_port()
        self.address = f"http://127.0.0.1:{dashboard}"
        env = {**os.environ, "PATH": path, "RAY_USAGE_STATS_ENABLED": "0", "RAY_JOB_STOP_WAIT_TIME_S": "5",
               **(environ or {})}
        env.pop("RAY_ADDRESS", None)
        self.log = (root / "ray-start.log").open("wb")
        self.process = subprocess.Popen(
            [str(RAY_BIN), "start", "--head", "--block", f"--num-cpus={cpus}", "--num-gpus=0",
             f"--port={_free_port()}", "--node-ip-address=127.0.0.1", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--temp-dir={root / 'ray'}",
             "--disable-usage-stats"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited: {(root / 'ray-start.log').read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{self.address}/api/version", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray Jobs API did not answer within 120 s: "
                           f"{(root / 'ray-start.log').read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        """End the head node and every process it started (they share its session)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log.close()
