#!/usr/bin/env python
"""Render a validation image from a SimpleTuner checkpoint, e.g. on a second GPU while training goes on.

Use it as the external validation command (the command is split into arguments, never run by a shell)::

    "validation_method": "external-script",
    "validation_external_background": true,
    "validation_external_script": "python examples/external-validation/infer_checkpoint.py {local_checkpoint_path}
        --step {global_step} --prompt {validation_prompt} --seed {validation_seed} --device cuda:1"

The base model is read from the LoRA file's training metadata (``simpletuner_training``), or given with ``--base``.
The image is written to ``<checkpoint>/external-validation/step-<step>-seed-<seed>.png`` unless ``--output`` says
otherwise. Exit status 0 on success; any other status is reported by SimpleTuner as a failed validation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LORA_FILE = "pytorch_lora_weights.safetensors"
METADATA_KEY = "simpletuner_training"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder (or the LoRA file itself)")
    parser.add_argument("--step", type=int, default=0, help="global step, used in the file name")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=20, help="sampler steps")
    parser.add_argument("--size", type=int, default=1024, help="width and height in pixels")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--device", default="cuda:1", help="torch device; falls back to cpu without CUDA")
    parser.add_argument("--base", default=None, help="base model (Hub id or folder) if the LoRA does not say")
    parser.add_argument("--output", type=Path, default=None, help="image file to write")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    lora = args.checkpoint / LORA_FILE if args.checkpoint.is_dir() else args.checkpoint
    if not lora.is_file():
        print(f"no LoRA at {lora}", file=sys.stderr)
        return 2

    import torch
    from diffusers import DiffusionPipeline
    from safetensors import safe_open

    with safe_open(str(lora), framework="pt") as handle:
        metadata = handle.metadata() or {}
    base = args.base or json.loads(metadata.get(METADATA_KEY, "{}")).get("base_model")
    if not base:
        print(f"{lora} carries no base model; pass --base", file=sys.stderr)
        return 2
    device = args.device if args.device == "cpu" or torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    pipeline = DiffusionPipeline.from_pretrained(base, torch_dtype=dtype)
    pipeline.load_lora_weights(str(lora))
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    options = {"guidance_scale": args.guidance} if args.guidance is not None else {}
    image = pipeline(args.prompt, width=args.size, height=args.size, num_inference_steps=args.steps,
                     generator=torch.Generator("cpu").manual_seed(args.seed), **options).images[0]
    folder = lora.parent / "external-validation"
    output = args.output or folder / f"step-{args.step:06d}-seed-{args.seed}.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    image.save(output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
