"""Tiny random-weight FLUX.2 pipeline folders, built from the real diffusers/transformers classes.

[klein]: a Qwen3 causal LM as deep as the hidden layers the pipeline stacks (28) but 16 wide, with the Qwen-style
tokenizer of :mod:`simpletuner.model_families.z_image.tiny`. [dev]: a Mistral 3 model (a 30-layer, 16-wide language
model and a one-layer vision tower) with a byte-level BPE tokenizer trained here on Mistral's special tokens and a
Mistral-style chat template. Both share a tiny Flux.2 transformer (with a guidance input for [dev]) and a tiny Flux.2
VAE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.model_families.flux.tiny import _CORPUS
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
    # [dev] stacks hidden layers 10, 20 and 30, so the language model has 30 layers
    "mistral": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=30, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=8, max_position_embeddings=1024),
    "pixtral": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, head_dim=8,
                    image_size=64, patch_size=16),
}

#: Mistral's special tokens (the image markers are what its processor counts in a prompt).
MISTRAL_SPECIAL = ("<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
                   "[IMG]", "[IMG_BREAK]", "[IMG_END]")
#: Mistral Small's chat layout for text turns (content given as a string or as a list of typed parts): the system
#: prompt between [SYSTEM_PROMPT] markers, each user turn between [INST] markers, assistant turns closed by </s>.
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') "
    "| join('') %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]"
    "{% else %}{{ text }}{{ eos_token }}{% endif %}{% endfor %}"
)


def mistral_tokenizer() -> Any:
    """A byte-level BPE tokenizer with Mistral's special tokens and chat template, trained on a small corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(MISTRAL_SPECIAL), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([*_CORPUS, "You are an AI that reasons about image descriptions"], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", chat_template=MISTRAL_CHAT_TEMPLATE, model_max_length=1024)


def _scheduler() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)


def build_tiny_flux2_klein_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight FLUX.2 [klein] pipeline to ``folder`` (created) and return it; it loads with
    ``Flux2KleinPipeline.from_pretrained(folder)`` and the Flux.2 family's loader."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen_tokenizer()
    torch.manual_seed(seed)
    Flux2KleinPipeline(
        scheduler=_scheduler(), vae=AutoencoderKLFlux2(**TINY_SIZES["vae"]),
        text_encoder=Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tokenizer), **TINY_SIZES["qwen3"])),
        tokenizer=tokenizer, transformer=Flux2Transformer2DModel(**TINY_SIZES["transformer"]), is_distilled=True,
    ).save_pretrained(folder)
    return folder


def build_tiny_flux2_dev_pipeline(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight FLUX.2 [dev] pipeline to ``folder`` (created) and return it; it loads with
    ``Flux2Pipeline.from_pretrained(folder)`` and the Flux.2 family's loader with flavour ``dev``."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2Pipeline, Flux2Transformer2DModel
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig, PixtralVisionConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = mistral_tokenizer()
    config = Mistral3Config(
        text_config=MistralConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  **TINY_SIZES["mistral"]),
        vision_config=PixtralVisionConfig(**TINY_SIZES["pixtral"]), spatial_merge_size=1,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
    )
    torch.manual_seed(seed)
    Flux2Pipeline(
        scheduler=_scheduler(), vae=AutoencoderKLFlux2(**TINY_SIZES["vae"]),
        text_encoder=Mistral3ForConditionalGeneration(config), tokenizer=tokenizer,
        transformer=Flux2Transformer2DModel(**{**TINY_SIZES["transformer"], "guidance_embeds": True}),
    ).save_pretrained(folder)
    return folder
