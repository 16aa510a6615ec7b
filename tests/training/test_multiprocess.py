"""Two processes on the CPU (``accelerate launch``, gloo): every sample is trained once per epoch across ranks."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training_helpers import events_of, only_run

from simpletuner.core.training.checkpoints import rng_file
from simpletuner.core.training.loader import SAMPLE_LOG_ENV
from simpletuner.core.workspace import Workspace


def test_two_processes_split_each_epoch(make_env: Callable[..., str], run_cli: Callable[..., Any],
                                        workspace: Workspace, tmp_path: Path) -> None:
    # 6 images in 3 buckets of 2; batch 1 per process → 3 global batches (steps) per epoch; 2 epochs
    name = make_env("ddp", images=6, train_batch_size=1, max_train_steps=0, num_train_epochs=2,
                    checkpointing_steps=4)
    log = tmp_path / "samples"
    result = run_cli("train", "--env", name, "--num_processes", "2",
                     env={SAMPLE_LOG_ENV: str(log), "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = only_run(workspace.root / "output" / name)
    started = events_of(output, "run_started")[0]
    assert started["num_processes"] == 2 and started["total_steps"] == 6
    assert [e["step"] for e in events_of(output, "step")] == [1, 2, 3, 4, 5, 6]
    assert (output / "checkpoint-4" / rng_file(1)).is_file()
    rows = [line.split("\t") for rank in (0, 1) for line in Path(f"{log}.{rank}").read_text().splitlines()]
    per_rank = [len(Path(f"{log}.{rank}").read_text().splitlines()) for rank in (0, 1)]
    assert per_rank[0] >= 6 and per_rank[1] >= 6  # the reader may run a batch or two ahead of the last step
    for epoch in ("0", "1"):
        seen = Counter(path for e, _, _, path, _ in rows if e == epoch)
        assert seen == Counter({f"demo-{i:03d}.png": 1 for i in range(6)}), (epoch, seen)
    assert os.path.getsize(output / "pytorch_lora_weights.safetensors") > 0


def test_one_fsdp_process_is_launched_as_a_world_of_one(make_env: Callable[..., str],
                                                       run_cli: Callable[..., Any]) -> None:
    """FSDP2 needs a process group even for one GPU; accelerate's --multi_gpu refuses one process, so the launched
    process is rank 0 of a world of one. It reaches the engine, which on this CPU refuses FSDP2 with its reason (on a
    GPU it trains: bench/gpu_checks.py). One DeepSpeed process starts the same way and trains here
    (test_deepspeed_runs.py)."""
    name = make_env("one-fsdp", max_train_steps=2, fsdp_enable=True, model_type="full")
    result = run_cli("train", "--env", name, env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode != 0
    assert "at least 2 processes" not in result.stderr, result.stderr[-2000:]
    assert "fsdp_enable needs CUDA GPUs (accelerate runs FSDP2 only on GPUs)" in result.stderr, result.stderr[-2000:]
