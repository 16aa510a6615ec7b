"""How a run's start scales with the size of its dataset: launch → datasets scanned → caches ready → first step.

For each dataset size it generates that many small images with captions (three aspect ratios, so three buckets),
then trains the tiny demo family for one step in fresh processes: once cold (nothing scanned or cached), then warm (a
restart: index and caches complete) ``--repeats`` times, the sizes taking turns; the warm figures are the medians.
Each run is a ``simpletuner train`` subprocess; the times come from the moment it is started and the timestamps of
its events, its peak RSS from the kernel's accounting of that process.

usage: python bench/dataset_scale.py [--images 200,2000] [--family pixart] [--pixels 64] [--repeats 3] [--keep DIR]
Prints one JSON line per run and a summary with the ratios the targets name (warm launch → first step and peak RSS
of the largest size against the smallest; first-scan images per second), the memory the run holds per image for its
bookkeeping, and the figures extrapolated to 1,000,000 images from the per-image cost between the two sizes (when
they are at least 10× apart).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

SIMPLETUNER = Path(sys.executable).parent / "simpletuner"
SIZES = ((1, 1), (3, 2), (2, 3))


def _write_images(args: tuple[Path, int, int, int]) -> None:
    from PIL import Image

    folder, start, stop, pixels = args
    for index in range(start, stop):
        ratio_w, ratio_h = SIZES[index % len(SIZES)]
        scale = pixels // 2
        size = (scale * ratio_w, scale * ratio_h)
        colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
        path = folder / f"{index // 1000:04d}" / f"img-{index:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colour).save(path, compress_level=1)
        path.with_suffix(".txt").write_text(f"a square of colour {colour[0]} {colour[1]} {colour[2]}")


def make_images(folder: Path, count: int, pixels: int) -> None:
    """``count`` images in folders of 1,000, written by every core."""
    chunks = [(folder, start, min(start + 2000, count), pixels) for start in range(0, count, 2000)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write_images, chunks))


def write_environment(workspace: Path, name: str, demo: str, images: Path, pixels: int) -> None:
    folder = workspace / "configs" / name
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((workspace / "configs" / demo / "config.json").read_text())
    config = {key: value for key, value in config.items() if not key.startswith("validation_")}
    config.update({"max_train_steps": 1, "checkpointing_steps": 0, "output_dir": f"output/{name}",
                   "resolution": pixels, "train_batch_size": 1, "tracker_run_name": name})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "multidatabackend.json").write_text(json.dumps([
        {"id": "images", "instance_data_dir": str(images), "caption_strategy": "textfile", "resolution": pixels,
         "resolution_type": "pixel", "minimum_image_size": pixels // 2, "cache_dir_vae": f"cache/{name}/vae"},
        {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": f"cache/{name}/text"},
    ]))


def events_of(output: Path) -> list[dict[str, Any]]:
    runs = sorted(output.glob("*/events.jsonl"), key=lambda p: p.stat().st_mtime)
    return [json.loads(line) for line in runs[-1].read_text().splitlines() if line.strip()]


def train_once(workspace: Path, name: str) -> dict[str, Any]:
    """One ``simpletuner train`` process: its phase times from launch and its peak RSS."""
    env = {**os.environ, "SIMPLETUNER_WORKSPACE": str(workspace)}
    launched = time.time()
    process = subprocess.Popen([str(SIMPLETUNER), "train", "--env", name], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training {name} failed:\n{stderr[-3000:]}")
    events = events_of(workspace / "output" / name)

    def at(event: str, **match: Any) -> float:
        found = next(e for e in events if e["event"] == event and all(e.get(k) == v for k, v in match.items()))
        return round(found["time"] - launched, 3)

    report = next(e for e in events if e["event"] == "datasets_scanned")
    scanned = report["datasets"][0]
    return {"scanned_s": at("datasets_scanned"), "caches_ready_s": at("cache_ready", kind="latents"),
            "first_step_s": at("step"), "images": scanned["images"], "read": scanned.get("read"),
            "scan_s": scanned.get("scan_s"), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "bookkeeping_bytes_per_image": round(report["bookkeeping_bytes"] / max(1, scanned["images"]))}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over ``runs``."""
    return {key: statistics.median(run[key] for run in runs) if isinstance(runs[0][key], int | float) else runs[0][key]
            for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="200,2000", help="comma-separated dataset sizes, smallest first")
    parser.add_argument("--family", default="pixart")
    parser.add_argument("--pixels", type=int, default=64, help="training resolution (images are made to fit it)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=3, help="warm restarts per size (their median is compared)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.images.split(",")]

    workspace = args.keep or Path(tempfile.mkdtemp(prefix="dataset-scale-"))
    workspace.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SIMPLETUNER_WORKSPACE": str(workspace)}
    demo = f"demo-{args.family}"
    subprocess.run([str(SIMPLETUNER), "demo", "--family", args.family, "--no-train"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    warm_runs: dict[int, list[dict[str, Any]]] = {count: [] for count in sizes}
    try:
        for count in sizes:
            images = workspace / "datasets" / f"scale-{count}"
            started = time.perf_counter()
            make_images(images, count, args.pixels)
            write_environment(workspace, f"scale-{count}", demo, images, args.pixels)
            made_s = time.perf_counter() - started
            run = train_once(workspace, f"scale-{count}")
            results[count] = {"cold": run}
            print(json.dumps({"images": count, "run": "cold", "images_made_s": round(made_s, 1), **run}), flush=True)
        # the restarts of all sizes take turns, so a burst of load on a shared machine falls on each size alike
        for repeat in range(args.repeats):
            for count in sizes:
                run = train_once(workspace, f"scale-{count}")
                warm_runs[count].append(run)
                print(json.dumps({"images": count, "run": "warm", "repeat": repeat + 1, **run}), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workspace, ignore_errors=True)
    for count in sizes:
        results[count]["warm"] = median_run(warm_runs[count])

    small, large = min(sizes), max(sizes)
    cold_large = results[large]["cold"]
    summary: dict[str, Any] = {
        "sizes": [small, large],
        "warm_first_step_ratio": round(results[large]["warm"]["first_step_s"] / results[small]["warm"]["first_step_s"],
                                       3),
        "peak_rss_ratio": round(results[large]["warm"]["peak_rss_mib"] / results[small]["warm"]["peak_rss_mib"], 3),
        "first_scan_images_per_s": round(large / cold_large["scan_s"]) if cold_large.get("scan_s") else None,
        "bookkeeping_bytes_per_image": results[large]["warm"]["bookkeeping_bytes_per_image"],
    }
    # sizes closer than 10× apart differ by less than the noise of a launch: no per-image cost can be read from them
    if large >= 10 * small:
        million = {}
        for kind in ("cold", "warm"):
            for key in ("scanned_s", "caches_ready_s", "first_step_s", "peak_rss_mib"):
                a, b = results[small][kind][key], results[large][kind][key]
                per_image = max(0.0, (b - a) / (large - small))  # a negative slope is noise, not a saving
                million[f"{kind}_{key}"] = round(b + per_image * (1_000_000 - large), 3)
        summary["extrapolated_to_1m"] = million
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
