"""A tiny random-weight Z-Image pipeline folder, built from the real diffusers/transformers classes: a Qwen3 text
encoder with a byte-level BPE tokenizer trained here (with a Qwen-style chat template), a tiny Z-Image transformer and
the VAE layout of :mod:`simpletuner.model_families.flux.tiny`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.model_families.flux.tiny import _CORPUS
from simpletuner.model_families.flux.tiny import TINY_SIZES as FLUX_SIZES

#: Qwen's chat layout: each message between ``<|im_start|>role`` and ``<|im_end|>``, then the assistant's turn; with
#: ``enable_thinking`` false an empty thinking block follows, as Qwen3's own template writes it.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)

TINY_SIZES: dict[str, Any] = {
    # attention heads of 32 dimensions: the sum of axes_dims
    "transformer": dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=64, n_layers=2,
                        n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=32, axes_dims=[8, 12, 12],
                        axes_lens=[1024, 64, 64]),
    "qwen3": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, max_position_embeddings=1024),
    "vae": FLUX_SIZES["vae"],
}


def qwen_tokenizer() -> Any:
    """A byte-level BPE tokenizer with Qwen's special tokens and chat template, trained on a small corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([*_CORPUS, "user assistant system think"], trainer=trainer)
    return Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                              chat_template=CHAT_TEMPLATE, model_max_length=1024)


def build_tiny_z_image_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight Z-Image pipeline to ``folder`` (created) and return it; it loads with
    ``ZImagePipeline.from_pretrained(folder)`` and the Z-Image family's loader."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen_tokenizer()
    torch.manual_seed(seed)
    ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=AutoencoderKL(**TINY_SIZES["vae"]),
        text_encoder=Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), **TINY_SIZES["qwen3"])), tokenizer=tokenizer,
        transformer=ZImageTransformer2DModel(**TINY_SIZES["transformer"]),
    ).save_pretrained(folder)
    return folder
