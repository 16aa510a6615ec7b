"""The Chroma family's behaviour: T5-only text with Chroma's attention mask, Flux's latent packing and rectified
flow, and validation through ``ChromaPipeline``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily
from simpletuner.core.training.flow_matching import batch_shift, flow_sample
from simpletuner.model_families.chroma.options import ChromaOptions
from simpletuner.model_families.flux.family import image_ids, pack_latents

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
_MLP = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out")

_LOADERS = {
    "transformer": ("diffusers", "ChromaTransformer2DModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "T5EncoderModel"),
    "tokenizer": ("transformers", "T5Tokenizer"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
}


def text_mask(tokenizer_mask: torch.Tensor) -> torch.Tensor:
    """Chroma's text attention mask: the caption's tokens and the first pad token after them (the end of the
    caption the model was trained to see), every further pad token masked out."""
    lengths = tokenizer_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(tokenizer_mask.shape[1], device=tokenizer_mask.device)[None, :]
    return (positions <= lengths).to(tokenizer_mask.dtype)


class ChromaFamily(ModelFamily):
    """Chroma 1: FLUX.1-schnell trimmed to 8.9B parameters, its modulation computed by a small approximator from
    the timestep alone (no pooled text, no guidance input), T5-XXL text whose padding is masked out of attention;
    rectified flow (target ε − x₀) with a logit-normal, shifted σ, and 2×2 packing like Flux."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
        "all-linear": _ATTENTION + _MLP + ("norm.linear", "norm1.linear", "norm1_context.linear"),
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("norm", "proj_out", "x_embedder", "context_embedder", "time_text_embed",
                               "distilled_guidance_layer", "pos_embed")
    bucket_alignment = 64
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset({"tokenizer", "scheduler"})
    text_components = ("text_encoder", "tokenizer")
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("ChromaTransformerBlock", "ChromaSingleTransformerBlock")

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else ChromaOptions())
        self._position_ids: dict[tuple[Any, ...], torch.Tensor] = {}

    def _ids(self, kind: str, rows: int, columns: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Image ids of a latent or text ids (zeros), built once per shape."""
        key = (kind, rows, columns, device, dtype)
        if key not in self._position_ids:
            self._position_ids[key] = (image_ids(rows, columns, device, dtype) if kind == "image"
                                       else torch.zeros(rows, 3, device=device, dtype=dtype))
        return self._position_ids[key]

    def text_cache_settings(self) -> dict[str, Any]:
        """The token limit shapes the embeddings."""
        return {"t5_max_tokens": self.options.chroma_t5_max_tokens}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """T5's padded sequence, encoded with the tokenizer's mask as ``ChromaPipeline`` does, and Chroma's
        attention mask, per prompt, on the CPU."""
        encoder, tokenizer = components["text_encoder"], components["tokenizer"]
        inputs = tokenizer(list(prompts), padding="max_length", max_length=self.options.chroma_t5_max_tokens,
                           truncation=True, return_tensors="pt")
        mask = inputs.attention_mask.to(encoder.device)
        embeds = encoder(inputs.input_ids.to(encoder.device), attention_mask=mask, output_hidden_states=False)[0]
        chroma_mask = text_mask(mask)
        return [{"prompt_embeds": embeds[i].cpu(), "attention_mask": chroma_mask[i].cpu()}
                for i in range(len(prompts))]

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The VAE posterior's mean, shifted and scaled as the pipeline expects (``(z − shift) · scale``)."""
        vae = components["vae"]
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
        return (latents - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noisy packed latents, σ (the transformer scales it by 1000 itself), image ids and the packed target."""
        _, _, h, w = latents.shape
        sample = flow_sample(latents, generator, batch_shift(self, (h // 2) * (w // 2)), self.core)
        return {
            "hidden_states": pack_latents(sample.noisy),
            "timestep": sample.sigmas.to(latents.dtype),
            "img_ids": self._ids("image", h, w, latents.device, latents.dtype),
            "target": pack_latents(sample.target),
            "sigmas": sample.sigmas,
        }

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call with the text mask extended over the image tokens (always attended)."""
        embeds = text["prompt_embeds"]
        hidden = inputs["hidden_states"]
        mask = text["attention_mask"].bool()
        full = torch.cat([mask, mask.new_ones(mask.shape[0], hidden.shape[1])], dim=1)
        return components["transformer"](
            hidden_states=hidden, encoder_hidden_states=embeds, timestep=inputs["timestep"],
            img_ids=inputs["img_ids"], txt_ids=self._ids("text", embeds.shape[1], 0, embeds.device, embeds.dtype),
            attention_mask=full, return_dict=False,
        )[0]

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``ChromaPipeline`` sharing the live components (the transformer carries the adapter)."""
        from diffusers import ChromaPipeline

        return ChromaPipeline(**{name: components[name] for name in _LOADERS})
