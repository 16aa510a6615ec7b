"""Peak GPU memory of a Flux LoRA training step with a bf16 base model and with an int8-quanto one, side by side.

Both configurations run in this process, one after the other, through the engine's own pieces: the Flux family's
noise/target recipe and transformer call, the quanto quantizer plugin with the family's exclusions, the engine's
LoRA attachment (rank 16 on the attention preset by default), float32 LoRA weights, AdamW, bf16 autocast and
gradient checkpointing. The full-size transformer is FLUX.1-dev's architecture with random weights (memory does
not depend on the values), so nothing is downloaded. Text embeddings are random tensors of T5-XXL's and CLIP-L's
shapes (the engine trains from cached embeddings: the text encoders are not resident while training).

The peak of each configuration is ``torch.cuda.max_memory_allocated`` over its training steps, after the model is
built, quantised and given its LoRA: weights, activations, gradients and optimizer state.

usage: python bench/quantized_memory.py [--resolution 1024] [--rank 16] [--steps 3] [--precision int8-quanto]
                                       [--no-gradient-checkpointing] [--tiny]
``--tiny`` runs the same path on the CPU with the tiny test transformer (no memory figures): a dry run.
Prints one JSON line per configuration, then one with both peaks and their ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Sequence
from typing import Any

GIB = 1024**3
#: FLUX.1-dev's transformer (diffusers' FluxTransformer2DModel defaults plus the guidance embedding).
FULL_TRANSFORMER: dict[str, Any] = {"guidance_embeds": True}
#: T5 tokens, T5 width and CLIP pooled width of the full-size text conditioning.
FULL_TEXT = {"tokens": 512, "width": 4096, "pooled": 768}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The bench's options; invalid values are argparse errors."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=1024, help="image edge in pixels (multiple of 16)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--steps", type=int, default=3, help="training steps per configuration")
    parser.add_argument("--precision", default="int8-quanto", help="base_model_precision compared with bf16")
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false",
                        help="keep activations instead of recomputing them")
    parser.add_argument("--tiny", action="store_true", help="a CPU dry run on the tiny test transformer")
    args = parser.parse_args(argv)
    if args.resolution < 16 or args.resolution % 16:
        parser.error("--resolution must be a positive multiple of 16 (8× VAE downsampling, 2×2 packing)")
    if args.rank < 1 or args.steps < 1:
        parser.error("--rank and --steps must be at least 1")
    return args


def _family(registry: Any, core: Any) -> Any:
    spec = registry.model_family("flux")
    family = spec.factory(spec, flavour=spec.flavour(None), options=None)
    family.configure(core)
    return family


def _transformer(tiny: bool, device: Any) -> tuple[Any, dict[str, int]]:
    """The transformer (bf16 on ``device``) and its text shapes."""
    import torch
    from diffusers import FluxTransformer2DModel

    from simpletuner.model_families.flux.tiny import TINY_SIZES

    torch.manual_seed(0)
    if tiny:
        cfg = TINY_SIZES["transformer"]
        text = {"tokens": 16, "width": cfg["joint_attention_dim"], "pooled": cfg["pooled_projection_dim"]}
    else:
        cfg, text = FULL_TRANSFORMER, FULL_TEXT
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 on the device: no 48 GB float32 copy on the way
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(**cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False), text


def run_configuration(precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build, quantise (unless ``no_change``), attach the LoRA and train ``args.steps`` steps; returns figures."""
    import torch

    from simpletuner.core.config.core_options import CoreOptions
    from simpletuner.core.plugins import Registry
    from simpletuner.core.training.adapter import attach_lora, prepare_trainable
    from simpletuner.core.training.optim import build_optimizer

    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    registry = Registry()
    core = CoreOptions(model_family="flux", lora_rank=args.rank, lora_alpha=args.rank, lora_dropout=0.0,
                       base_model_precision=precision, gradient_checkpointing=args.gradient_checkpointing)
    family = _family(registry, core)
    model, text_shape = _transformer(args.tiny, device)
    quantized = 0
    if precision != "no_change":
        spec = registry.quantizer_for(precision)
        if spec is None:
            raise SystemExit(f"no installed quantizer provides {precision!r}")
        spec.factory(None).quantize(model, precision, exclude=family.quantization_exclusions)
        quantized = sum(1 for m in model.modules() if type(m).__name__.startswith("QLinear"))
    attach_lora(model, family.lora_targets(None), core)
    params = prepare_trainable(model, core)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    optimizer = build_optimizer(params, core)
    model.train()

    latent = args.resolution // 8
    generator = torch.Generator(device=device).manual_seed(0)
    latents = torch.randn(1, 16, latent, latent, generator=generator, device=device, dtype=torch.bfloat16)
    text = {"prompt_embeds": torch.randn(1, text_shape["tokens"], text_shape["width"], device=device,
                                         generator=generator, dtype=torch.bfloat16),
            "pooled_prompt_embeds": torch.randn(1, text_shape["pooled"], device=device, generator=generator,
                                                dtype=torch.bfloat16),
            "attention_mask": torch.ones(1, text_shape["tokens"], device=device, dtype=torch.long)}
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    resident = torch.cuda.memory_allocated() / GIB if cuda else None
    times, losses = [], []
    for _ in range(args.steps):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            inputs = family.training_inputs(latents, text, generator)
            loss = family.loss(family.predict({"transformer": model}, inputs, text), inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        losses.append(float(loss.detach()))
    result = {
        "precision": precision, "device": device.type, "resolution": args.resolution, "rank": args.rank,
        "gradient_checkpointing": args.gradient_checkpointing, "quantized_linear_layers": quantized,
        "trainable_parameters": sum(p.numel() for p in params), "losses": [round(v, 5) for v in losses],
        "step_s": round(min(times), 4),
        "resident_gib": round(resident, 2) if resident is not None else None,
        "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2) if cuda else None,
    }
    del model, optimizer, params, inputs, loss
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run bf16, then the quantised precision; print and return the figures."""
    args = parse_args(argv)
    rows = []
    for precision in ("no_change", args.precision):
        row = run_configuration(precision, args)
        print(json.dumps(row), flush=True)
        rows.append(row)
    bf16, quantized = rows[0]["peak_gib"], rows[1]["peak_gib"]
    summary = {"bf16_peak_gib": bf16, f"{args.precision}_peak_gib": quantized,
               "ratio": round(quantized / bf16, 3) if bf16 and quantized else None}
    print(json.dumps(summary), flush=True)
    return [*rows, summary]


if __name__ == "__main__":
    main()
