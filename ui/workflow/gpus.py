"""The GPUs torch sees, asked of a child process (server processes never import torch)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

_PROBE = """
import json
try:
    import torch
    gpus = [{"index": i, "name": torch.cuda.get_device_name(i),
             "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    print(json.dumps({"gpus": gpus, "error": None}))
except Exception as exc:
    print(json.dumps({"gpus": [], "error": f"{type(exc).__name__}: {exc}"}))
"""

_lock = threading.Lock()
_cached: dict[str, Any] | None = None


def list_gpus(refresh: bool = False) -> dict[str, Any]:
    """``{"gpus": [{index, name, memory_gib}], "error": str | None}``; probed once per process unless refreshed."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            try:
                done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
                _cached = json.loads(done.stdout.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
                _cached = {"gpus": [], "error": f"the GPU probe failed: {exc}"}
        return dict(_cached)
