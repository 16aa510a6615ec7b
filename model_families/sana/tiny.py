"""A tiny random-weight Sana pipeline folder, built from the real diffusers/transformers classes.

Tests and ``simpletuner demo --family sana`` train on it: it loads through the same ``from_pretrained`` path as the
real weights (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``)
but trains on a CPU in seconds. Like the real DC-AE, its autoencoder compresses 32× into 32 channels. The Gemma
tokenizer is trained here with the ``tokenizers`` library (on a small corpus plus the complex human instruction, so
prefixed captions stay short); nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Words the tiny tokenizer learns; other words still tokenize (as smaller pieces or byte-fallback tokens).
_CORPUS = (
    "a photo of a red cat sitting on a blue chair in the sun",
    "a drawing of a green dog running across a yellow field at night",
    "a painting of an orange bird flying over the white sea near a boat",
    "a small black square and a large purple circle on a grey background",
    "stripes checkerboard gradient noise pattern texture colour shape image picture",
)
_SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")  # Gemma's ids 0-4

#: Sizes of the tiny components (caption_channels is the Gemma hidden size).
TINY_SIZES: dict[str, Any] = {
    "transformer": dict(in_channels=32, out_channels=32, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                        num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32,
                        caption_channels=32, mlp_ratio=2.5, sample_size=16, patch_size=1),
    # six stages downsample 32× like the real DC-AE; attention (EfficientViT) blocks in the deep stages only
    "vae": dict(in_channels=3, latent_channels=32, attention_head_dim=8,
                encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                encoder_block_out_channels=(8, 8, 16, 16, 32, 32), decoder_block_out_channels=(8, 8, 16, 16, 32, 32),
                encoder_layers_per_block=(1, 1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1, 1),
                encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
                decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
                decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407),
    "gemma": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=2048,
                  sliding_window=512),
}


def _gemma_tokenizer() -> Any:
    """A byte-fallback BPE with Gemma's special tokens and ``▁`` word marks, trained on the corpus."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    from simpletuner.model_families.sana.family import complex_human_instruction

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(Regex("▁"), behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=list(_SPECIAL), show_progress=False)
    bpe.train_from_iterator([*_CORPUS, *complex_human_instruction().splitlines()], trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    # specials first, then the 256 byte-fallback tokens, then the learned pieces (ids renumbered in that order)
    pieces = [*_SPECIAL, *(f"<0x{b:02X}>" for b in range(256))]
    pieces += [p for p in sorted(model["vocab"], key=model["vocab"].get) if p not in set(pieces)]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return GemmaTokenizer(vocab=vocab, merges=merges, model_max_length=2048, add_bos_token=True)


def build_tiny_sana_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight Sana pipeline to ``folder`` (created) and return it.

    The folder loads with ``SanaPipeline.from_pretrained(folder)`` and with the Sana family's component loader.
    Weights are random but deterministic for a given ``seed``.
    """
    import torch
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _gemma_tokenizer()
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(**TINY_SIZES["transformer"])
    vae = AutoencoderDC(**TINY_SIZES["vae"])
    config = Gemma2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          **TINY_SIZES["gemma"])
    text_encoder = Gemma2Model(config)
    # the real repositories' sampler: DPM-Solver++ on flow sigmas with Sana's shift of 3
    scheduler = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                            algorithm_type="dpmsolver++", solver_order=2)
    pipeline = SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                            scheduler=scheduler)
    pipeline.save_pretrained(folder)
    return folder
