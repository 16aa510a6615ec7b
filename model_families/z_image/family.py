"""The Z-Image family's behaviour: Qwen3 text through the chat template as ``ZImagePipeline`` encodes it, rectified
flow in the transformer's own conventions, and validation through the stock pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily
from simpletuner.core.training.flow_matching import batch_shift, flow_sample
from simpletuner.model_families.z_image.options import ZImageOptions

_ATTENTION = ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0")
_MLP = ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3")

_LOADERS = {
    "transformer": ("diffusers", "ZImageTransformer2DModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "Qwen3Model"),
    "tokenizer": ("transformers", "AutoTokenizer"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
}


class ZImageFamily(ModelFamily):
    """Z-Image: a 6B single-stream DiT over image and caption tokens (with refiner blocks for each before they
    join), conditioned on Qwen3's second-to-last hidden states of the chat-formatted caption, without its padding.
    Rectified flow as the rest (x_t = (1−σ)·x₀ + σ·ε, σ logit-normal and shifted), in the transformer's own
    conventions: its time input is 1 − σ and it predicts x₀ − ε (the pipeline negates it into the velocity)."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
        "all-linear": _ATTENTION + _MLP + ("adaLN_modulation.0",),
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("norm", "x_embedder", "final_layer", "t_embedder", "cap_embedder", "adaLN")
    bucket_alignment = 64
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset({"tokenizer", "scheduler"})
    text_components = ("text_encoder", "tokenizer")
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("ZImageTransformerBlock",)

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else ZImageOptions())

    def text_cache_settings(self) -> dict[str, Any]:
        """The token limit shapes the embeddings."""
        return {"max_tokens": self.options.z_image_max_tokens}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Per prompt, on the CPU: Qwen3's second-to-last hidden states of the chat-formatted caption, padded to the
        token limit, and the mask of its real tokens (:meth:`predict` drops the padding, as the pipeline does)."""
        encoder, tokenizer = components["text_encoder"], components["tokenizer"]
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                               add_generation_prompt=True, enable_thinking=True)
                 for prompt in prompts]
        inputs = tokenizer(texts, padding="max_length", max_length=self.options.z_image_max_tokens, truncation=True,
                           return_tensors="pt")
        mask = inputs.attention_mask.to(encoder.device).bool()
        hidden = encoder(input_ids=inputs.input_ids.to(encoder.device), attention_mask=mask,
                         output_hidden_states=True).hidden_states[-2]
        return [{"prompt_embeds": hidden[i].cpu(), "attention_mask": mask[i].cpu()} for i in range(len(texts))]

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The VAE posterior's mean, shifted and scaled as the pipeline expects (``(z − shift) · scale``)."""
        vae = components["vae"]
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
        return (latents - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noisy latents, the transformer's time input 1 − σ and its target x₀ − ε."""
        h, w = latents.shape[-2:]
        sample = flow_sample(latents, generator, batch_shift(self, (h // 2) * (w // 2)), self.core)
        return {"hidden_states": sample.noisy, "timestep": (1 - sample.sigmas).to(latents.dtype),
                "target": -sample.target, "sigmas": sample.sigmas}

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call on per-sample lists (one frame each; captions without their padding)."""
        mask = text["attention_mask"].bool()
        captions = [embeds[keep] for embeds, keep in zip(text["prompt_embeds"], mask, strict=True)]
        frames = list(inputs["hidden_states"].unsqueeze(2).unbind(dim=0))
        output = components["transformer"](frames, inputs["timestep"], captions, return_dict=False)[0]
        return torch.stack(output, dim=0).squeeze(2)

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``ZImagePipeline`` sharing the live components (the transformer carries the adapter)."""
        from diffusers import ZImagePipeline

        return ZImagePipeline(**{name: components[name] for name in _LOADERS})
