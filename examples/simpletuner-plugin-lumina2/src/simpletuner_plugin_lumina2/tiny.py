"""A tiny random-weight Lumina 2 pipeline folder built from the real diffusers/transformers classes.

It loads through ``Lumina2Pipeline.from_pretrained`` like the real weights. The Gemma tokenizer is trained here with
the ``tokenizers`` library; nothing is downloaded. ``python -m simpletuner_plugin_lumina2.tiny FOLDER`` builds one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_CORPUS = (
    "a photo of a red cat sitting on a blue chair in the sun",
    "a drawing of a green dog running across a yellow field at night",
    "a small black square and a large purple circle on a grey background",
    "you are an assistant designed to generate superior images with the superior degree of image-text alignment "
    "based on textual prompts or user prompts. <Prompt Start>",
)
_SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>")

TINY_SIZES: dict[str, Any] = {
    # head dim 16 = sum of the rope axes; the caption features are the Gemma hidden size
    "transformer": dict(sample_size=16, patch_size=2, in_channels=16, hidden_size=32, num_layers=1,
                        num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1, multiple_of=16,
                        axes_dim_rope=(4, 6, 6), axes_lens=(300, 64, 64), cap_feat_dim=32),
    "vae": dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 16, 16),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=1, norm_num_groups=4, sample_size=64, scaling_factor=0.3611, shift_factor=0.1159,
                use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False),
    "gemma": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=1024,
                  sliding_window=512),
}


def _tokenizer() -> Any:
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(Regex("▁"), behavior="merged_with_next")
    bpe.train_from_iterator(_CORPUS, trainer=trainers.BpeTrainer(vocab_size=400, special_tokens=list(_SPECIAL),
                                                                 show_progress=False))
    model = json.loads(bpe.to_str())["model"]
    pieces = [*_SPECIAL, *(f"<0x{b:02X}>" for b in range(256))]
    pieces += [p for p in sorted(model["vocab"], key=model["vocab"].get) if p not in set(pieces)]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return GemmaTokenizer(vocab={p: i for i, p in enumerate(pieces)}, merges=merges, model_max_length=1024,
                          add_bos_token=True)


def build_tiny_lumina2_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight Lumina 2 pipeline to ``folder`` (created) and return it."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    gemma = Gemma2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         **TINY_SIZES["gemma"])
    pipeline = Lumina2Pipeline(
        transformer=Lumina2Transformer2DModel(**TINY_SIZES["transformer"]),
        vae=AutoencoderKL(**TINY_SIZES["vae"]),
        text_encoder=Gemma2Model(gemma),
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=6.0),
    )
    pipeline.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    print(build_tiny_lumina2_pipeline(sys.argv[1] if len(sys.argv) > 1 else "lumina2-tiny"))
