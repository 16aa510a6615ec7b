"""The engine's steady-state Sana or PixArt step time against the bare LoRA step
(``../shared/bench/bare_lora_step.py``).

Both run here, side by side, on the same transformer configuration (the bare script's ``small``/``full`` sizes),
latent and text shapes, LoRA rank and attention targets, optimizer and precision. The engine trains a tiny pipeline
of the family whose transformer and text-encoder widths are swapped for the bench's; its step is measured from its
own event stream (the time between consecutive ``step`` events: data loading, noise sampling, the step, metrics and
events included). The bare step runs before and after the engine so load from other work averages out.

usage: python bench/family_step_overhead.py --family sana|pixart [--size small|full] [--steps 10] [--bare PATH]
Prints one JSON line: bare and engine medians and minima, their ratios and the data-loader wait share.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BARE = REPO.parent / "shared" / "bench" / "bare_lora_step.py"
#: Pixels per latent cell: the DC-AE is 32× for Sana, the SDXL VAE 8× for PixArt.
VAE_SCALE = {"sana": 32, "pixart": 8}


def _bare_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("bare_lora_step", path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def build_pipeline(family: str, folder: Path, transformer_cfg: dict[str, Any], txt_dim: int) -> Path:
    """The family's tiny pipeline with the bench's transformer and a text encoder of the bench's width."""
    import torch

    if family == "sana":
        from diffusers import SanaTransformer2DModel as Transformer
        from transformers import Gemma2Model as Encoder

        from simpletuner.model_families.sana.tiny import build_tiny_sana_pipeline as build
        width = "hidden_size"
    else:
        from diffusers import PixArtTransformer2DModel as Transformer
        from transformers import T5EncoderModel as Encoder

        from simpletuner.model_families.pixart.tiny import build_tiny_pixart_pipeline as build
        width = "d_model"
    build(folder)
    torch.manual_seed(0)
    Transformer(**transformer_cfg).save_pretrained(folder / "transformer")
    config = Encoder.from_pretrained(folder / "text_encoder").config
    setattr(config, width, txt_dim)
    Encoder(config).save_pretrained(folder / "text_encoder")
    return folder


def engine_steps(family: str, workspace: Path, model: Path, pixels: int, tokens: int, args: argparse.Namespace
                 ) -> dict[str, float]:
    """Train with the engine and return its median step time and data-wait share."""
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
        "model_family": family, "pretrained_model_name_or_path": str(model), "lora_rank": args.rank,
        "lora_alpha": args.rank, "lora_dropout": 0.0, "lora_target_preset": "attention", "learning_rate": 1e-4,
        "max_train_steps": args.warmup + args.steps, "num_train_epochs": 0, "train_batch_size": 1, "seed": 0,
        "resolution": pixels, "mixed_precision": "bf16" if _cuda() else "no", "max_grad_norm": 0,
        "checkpointing_steps": 0, f"{family}_max_tokens": tokens, "report_to": "none", "output_dir": "output/bench",
        "gradient_checkpointing": args.gc,
    }))
    (env / "multidatabackend.json").write_text(json.dumps([
        {"id": "bench", "instance_data_dir": str(data), "minimum_image_size": 64},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True},
    ]))
    registry = Registry()
    result = train(load_environment(ws, EnvironmentStore(ws.configs_dir), "bench", registry), ws, registry)
    steps = [e for e in read_events(result.output_dir / "events.jsonl") if e["event"] == "step"]
    times = [b["time"] - a["time"] for a, b in zip(steps, steps[1:], strict=False)][args.warmup:]
    waits = [e["data_wait_s"] for e in steps[args.warmup + 1:]]
    return {"engine_step_s_median": statistics.median(times), "engine_step_s_min": min(times),
            "data_wait_share": sum(waits) / sum(times)}


def bare_steps(bare: Any, family: str, cfg: dict[str, Any], shapes: dict[str, Any], args: argparse.Namespace
               ) -> list[float]:
    """The bare script's own step (its ``forward``, LoRA, AdamW), timed as the script does, here in-process."""
    import torch
    from diffusers import PixArtTransformer2DModel, SanaTransformer2DModel
    from peft import LoraConfig, inject_adapter_in_model

    dev = "cuda" if _cuda() else "cpu"
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    torch.manual_seed(0)
    cls = SanaTransformer2DModel if family == "sana" else PixArtTransformer2DModel
    with torch.device(dev):
        model = cls(**cfg).to(dtype)
    model.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                       target_modules=bare.TARGETS[family]), model)
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
            loss = bare.forward(family, model, shapes, 1, dev, dtype)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    del model, opt
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", required=True, choices=["sana", "pixart"])
    parser.add_argument("--size", default="small", choices=["small", "full"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--gc", action="store_true")
    parser.add_argument("--bare", type=Path, default=DEFAULT_BARE)
    args = parser.parse_args()
    bare = _bare_module(args.bare)
    family = args.family
    cfg = dict({"small": bare.SMALL, "full": bare.FULL}[args.size][family])
    shapes = bare.SHAPES[(family, args.size)]
    channels, height, width = shapes["lat"]
    tokens, txt_dim = shapes["txt"]
    assert height == width, "the bench trains square images"
    bare_runs = [bare_steps(bare, family, cfg, shapes, args)]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_pipeline(family, Path(tmp) / "model", cfg, txt_dim)
        engine = engine_steps(family, Path(tmp) / "ws", model, height * VAE_SCALE[family], tokens, args)
    bare_runs.append(bare_steps(bare, family, cfg, shapes, args))
    bare_median = statistics.mean(statistics.median(run) for run in bare_runs)
    bare_min = min(min(run) for run in bare_runs)
    print(json.dumps({
        "family": family, "size": args.size, "gc": args.gc, "device": "cuda" if _cuda() else "cpu",
        "bare_step_s_median": round(bare_median, 4), "bare_runs": [round(statistics.median(b), 4) for b in bare_runs],
        "engine_step_s_median": round(engine["engine_step_s_median"], 4),
        "ratio": round(engine["engine_step_s_median"] / bare_median, 3),
        # the fastest step of each side: less sensitive to load from other processes on a shared machine
        "bare_step_s_min": round(bare_min, 4), "engine_step_s_min": round(engine["engine_step_s_min"], 4),
        "ratio_min": round(engine["engine_step_s_min"] / bare_min, 3),
        "data_wait_share": round(engine["data_wait_share"], 5),
    }))


if __name__ == "__main__":
    main()
