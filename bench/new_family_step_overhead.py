"""The engine's steady-state step against a bare LoRA step of the same transformer or UNet, for the families the
shared bare script does not cover (Flux.2, Chroma, SD3.5, SDXL, Qwen-Image, Z-Image; ``family_step_overhead.py``
covers Sana and PixArt).

The bare step is the plain PyTorch loop a user would write around the stock diffusers model: the family's tiny
pipeline with its trained component widened to the bench's "small" size, a PEFT LoRA on the family's default targets,
fixed latents and text embeddings, and per step the noise and timestep draw, one forward, MSE, backward and AdamW.
The engine trains the same pipeline from images through its whole step (data loading, noise sampling, the step,
metrics and the event write); both run in this process, interleaved step by step (see ``step_pairs.py``).

usage: python bench/new_family_step_overhead.py --family F [--steps 20] [--warmup 3] [--rank 16]
Prints one JSON line per family: medians and minima of both sides and their ratio (target ≤ 1.05).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_pairs import cuda, engine_optimizer_kwargs, run_pairs, summary, write_environment  # noqa: E402

#: The trained component's config at the bench's "small" size: wider and deeper than the tiny test models, still
#: quick on a CPU. Each family's rotary axes add up to its head width.
SMALL: dict[str, dict[str, Any]] = {
    "flux2": {"num_layers": 2, "num_single_layers": 4, "attention_head_dim": 64, "num_attention_heads": 4,
              "axes_dims_rope": (16, 16, 16, 16)},
    "chroma": {"num_layers": 2, "num_single_layers": 4, "attention_head_dim": 64, "num_attention_heads": 4,
               "axes_dims_rope": (16, 24, 24)},
    "sd3": {"num_layers": 4, "attention_head_dim": 64, "num_attention_heads": 4, "caption_projection_dim": 256},
    "qwen_image": {"num_layers": 4, "attention_head_dim": 64, "num_attention_heads": 4, "axes_dims_rope": (16, 24, 24)},
    "z_image": {"dim": 256, "n_layers": 4, "n_heads": 4, "n_kv_heads": 4, "axes_dims": [16, 24, 24]},
    "sdxl": {"block_out_channels": (128, 256), "layers_per_block": 2, "transformer_layers_per_block": (1, 2)},
}
#: Text tokens per caption and pixels per image side of the bench.
TOKENS, PIXELS = 32, 256
#: The option naming each family's text length.
TOKEN_OPTIONS = {"flux2": "flux2_max_tokens", "chroma": "chroma_t5_max_tokens", "sd3": "sd3_t5_max_tokens",
                 "qwen_image": "qwen_image_max_tokens", "z_image": "z_image_max_tokens"}


def build_pipeline(family: str, folder: Path) -> tuple[Any, Path]:
    """The family's tiny pipeline with its trained component rebuilt at the bench's size; returns the family
    object (default options, the bench's text length) and the folder."""
    import diffusers
    import torch

    from simpletuner.core.plugins import Registry

    spec = Registry().model_family(family)
    assert spec.tiny is not None, f"{family} declares no tiny model"
    spec.tiny.build(folder)
    options = {TOKEN_OPTIONS[family]: TOKENS} if family in TOKEN_OPTIONS else {}
    model = spec.build(spec.flavour(None), spec.options(**options))
    component = model.trained_component
    index = json.loads((folder / "model_index.json").read_text())
    cls = getattr(diffusers, index[component][1])
    config = {**dict(cls.load_config(folder / component)), **SMALL[family]}
    torch.manual_seed(0)
    cls.from_config(config).save_pretrained(folder / component)
    return model, folder


class FamilyBareStep:
    """The bare step on the family's trained component (see the module documentation); :meth:`run` times one."""

    def __init__(self, model: Any, folder: Path, rank: int, engine_optimizer: dict[str, Any]) -> None:
        import torch
        from peft import LoraConfig, inject_adapter_in_model

        self.model, self.device = model, "cuda" if cuda() else "cpu"
        self.dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        components = model.load_components(str(folder), dtype=self.dtype, device=self.device)
        self.network = components[model.trained_component]
        self.network.requires_grad_(False)
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                           target_modules=list(model.lora_targets())), self.network)
        lora = [p for p in self.network.parameters() if p.requires_grad]
        for p in lora:
            p.data = p.data.float()
        self.network.train()
        pixels = torch.rand(1, 3, PIXELS, PIXELS, device=self.device, dtype=self.dtype) * 2 - 1
        self.latents = model.encode_latents(components, pixels).to(self.dtype)
        text = model.encode_text(components, ["a photo of a red cat sitting on a blue chair"])[0]
        self.text = {k: v[None].to(self.device) for k, v in text.items()}
        self.generator = torch.Generator(self.device).manual_seed(0)
        self.optimizers = {"script": torch.optim.AdamW(lora, lr=1e-4),
                           "engine": torch.optim.AdamW(lora, lr=1e-4, **engine_optimizer)}
        del components

    def run(self, optimizer: str) -> float:
        import torch

        opt = self.optimizers[optimizer]
        self._sync()
        start = time.perf_counter()
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.device == "cuda"):
            extra = {"geometry": torch.tensor([[PIXELS, PIXELS, 0, 0, PIXELS, PIXELS]], device=self.device)} \
                if getattr(self.model, "uses_image_geometry", False) else {}
            inputs = self.model.training_inputs(self.latents, self.text, self.generator, **extra)
            prediction = self.model.predict({self.model.trained_component: self.network}, inputs, self.text)
            loss = self.model.loss(prediction, inputs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        self._sync()
        return time.perf_counter() - start

    def _sync(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", action="append", choices=sorted(SMALL), help="repeatable; default: all")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()
    for family in args.family or sorted(SMALL):
        with tempfile.TemporaryDirectory() as tmp:
            model, folder = build_pipeline(family, Path(tmp) / "model")
            step = FamilyBareStep(model, folder, args.rank, engine_optimizer_kwargs())
            settings = {"lora_rank": args.rank, "lora_alpha": args.rank, "lora_dropout": 0.0,
                        "max_train_steps": args.warmup + args.steps + 1, "max_grad_norm": 0.0, **(
                            {TOKEN_OPTIONS[family]: TOKENS} if family in TOKEN_OPTIONS else {})}
            write_environment(Path(tmp) / "ws", family, folder, PIXELS, settings)
            times = run_pairs(Path(tmp) / "ws", step)
        print(json.dumps({"family": family, "pixels": PIXELS, **summary(times, args.warmup)}), flush=True)


if __name__ == "__main__":
    main()
