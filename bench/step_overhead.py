"""The engine's steady-state step time against the bare LoRA step (``../shared/bench/bare_lora_step.py``).

Both run here, one after the other, on the same transformer configuration, latent and text shapes, LoRA rank and
targets, optimizer and precision. The engine's step is measured from its own event stream (the time between
consecutive ``step`` events: data loading, noise sampling, the step, metrics and events included).

usage: python bench/step_overhead.py [--size tiny|small|full] [--steps 10] [--gc] [--bare PATH]
Prints one JSON line: bare and engine medians, their ratio and the data-loader wait share.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BARE = REPO.parent / "shared" / "bench" / "bare_lora_step.py"


def _bare_module(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bare_lora_step", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def engine_steps(workspace: Path, model: Path, pixels: int, tokens: int, steps: int, warmup: int, rank: int,
                 gc: bool) -> dict:
    """Train with the engine and return its median step time and data-wait share."""
    import os

    os.environ["SIMPLETUNER_WORKSPACE"] = str(workspace)
    from PIL import Image

    from simpletuner.core.cli.demo_commands import make_demo_images
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.events import read_events
    from simpletuner.core.plugins import Registry
    from simpletuner.core.training.run import train
    from simpletuner.core.workspace import Workspace

    ws = Workspace(workspace)
    data = ws.datasets_dir / "bench"
    for path in make_demo_images(data, 4):
        Image.open(path).convert("RGB").resize((pixels, pixels)).save(path)
    env = ws.configs_dir / "bench"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({
        "model_family": "flux", "pretrained_model_name_or_path": str(model), "lora_rank": rank, "lora_dropout": 0.0,
        "learning_rate": 1e-4, "max_train_steps": warmup + steps, "num_train_epochs": 0, "train_batch_size": 1,
        "seed": 0, "resolution": pixels, "mixed_precision": "bf16" if _cuda() else "no", "max_grad_norm": 0,
        "checkpointing_steps": 0, "flux_t5_max_tokens": tokens, "report_to": "none", "output_dir": "output/bench",
        "flux_guidance_value": 3.5, "gradient_checkpointing": gc,
    }))
    (env / "multidatabackend.json").write_text(json.dumps([
        {"id": "bench", "instance_data_dir": str(data), "minimum_image_size": 64},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True},
    ]))
    registry = Registry()
    loaded = load_environment(ws, EnvironmentStore(ws.configs_dir), "bench", registry)
    result = train(loaded, ws, registry)
    steps_ev = [e for e in read_events(result.output_dir / "events.jsonl") if e["event"] == "step"]
    times = [b["time"] - a["time"] for a, b in zip(steps_ev, steps_ev[1:], strict=False)][warmup:]
    waits = [e["data_wait_s"] for e in steps_ev[warmup + 1 :]]
    return {"engine_step_s_median": statistics.median(times), "data_wait_share": sum(waits) / sum(times)}


def bare_steps(bare, cfg: dict, shapes: dict, args: argparse.Namespace) -> float:  # type: ignore[no-untyped-def]
    """The bare script's own step (its ``forward``, LoRA, AdamW), timed as the script does, here in-process."""
    import time

    import torch
    from diffusers import FluxTransformer2DModel
    from peft import LoraConfig, inject_adapter_in_model

    dev = "cuda" if _cuda() else "cpu"
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    if dev == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)
    torch.manual_seed(0)
    with torch.device(dev):
        model = FluxTransformer2DModel(**cfg).to(dtype)
    model.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                       target_modules=bare.TARGETS["flux"]), model)
    lora = [p for p in model.parameters() if p.requires_grad]
    for p in lora:
        p.data = p.data.float()
    if args.gc:
        model.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(lora, lr=1e-4)
    times = []
    for i in range(args.warmup + args.steps):
        if dev == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            loss = bare.forward("flux", model, shapes, 1, dev, dtype)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small", choices=["tiny", "small", "full"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--gc", action="store_true")
    parser.add_argument("--bare", type=Path, default=DEFAULT_BARE)
    args = parser.parse_args()
    bare = _bare_module(args.bare)
    cfg = {"tiny": bare.TINY, "small": bare.SMALL, "full": bare.FULL}[args.size]["flux"]
    shapes = bare.SHAPES[("flux", args.size)]
    if args.size == "tiny":
        cfg = {**cfg, "in_channels": 64}  # the engine trains on 16-channel latents packed 2×2
        shapes = {**shapes, "lat": (16, 16, 16)}
    channels, height, width = shapes["lat"]
    assert channels == 16 and height == width
    shapes = {**shapes, "lat": (16, height, width)}
    bare_runs = [bare_steps(bare, cfg, shapes, args)]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_pipeline(Path(tmp) / "model", dict(cfg), shapes["txt"][1], shapes["pooled"])
        engine = engine_steps(Path(tmp) / "ws", model, height * 8, shapes["txt"][0], args.steps, args.warmup,
                              args.rank, args.gc)
    bare_runs.append(bare_steps(bare, cfg, shapes, args))  # before and after: load from other work averages out
    bare_median = statistics.mean(bare_runs)
    report = {"size": args.size, "gc": args.gc, "bare_step_s_median": round(bare_median, 4),
              "bare_runs": [round(b, 4) for b in bare_runs],
              "engine_step_s_median": round(engine["engine_step_s_median"], 4),
              "ratio": round(engine["engine_step_s_median"] / bare_median, 3),
              "data_wait_share": round(engine["data_wait_share"], 5)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
