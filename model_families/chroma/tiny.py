"""A tiny random-weight Chroma pipeline folder, built from the real diffusers/transformers classes (see
:mod:`simpletuner.model_families.flux.tiny`, whose tokenizer, VAE and T5 sizes it shares)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.model_families.flux.tiny import TINY_SIZES as FLUX_SIZES
from simpletuner.model_families.flux.tiny import _t5_tokenizer

#: The transformer's sizes: Flux's tiny ones without the pooled projection and guidance, with a small approximator
#: (the MLP that replaces Flux's modulation layers).
TINY_TRANSFORMER: dict[str, Any] = dict(
    patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=4,
    joint_attention_dim=32, axes_dims_rope=(4, 6, 6), approximator_num_channels=16, approximator_hidden_dim=32,
    approximator_layers=1,
)


def build_tiny_chroma_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight Chroma pipeline to ``folder`` (created) and return it; it loads with
    ``ChromaPipeline.from_pretrained(folder)`` and the Chroma family's loader."""
    import torch
    from diffusers import AutoencoderKL, ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _t5_tokenizer()
    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(**TINY_TRANSFORMER)
    vae = AutoencoderKL(**FLUX_SIZES["vae"])
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1,
                                           decoder_start_token_id=0, **FLUX_SIZES["t5"]))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    ChromaPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                   transformer=transformer).save_pretrained(folder)
    return folder
