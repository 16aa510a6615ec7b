"""The engine's steady-state Flux step time against the bare LoRA step (``../shared/bench/bare_lora_step.py``).

Both run in this process on the same transformer configuration, latent and text shapes, LoRA rank and targets and
precision, interleaved step by step (see ``step_pairs.py``): after each engine step the bare step runs once with
the script's AdamW and once with the engine's AdamW implementation. The engine's step includes data loading, noise
sampling, the step, metrics and the event write.

usage: python bench/step_overhead.py [--size tiny|small|full] [--steps 20] [--warmup 3] [--batch-size 1] [--gc]
                                    [--max-grad-norm 0]
Prints one JSON line: medians and minima of both sides, the ratio of medians (``ratio``), of minima, the median of
the per-pair ratios, the ratio against the bare step with the engine's optimizer, and the data-loader wait share.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_pairs import (  # noqa: E402
    DEFAULT_BARE,
    BareStep,
    bare_module,
    engine_optimizer_kwargs,
    run_pairs,
    summary,
    write_environment,
)


def build_pipeline(folder: Path, transformer_cfg: dict, txt_dim: int, pooled_dim: int) -> Path:
    """The tiny pipeline with the bench's transformer and text encoders whose widths match it."""
    import torch
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    from simpletuner.model_families.flux.tiny import build_tiny_flux_pipeline

    build_tiny_flux_pipeline(folder)
    torch.manual_seed(0)
    FluxTransformer2DModel(**transformer_cfg).save_pretrained(folder / "transformer")
    clip = CLIPTextModel.from_pretrained(folder / "text_encoder")
    clip_cfg = clip.config
    clip_cfg.hidden_size, clip_cfg.projection_dim = pooled_dim, pooled_dim
    CLIPTextModel(clip_cfg).save_pretrained(folder / "text_encoder")
    t5 = T5EncoderModel.from_pretrained(folder / "text_encoder_2")
    t5.config.d_model = txt_dim
    T5EncoderModel(t5.config).save_pretrained(folder / "text_encoder_2")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small", choices=["tiny", "small", "full"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1, help="samples per step on both sides")
    parser.add_argument("--gc", action="store_true")
    parser.add_argument("--max-grad-norm", type=float, default=0.0,
                        help="the engine's clipping (the bare step does not clip; 0 = off)")
    parser.add_argument("--bare", type=Path, default=DEFAULT_BARE)
    args = parser.parse_args()
    from diffusers import FluxTransformer2DModel

    bare = bare_module(args.bare)
    cfg = dict({"tiny": bare.TINY, "small": bare.SMALL, "full": bare.FULL}[args.size]["flux"])
    shapes = dict(bare.SHAPES[("flux", args.size)])
    if args.size == "tiny":
        cfg["in_channels"] = 64  # the engine trains on 16-channel latents packed 2×2
        shapes["lat"] = (16, 16, 16)
    channels, height, width = shapes["lat"]
    assert channels == 16 and height == width, "the engine trains 16-channel latents of square images"
    step = BareStep(bare, "flux", FluxTransformer2DModel, cfg, shapes, rank=args.rank, gc=args.gc,
                    engine_optimizer=engine_optimizer_kwargs(), batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_pipeline(Path(tmp) / "model", dict(cfg), shapes["txt"][1], shapes["pooled"])
        write_environment(Path(tmp) / "ws", "flux", model, height * 8, {
            "lora_rank": args.rank, "max_train_steps": args.warmup + args.steps + 1,
            "max_grad_norm": args.max_grad_norm, "flux_t5_max_tokens": shapes["txt"][0],
            "flux_guidance_value": 3.5, "gradient_checkpointing": args.gc,
        }, batch_size=args.batch_size)
        times = run_pairs(Path(tmp) / "ws", step)
    print(json.dumps({"family": "flux", "size": args.size, "gc": args.gc, "batch_size": args.batch_size,
                      "max_grad_norm": args.max_grad_norm,
                      **summary(times, args.warmup)}))


if __name__ == "__main__":
    main()
