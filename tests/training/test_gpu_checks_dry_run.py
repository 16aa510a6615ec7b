"""``bench/gpu_checks.py --dry-run``: every check runs ``simpletuner train`` on the CPU; the LoRA and DeepSpeed checks
train loadable outputs, and the FSDP2 and float8 ones end at the engine's refusal (not at a launcher error)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.timeout(600)
def test_dry_run_trains_the_lora_and_deepspeed_checks_and_shows_the_gpu_only_refusals() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "gpu_checks.py"), "--dry-run"], capture_output=True,
                          text=True, timeout=560, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = {r["check"]: r for r in (json.loads(line) for line in done.stdout.splitlines() if line.startswith("{"))}
    assert list(rows) == ["lora-bf16", "lora-int8-torchao", "lora-zero2", "full-zero3", "full-fsdp2",
                          "lora-fp8-eager", "lora-fp8-compile"]
    for name in ("lora-bf16", "lora-int8-torchao", "lora-zero2", "full-zero3"):
        row = rows[name]
        assert (row["status"], row["steps"], row["loss_falls"], row["loads"]) == ("ok", 32, True, True), row
    assert rows["full-fsdp2"]["status"].startswith("refused: fsdp_enable needs CUDA GPUs"), rows["full-fsdp2"]
    for name in ("lora-fp8-eager", "lora-fp8-compile"):
        assert rows[name]["status"].startswith("refused: fp8_training needs an NVIDIA GPU"), rows[name]
    assert "| lora-bf16 | ok | yes | yes |" in done.stdout


def test_unknown_checks_are_refused_with_the_known_ones() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "gpu_checks.py"), "--checks", "lora-bf16,turbo"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--checks: turbo: choose from lora-bf16, lora-int8-torchao" in done.stderr
