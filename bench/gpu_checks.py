"""GPU checks: the training paths that need a GPU, each run on one through ``simpletuner train`` as a user runs it,
on the tiny Flux pipeline (random weights built here, nothing downloaded), in a minute or two.

usage: python bench/gpu_checks.py [--checks NAME,...] [--steps 32] [--timeout-s 300] [--workdir DIR] [--dry-run]

Checks, in this order (the float8 ones last: an error there can leave the GPU unusable):

- ``lora-bf16``: LoRA under bf16 autocast with float32 trained weights, torch's fused AdamW, pinned-memory batches.
- ``lora-int8-torchao``: the same over an int8-torchao base model.
- ``lora-zero2``: LoRA under DeepSpeed ZeRO stage 2 (one process, started through ``accelerate launch``).
- ``full-zero3``: full-rank training with weights sharded by DeepSpeed ZeRO stage 3.
- ``full-fsdp2``: full-rank training with weights sharded by FSDP2.
- ``lora-fp8-eager``: LoRA over float8 training layers (torchao), eager.
- ``lora-fp8-compile``: the same with regional compilation (inductor).

Each check reports whether the command succeeded (or the engine's refusal, or the last line of its error), whether
the loss fell (mean of the last quarter of the steps below the first quarter's) and whether the output loads: a
LoRA into diffusers' stock ``FluxPipeline`` as the same tensors, a full-rank transformer through ``from_pretrained``
with weights other than the base model's. Commands run with ``CUDA_LAUNCH_BLOCKING=1``, so that a CUDA error names
the kernel that raised it. One JSON line is printed per check, then a Markdown table.

``--dry-run`` runs the same checks on the CPU: the LoRA and DeepSpeed checks train (DeepSpeed through its CPU
accelerator), and the FSDP2 and float8 ones show the engine's refusals (they need CUDA GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_pairs import write_environment  # noqa: E402

PIXELS = 128


@dataclass(frozen=True)
class Check:
    """One training path: its options over the tiny Flux LoRA config, and whether it trains the full model."""

    options: dict[str, Any]
    full: bool = False


CHECKS: dict[str, Check] = {
    "lora-bf16": Check({}),
    "lora-int8-torchao": Check({"base_model_precision": "int8-torchao"}),
    "lora-zero2": Check({"deepspeed_config": "zero2"}),
    "full-zero3": Check({"model_type": "full", "deepspeed_config": "zero3", "learning_rate": 1e-4}, full=True),
    "full-fsdp2": Check({"model_type": "full", "fsdp_enable": True, "learning_rate": 1e-4}, full=True),
    "lora-fp8-eager": Check({"fp8_training": True}),
    "lora-fp8-compile": Check({"fp8_training": True, "dynamo_backend": "inductor",
                               "dynamo_use_regional_compilation": True}),
}


@dataclass
class Outcome:
    """What one check found."""

    status: str = "ok"
    loss_falls: bool | None = None
    loads: bool | None = None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The checks' options; unknown check names are argparse errors."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated, of {', '.join(CHECKS)}")
    parser.add_argument("--steps", type=int, default=32, help="training steps per check (at least 4)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="the longest one check's command may run")
    parser.add_argument("--workdir", type=Path, default=None, help="where the pipeline and workspaces are written")
    parser.add_argument("--dry-run", action="store_true", help="run on the CPU (FSDP2 and float8 are refused)")
    args = parser.parse_args(argv)
    args.checks = [name.strip() for name in args.checks.split(",") if name.strip()]
    unknown = [name for name in args.checks if name not in CHECKS]
    if unknown or not args.checks:
        parser.error(f"--checks: {', '.join(unknown) or 'none given'}: choose from {', '.join(CHECKS)}")
    if args.steps < 4 or args.timeout_s <= 0:
        parser.error("--steps must be at least 4 and --timeout-s positive")
    return args


def run_check(name: str, model: Path, root: Path, args: argparse.Namespace) -> Outcome:
    """Train the check's environment with ``simpletuner train`` in a process of its own and judge the run."""
    check = CHECKS[name]
    workspace = root / name
    write_environment(workspace, "flux", model, PIXELS, {
        "lora_rank": 4, "learning_rate": 1e-3, "max_train_steps": args.steps, "mixed_precision": "bf16",
        "flux_t5_max_tokens": 16, **check.options})
    env = {**os.environ, "SIMPLETUNER_WORKSPACE": str(workspace), "CUDA_LAUNCH_BLOCKING": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if args.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "simpletuner.core.cli.main", "train", "--env", "bench"],
                              capture_output=True, text=True, timeout=args.timeout_s, env=env, cwd=workspace)
    except subprocess.TimeoutExpired:
        return Outcome(status=f"failed: still running after --timeout-s {args.timeout_s:g}",
                       seconds=time.perf_counter() - started)
    outcome = Outcome(seconds=time.perf_counter() - started)
    if done.returncode != 0:
        outcome.status = _failure(done.stdout + done.stderr)
        return outcome
    run = _run_folder(workspace)
    outcome.losses = _losses(run)
    quarter = max(1, len(outcome.losses) // 4)
    if len(outcome.losses) >= 4:
        first, last = outcome.losses[:quarter], outcome.losses[-quarter:]
        outcome.loss_falls = sum(last) / len(last) < sum(first) / len(first)
    outcome.loads = _full_loads(run, model) if check.full else _lora_loads(run, model)
    return outcome


def _failure(output: str) -> str:
    """The engine's refusal (``refused: …``) or the last line of a failed command's output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    refusals = [line for line in lines if "needs CUDA GPUs" in line or "needs an NVIDIA GPU" in line]
    if refusals:
        return "refused: " + refusals[-1].rsplit("error: ", 1)[-1]
    return "failed: " + (lines[-1] if lines else "no output")


def _run_folder(workspace: Path) -> Path:
    from simpletuner.core.training.run_folders import run_folders

    return run_folders(workspace / "output" / "bench")[-1].path


def _losses(run: Path) -> list[float]:
    from simpletuner.core.events import EVENTS_FILE, read_events

    return [event["loss"] for event in read_events(run / EVENTS_FILE) if event["event"] == "step"]


def _lora_loads(run: Path, model: Path) -> bool:
    """Whether the run's LoRA loads into the stock FluxPipeline as the tensors saved."""
    import torch
    from diffusers import FluxPipeline
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    from simpletuner.core.training.outputs import LORA_FILE

    pipeline = FluxPipeline.from_pretrained(str(model), dtype=torch.float32)
    pipeline.load_lora_weights(str(run), adapter_name="trained")
    loaded = get_peft_model_state_dict(pipeline.transformer, adapter_name="trained")
    saved = {k.removeprefix("transformer."): v for k, v in load_file(str(run / LORA_FILE)).items()}
    return bool(saved) and loaded.keys() == saved.keys() and all(
        torch.equal(loaded[k], saved[k].to(loaded[k].dtype)) for k in saved)


def _full_loads(run: Path, model: Path) -> bool:
    """Whether the run's transformer loads through ``from_pretrained`` with weights other than the base's."""
    import torch
    from diffusers import FluxTransformer2DModel

    trained = FluxTransformer2DModel.from_pretrained(str(run / "transformer")).state_dict()
    base = FluxTransformer2DModel.from_pretrained(str(model), subfolder="transformer").state_dict()
    return trained.keys() == base.keys() and any(not torch.equal(trained[k], base[k]) for k in base)


def table(rows: list[dict[str, Any]]) -> str:
    """The checks as a Markdown table."""
    lines = ["| check | status | loss falls | output loads | s |", "|---|---|---|---|---|"]
    mark = {True: "yes", False: "no", None: "—"}
    for r in rows:
        lines.append(f"| {r['check']} | {r['status'].replace('|', '/')} | {mark[r['loss_falls']]} | "
                     f"{mark[r['loads']]} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the chosen checks, printing one JSON line per check and then the table; returns the rows."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from simpletuner.model_families.flux.tiny import build_tiny_flux_pipeline

    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-checks-", dir=args.workdir) as folder:
        root = Path(folder)
        model = build_tiny_flux_pipeline(root / "tiny-flux")
        for name in args.checks:
            outcome = run_check(name, model, root, args)
            row = {"check": name, "status": outcome.status, "loss_falls": outcome.loss_falls,
                   "loads": outcome.loads, "steps": len(outcome.losses), "seconds": round(outcome.seconds, 1),
                   "first_loss": outcome.losses[0] if outcome.losses else None,
                   "last_loss": outcome.losses[-1] if outcome.losses else None}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(table(rows), flush=True)
    return rows


if __name__ == "__main__":
    main()
