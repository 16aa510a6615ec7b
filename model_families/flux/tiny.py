"""A tiny random-weight Flux pipeline folder, built from the real diffusers/transformers classes.

Tests and ``simpletuner demo`` train on it: it loads through the same ``from_pretrained`` path as the real weights
(``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``text_encoder_2/``,
``tokenizer_2/``, ``scheduler/``) but is small enough to train on a CPU in seconds. Its tokenizers are trained here
with the ``tokenizers`` library on a small built-in corpus; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Words the tiny tokenizers learn; captions made of other words still tokenize (as sub-word pieces or unknown).
_CORPUS = (
    "a photo of a red cat sitting on a blue chair in the sun",
    "a drawing of a green dog running across a yellow field at night",
    "a painting of an orange bird flying over the white sea near a boat",
    "a small black square and a large purple circle on a grey background",
    "stripes checkerboard gradient noise pattern texture colour shape image picture",
    "one two three four five six seven eight nine ten left right top bottom center",
)

#: Sizes of the tiny components; the transformer's attention_head_dim equals the sum of axes_dims_rope.
TINY_SIZES: dict[str, Any] = {
    "transformer": dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
                        num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=32,
                        guidance_embeds=True, axes_dims_rope=(4, 6, 6)),  # 4 heads × 16: as wide as the packed input
    # four blocks make the VAE downsample by 8, like the real one, so a 128 px image has a 16×16 latent
    "vae": dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 16, 16),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=1, norm_num_groups=4, sample_size=128, scaling_factor=0.3611,
                shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False),
    "clip": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=77, projection_dim=32),
    "t5": dict(d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2, relative_attention_num_buckets=8,
               feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True),
}


def _clip_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    special = ["<|startoftext|>", "<|endoftext|>"]
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special, end_of_word_suffix="</w>",
                                  show_progress=False)
    bpe.train_from_iterator(list(_CORPUS), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return CLIPTokenizer(vocab=model["vocab"], merges=merges, model_max_length=77)


def _t5_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      show_progress=False)
    unigram.train_from_iterator(list(_CORPUS), trainer=trainer)
    pieces = json.loads(unigram.to_str())["model"]["vocab"]
    regular = [(piece, float(score)) for piece, score in pieces if piece not in ("<pad>", "</s>", "<unk>")]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *regular]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def build_tiny_flux_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight Flux pipeline to ``folder`` (created) and return it.

    The folder loads with ``FluxPipeline.from_pretrained(folder)`` and with the Flux family's component loader.
    Weights are random but deterministic for a given ``seed``.
    """
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _clip_tokenizer()
    tokenizer_2 = _t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**TINY_SIZES["transformer"])
    vae = AutoencoderKL(**TINY_SIZES["vae"])
    clip_config = CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                 **TINY_SIZES["clip"])
    text_encoder = CLIPTextModel(clip_config)
    t5_config = T5Config(vocab_size=len(tokenizer_2), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                         **TINY_SIZES["t5"])
    text_encoder_2 = T5EncoderModel(t5_config)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipeline = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                            text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)
    pipeline.save_pretrained(folder)
    return folder
