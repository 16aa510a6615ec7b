"""A tiny random-weight Stable Diffusion 3.5 pipeline folder, built from the real diffusers/transformers classes
(tokenizers and the VAE's layout are those of :mod:`simpletuner.model_families.flux.tiny`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.model_families.flux.tiny import TINY_SIZES as FLUX_SIZES
from simpletuner.model_families.flux.tiny import _clip_tokenizer, _t5_tokenizer

#: CLIP-L and CLIP-G of 32 dimensions each: their joined hidden states (64) are as wide as T5, as 768 + 1280 are
#: padded to T5-XXL's 4096 in the real model; the pooled projections (32 + 32) feed the transformer's 64.
TINY_SIZES: dict[str, Any] = {
    "transformer": dict(sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
                        num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32,
                        pooled_projection_dim=64, out_channels=16, pos_embed_max_size=16, qk_norm="rms_norm",
                        dual_attention_layers=(0,)),  # 3.5 medium's layout: RMS-normed q/k, a dual-attention block
    "vae": {**FLUX_SIZES["vae"], "scaling_factor": 1.5305, "shift_factor": 0.0609},
    "clip": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=77, projection_dim=32),
    "t5": {**FLUX_SIZES["t5"], "d_model": 64},
}


def build_tiny_sd3_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight SD3 pipeline to ``folder`` (created) and return it; it loads with
    ``StableDiffusion3Pipeline.from_pretrained(folder)`` and the SD3 family's loader."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, tokenizer_3 = _clip_tokenizer(), _t5_tokenizer()
    torch.manual_seed(seed)

    def clip() -> Any:
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **TINY_SIZES["clip"]))

    pipeline = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**TINY_SIZES["transformer"]),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=AutoencoderKL(**TINY_SIZES["vae"]),
        text_encoder=clip(), tokenizer=tokenizer, text_encoder_2=clip(), tokenizer_2=_clip_tokenizer(),
        text_encoder_3=T5EncoderModel(T5Config(vocab_size=len(tokenizer_3), pad_token_id=0, eos_token_id=1,
                                               decoder_start_token_id=0, **TINY_SIZES["t5"])),
        tokenizer_3=tokenizer_3,
    )
    pipeline.save_pretrained(folder)
    return folder
