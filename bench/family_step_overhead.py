"""The engine's steady-state Sana or PixArt step time against the bare LoRA step
(``../shared/bench/bare_lora_step.py``).

Both run in this process on the same transformer configuration (the bare script's ``small``/``full`` sizes),
latent and text shapes, LoRA rank and attention targets and precision, interleaved step by step (see
``step_pairs.py``). The engine trains a tiny pipeline of the family whose transformer and text-encoder widths are
swapped for the bench's; its step includes data loading, noise sampling, the step, metrics and the event write.

usage: python bench/family_step_overhead.py --family sana|pixart [--size small|full] [--steps 20] [--warmup 3]
                                           [--batch-size 1] [--gc] [--max-grad-norm 0]
Prints one JSON line: medians and minima of both sides, the ratio of medians (``ratio``), of minima, the median of
the per-pair ratios, the ratio against the bare step with the engine's optimizer, and the data-loader wait share.

``--family flux2|chroma|sd3|sdxl|qwen_image|z_image`` runs ``new_family_step_overhead.py`` for that family (same
output), whose bare step is the same plain loop around the family's stock diffusers model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

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

#: Pixels per latent cell: the DC-AE is 32× for Sana, the SDXL VAE 8× for PixArt.
VAE_SCALE = {"sana": 32, "pixart": 8}


def transformer_class(family: str) -> Any:
    """The diffusers transformer class the bare script trains for ``family``."""
    from diffusers import PixArtTransformer2DModel, SanaTransformer2DModel

    return SanaTransformer2DModel if family == "sana" else PixArtTransformer2DModel


def build_pipeline(family: str, folder: Path, transformer_cfg: dict[str, Any], txt_dim: int) -> Path:
    """The family's tiny pipeline with the bench's transformer and a text encoder of the bench's width."""
    import torch

    if family == "sana":
        from transformers import Gemma2Model as Encoder

        from simpletuner.model_families.sana.tiny import build_tiny_sana_pipeline as build
        width = "hidden_size"
    else:
        from transformers import T5EncoderModel as Encoder

        from simpletuner.model_families.pixart.tiny import build_tiny_pixart_pipeline as build
        width = "d_model"
    build(folder)
    torch.manual_seed(0)
    transformer_class(family)(**transformer_cfg).save_pretrained(folder / "transformer")
    config = Encoder.from_pretrained(folder / "text_encoder").config
    setattr(config, width, txt_dim)
    Encoder(config).save_pretrained(folder / "text_encoder")
    return folder


def main() -> None:
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--family")
    import new_family_step_overhead

    if probe.parse_known_args()[0].family in new_family_step_overhead.SMALL:
        # Flux.2, Chroma, SD3.5, SDXL, Qwen-Image and Z-Image: their bare step is built there, from the family's own
        # tiny pipeline widened to the small size.
        new_family_step_overhead.main()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", required=True, choices=["sana", "pixart"])
    parser.add_argument("--size", default="small", choices=["small", "full"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1, help="samples per step on both sides")
    parser.add_argument("--gc", action="store_true")
    parser.add_argument("--max-grad-norm", type=float, default=0.0,
                        help="the engine's clipping (the bare step does not clip; 0 = off)")
    parser.add_argument("--bare", type=Path, default=DEFAULT_BARE)
    args = parser.parse_args()
    bare = bare_module(args.bare)
    family = args.family
    cfg = dict({"small": bare.SMALL, "full": bare.FULL}[args.size][family])
    shapes = bare.SHAPES[(family, args.size)]
    _, height, width = shapes["lat"]
    tokens, txt_dim = shapes["txt"]
    assert height == width, "the bench trains square images"
    step = BareStep(bare, family, transformer_class(family), cfg, shapes, rank=args.rank, gc=args.gc,
                    engine_optimizer=engine_optimizer_kwargs(), batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_pipeline(family, Path(tmp) / "model", cfg, txt_dim)
        write_environment(Path(tmp) / "ws", family, model, height * VAE_SCALE[family], {
            "lora_rank": args.rank, "lora_alpha": args.rank, "lora_target_preset": "attention",
            "max_train_steps": args.warmup + args.steps + 1, "max_grad_norm": args.max_grad_norm,
            f"{family}_max_tokens": tokens, "gradient_checkpointing": args.gc,
        }, batch_size=args.batch_size)
        times = run_pairs(Path(tmp) / "ws", step)
    print(json.dumps({"family": family, "size": args.size, "gc": args.gc, "batch_size": args.batch_size,
                      "max_grad_norm": args.max_grad_norm,
                      **summary(times, args.warmup)}))


if __name__ == "__main__":
    main()
