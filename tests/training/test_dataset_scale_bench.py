"""``bench/dataset_scale.py`` at a tiny size: it trains cold then warm for each size in fresh processes, a warm
restart reads no image, and its summary carries the figures the dataset-scale targets are judged by."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dataset_scale.py"


@pytest.mark.timeout(300)
def test_tiny_run_reports_cold_and_warm_starts_and_their_ratios(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--images", "4,40", "--repeats", "1", "--keep",
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    runs, summary = lines[:-1], lines[-1]["summary"]

    assert [(r["images"], r["run"]) for r in runs] == [(4, "cold"), (40, "cold"), (4, "warm"), (40, "warm")]
    for run in runs:
        # a cold start reads every image's header; a restart finds them all in the index
        assert run["read"] == (run["images"] if run["run"] == "cold" else 0)
        assert 0 < run["scanned_s"] <= run["caches_ready_s"] <= run["first_step_s"]
        assert run["peak_rss_mib"] > 100 and 0 < run["bookkeeping_bytes_per_image"] < 1000

    assert summary["sizes"] == [4, 40]
    assert summary["warm_first_step_ratio"] > 0 and summary["peak_rss_ratio"] > 0
    assert summary["first_scan_images_per_s"] > 0
    million = summary["extrapolated_to_1m"]
    assert set(million) == {f"{kind}_{key}" for kind in ("cold", "warm")
                            for key in ("scanned_s", "caches_ready_s", "first_step_s", "peak_rss_mib")}
    # at least the large size's figure (rounded no coarser than it): a per-image cost is never negative
    large_runs = {run["run"]: run for run in runs if run["images"] == 40}
    for name, figure in million.items():
        kind, key = name.split("_", 1)
        assert figure >= large_runs[kind][key], name
    assert (tmp_path / "work" / "datasets" / "scale-40").is_dir()  # --keep keeps the work folder
