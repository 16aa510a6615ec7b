"""A tiny random-weight SDXL pipeline folder, built from the real diffusers/transformers classes.

Tests and ``simpletuner demo --family sdxl`` train on it: it loads through the same ``from_pretrained`` path as the
real weights (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``text_encoder_2/``,
``tokenizer_2/``, ``scheduler/``) but trains on a CPU in seconds. The UNet has SDXL's shape in small: a plain
down block, then cross-attention blocks, linear projections and the ``text_time`` added conditioning (pooled text
plus six size/crop ids); the second CLIP encoder has a text projection. The CLIP tokenizers are trained here with the
``tokenizers`` library (Flux's tiny helper); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Sizes of the tiny components: the two 32-wide CLIP encoders concatenate to the UNet's 64-wide cross-attention,
#: and the added embedding takes 6 time ids × 8 plus the 32-wide pooled projection.
TINY_SIZES: dict[str, Any] = {
    "unet": dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                 transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 32,
                 cross_attention_dim=64, norm_num_groups=8),
    # four blocks make the VAE downsample by 8 into 4 channels, like SDXL's; it overflows in fp16 like SDXL's too
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=1, norm_num_groups=4, sample_size=128, scaling_factor=0.13025,
                mid_block_add_attention=False, force_upcast=True),
    "clip": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=77, projection_dim=32),
}
#: SDXL 1.0's own sampler configuration (Euler on the scaled-linear training schedule, leading spacing).
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                 steps_offset=1, timestep_spacing="leading", prediction_type="epsilon")


def build_tiny_sdxl_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight SDXL pipeline to ``folder`` (created) and return it.

    The folder loads with ``StableDiffusionXLPipeline.from_pretrained(folder)`` and with the SDXL family's component
    loader. Weights are random but deterministic for a given ``seed``.
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from simpletuner.model_families.flux.tiny import _clip_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _clip_tokenizer()
    tokenizer_2 = _clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_SIZES["unet"])
    vae = AutoencoderKL(**TINY_SIZES["vae"])
    clip_config = CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                 **TINY_SIZES["clip"])
    text_encoder = CLIPTextModel(clip_config)
    text_encoder_2 = CLIPTextModelWithProjection(clip_config)
    scheduler = EulerDiscreteScheduler(**SCHEDULER)
    pipeline = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler)
    pipeline.save_pretrained(folder)
    return folder
