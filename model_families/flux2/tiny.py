"""A tiny random-weight FLUX.2 [klein] pipeline folder, built from the real diffusers/transformers classes: a Qwen3
causal LM as deep as the hidden layers the pipeline stacks (28), but 16 wide, the Qwen-style tokenizer of
:mod:`simpletuner.model_families.z_image.tiny`, a tiny Flux.2 transformer and a tiny Flux.2 VAE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.model_families.z_image.tiny import qwen_tokenizer

TINY_SIZES: dict[str, Any] = {
    # the text is three stacked hidden layers of 16 (48 wide); heads of 16 dimensions = the sum of axes_dims_rope
    "transformer": dict(patch_size=1, in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16,
                        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=16,
                        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False),
    "vae": dict(block_out_channels=(8, 8, 16, 16), latent_channels=32, norm_num_groups=4, layers_per_block=1,
                sample_size=64, use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False),
    "qwen3": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=28, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=8, max_position_embeddings=1024, tie_word_embeddings=True),
}


def build_tiny_flux2_klein_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight FLUX.2 [klein] pipeline to ``folder`` (created) and return it; it loads with
    ``Flux2KleinPipeline.from_pretrained(folder)`` and the Flux.2 family's loader."""
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen_tokenizer()
    torch.manual_seed(seed)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    Flux2KleinPipeline(
        scheduler=scheduler, vae=AutoencoderKLFlux2(**TINY_SIZES["vae"]),
        text_encoder=Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tokenizer), **TINY_SIZES["qwen3"])),
        tokenizer=tokenizer, transformer=Flux2Transformer2DModel(**TINY_SIZES["transformer"]), is_distilled=True,
    ).save_pretrained(folder)
    return folder
