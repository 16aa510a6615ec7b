"""The Qwen-Image family's behaviour: Qwen2.5-VL text through the pipeline's prompt template, the Qwen-Image VAE's
latent normalisation, Flux-style packing with rectified flow, and validation through ``QwenImagePipeline``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily
from simpletuner.core.training.flow_matching import batch_shift, flow_sample
from simpletuner.model_families.flux.family import pack_latents
from simpletuner.model_families.qwen_image.options import QwenImageOptions

#: The pipeline's text-to-image prompt template and how many of its leading tokens are dropped after encoding (the
#: system instruction and the user turn's header), as ``QwenImagePipeline`` sets them.
PROMPT_TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
                   "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}"
                   "<|im_end|>\n<|im_start|>assistant\n")
TEMPLATE_TOKENS = 34

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
_MLP = ("img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2")

_LOADERS = {
    "transformer": ("diffusers", "QwenImageTransformer2DModel"),
    "vae": ("diffusers", "AutoencoderKLQwenImage"),
    "text_encoder": ("transformers", "Qwen2_5_VLForConditionalGeneration"),
    "tokenizer": ("transformers", "AutoTokenizer"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
}


class QwenImageFamily(ModelFamily):
    """Qwen-Image: a 20B MMDiT conditioned on Qwen2.5-VL's last hidden states of the templated caption (template
    tokens dropped), over the Qwen-Image VAE's latents normalised by their published per-channel mean and spread,
    packed in 2×2 patches; rectified flow (x_t = (1−σ)·x₀ + σ·ε, target ε − x₀, σ logit-normal and shifted)."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
        "all-linear": _ATTENTION + _MLP + ("img_mod.1", "txt_mod.1"),
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("norm", "proj_out", "img_in", "txt_in", "time_text_embed", "pos_embed")
    bucket_alignment = 64
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset({"tokenizer", "scheduler"})
    text_components = ("text_encoder", "tokenizer")
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("QwenImageTransformerBlock",)

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else QwenImageOptions())

    def text_cache_settings(self) -> dict[str, Any]:
        """The token limit shapes the embeddings."""
        return {"max_tokens": self.options.qwen_image_max_tokens}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Per prompt, on the CPU: the caption's last hidden states after the template tokens, padded to the token
        limit with zeros, and the mask of its real tokens — the pipeline's embeddings and mask, padded further."""
        encoder, tokenizer = components["text_encoder"], components["tokenizer"]
        limit = self.options.qwen_image_max_tokens
        tokens = tokenizer([PROMPT_TEMPLATE.format(p) for p in prompts], max_length=limit + TEMPLATE_TOKENS,
                           padding=True, truncation=True, return_tensors="pt").to(encoder.device)
        hidden = encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                         output_hidden_states=True).hidden_states[-1]
        encoded = []
        for states, mask in zip(hidden, tokens.attention_mask.bool(), strict=True):
            caption = states[mask][TEMPLATE_TOKENS:]
            embeds = caption.new_zeros(limit, caption.shape[-1])
            embeds[: caption.shape[0]] = caption
            keep = torch.zeros(limit, dtype=torch.long)
            keep[: caption.shape[0]] = 1
            encoded.append({"prompt_embeds": embeds.cpu(), "attention_mask": keep})
        return encoded

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The VAE posterior's mean of each image (one frame), normalised as the pipeline un-normalises it:
        ``(z − mean) / std`` per channel."""
        vae = components["vae"]
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)[:, :, None]).latent_dist.mode()[:, :, 0]
        mean = torch.tensor(vae.config.latents_mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        return (latents - mean) / std

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noisy packed latents, σ as the timestep, the latent's shape in patches and the packed target."""
        b, _, h, w = latents.shape
        sample = flow_sample(latents, generator, batch_shift(self, (h // 2) * (w // 2)), self.core)
        return {
            "hidden_states": pack_latents(sample.noisy),
            "timestep": sample.sigmas.to(latents.dtype),
            "img_shapes": [[(1, h // 2, w // 2)]] * b,
            "target": pack_latents(sample.target),
            "sigmas": sample.sigmas,
        }

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call, the text cut to the batch's longest caption (padding past it is masked anyway)."""
        mask = text["attention_mask"]
        longest = max(int(mask.sum(dim=1).max()), 1)
        return components["transformer"](
            hidden_states=inputs["hidden_states"], encoder_hidden_states=text["prompt_embeds"][:, :longest],
            encoder_hidden_states_mask=mask[:, :longest], timestep=inputs["timestep"],
            img_shapes=inputs["img_shapes"], return_dict=False,
        )[0]

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``QwenImagePipeline`` sharing the live components (the transformer carries the adapter)."""
        from diffusers import QwenImagePipeline

        return QwenImagePipeline(**{name: components[name] for name in _LOADERS})
