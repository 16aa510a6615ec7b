"""A tiny random-weight PixArt-Sigma pipeline folder, built from the real diffusers/transformers classes.

Tests and ``simpletuner demo --family pixart`` train on it: it loads through the same ``from_pretrained`` path as
the real weights (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``) but trains on a CPU in seconds. Like the real model, the transformer predicts a learned variance
next to the noise (twice the latent channels). The T5 tokenizer is trained here with the ``tokenizers`` library;
nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Words the tiny tokenizer learns; other words still tokenize (as smaller pieces or unknown).
_CORPUS = (
    "a photo of a red cat sitting on a blue chair in the sun",
    "a drawing of a green dog running across a yellow field at night",
    "a painting of an orange bird flying over the white sea near a boat",
    "a small black square and a large purple circle on a grey background",
    "stripes checkerboard gradient noise pattern texture colour shape image picture",
)

#: Sizes of the tiny components. sample_size 32 makes the pipeline's resolution binning use its 256 px table.
TINY_SIZES: dict[str, Any] = {
    "transformer": dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
                        cross_attention_dim=32, caption_channels=32, sample_size=32, patch_size=2,
                        norm_num_groups=1, use_additional_conditions=False),
    # four blocks make the VAE downsample by 8 into 4 channels, like the SDXL VAE PixArt-Sigma uses
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=1, norm_num_groups=4, sample_size=256, scaling_factor=0.13025,
                mid_block_add_attention=False),
    "t5": dict(d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2, relative_attention_num_buckets=8,
               feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True),
}


def _t5_tokenizer() -> Any:
    """A unigram T5 tokenizer (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2) trained on the corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    special = ["<pad>", "</s>", "<unk>"]
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=special, unk_token="<unk>",
                                      show_progress=False)
    unigram.train_from_iterator(list(_CORPUS), trainer=trainer)
    pieces = json.loads(unigram.to_str())["model"]["vocab"]
    vocab = [(s, 0.0) for s in special] + [(p, float(score)) for p, score in pieces if p not in special]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def build_tiny_pixart_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight PixArt-Sigma pipeline to ``folder`` (created) and return it.

    The folder loads with ``PixArtSigmaPipeline.from_pretrained(folder)`` and with the PixArt family's component
    loader. Weights are random but deterministic for a given ``seed``.
    """
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    from simpletuner.model_families.pixart.family import TRAINING_SCHEDULE

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _t5_tokenizer()
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(**TINY_SIZES["transformer"])
    vae = AutoencoderKL(**TINY_SIZES["vae"])
    t5_config = T5Config(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                         **TINY_SIZES["t5"])
    text_encoder = T5EncoderModel(t5_config)
    # the released weights ship a multistep DPM-Solver on the training schedule
    scheduler = DPMSolverMultistepScheduler(**TRAINING_SCHEDULE)
    pipeline = PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                   scheduler=scheduler)
    pipeline.save_pretrained(folder)
    return folder
