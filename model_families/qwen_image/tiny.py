"""A tiny random-weight Qwen-Image pipeline folder, built from the real diffusers/transformers classes: a tiny
Qwen2.5-VL (text and vision towers), the Qwen-style tokenizer of :mod:`simpletuner.model_families.z_image.tiny`, a tiny
Qwen-Image transformer and a tiny Qwen-Image VAE with the published latent statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.model_families.z_image.tiny import qwen_tokenizer

TINY_SIZES: dict[str, Any] = {
    # heads of 16 dimensions: the sum of axes_dims_rope
    "transformer": dict(patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16,
                        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 6, 6)),
    # three downsamplings, like the real one: a 64 px image has an 8×8 latent
    "vae": dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True]),
    # multimodal RoPE sections sum to half the 16-dimensional heads
    "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=2048,
                 rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
    "vision": dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                   fullatt_block_indexes=[0], window_size=32, patch_size=14, spatial_merge_size=2,
                   temporal_patch_size=2),
}


def build_tiny_qwen_image_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight Qwen-Image pipeline to ``folder`` (created) and return it; it loads with
    ``QwenImagePipeline.from_pretrained(folder)`` and the Qwen-Image family's loader."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen_tokenizer()
    special = {"bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
               "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>")}
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(text_config={"vocab_size": len(tokenizer), **special, **TINY_SIZES["text"]},
                              vision_config=TINY_SIZES["vision"], **special)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                                base_image_seq_len=256, max_image_seq_len=8192,
                                                time_shift_type="exponential")
    QwenImagePipeline(scheduler=scheduler, vae=AutoencoderKLQwenImage(**TINY_SIZES["vae"]),
                      text_encoder=Qwen2_5_VLForConditionalGeneration(config), tokenizer=tokenizer,
                      transformer=QwenImageTransformer2DModel(**TINY_SIZES["transformer"])).save_pretrained(folder)
    return folder
