"""The Flux family's behaviour: loading, text and latent encoding, the rectified-flow recipe and validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily, model_config
from simpletuner.core.training.flow_matching import batch_shift, flow_sample
from simpletuner.model_families.flux.options import FluxOptions

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
_MLP = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out")

#: Where each component lives in a diffusers Flux folder and the class that loads it.
_LOADERS = {
    "transformer": ("diffusers", "FluxTransformer2DModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "text_encoder_2": ("transformers", "T5EncoderModel"),
    "tokenizer_2": ("transformers", "T5Tokenizer"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
}
_UNTYPED = {"tokenizer", "tokenizer_2", "scheduler"}  # no dtype or device


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` latents → ``B×(H/2·W/2)×4C`` tokens of 2×2 patches (Flux's layout)."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def image_ids(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Position ids (0, row, column) of the packed tokens of an ``height×width`` latent."""
    ids = torch.zeros(height // 2, width // 2, 3, device=device, dtype=dtype)
    ids[..., 1] = torch.arange(height // 2, device=device, dtype=dtype)[:, None]
    ids[..., 2] = torch.arange(width // 2, device=device, dtype=dtype)[None, :]
    return ids.reshape(-1, 3)


class FluxFamily(ModelFamily):
    """FLUX.1: rectified flow (x_t = (1−σ)·x₀ + σ·ε, target ε − x₀), logit-normal σ with a shift, 2×2 packing,
    guidance embedding for guidance-distilled flavours, CLIP-L pooled + T5-XXL sequence text conditioning."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
        "all-linear": _ATTENTION + _MLP + ("norm.linear", "norm1.linear", "norm1_context.linear"),
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("norm", "proj_out", "x_embedder", "context_embedder", "time_text_embed", "pos_embed")
    bucket_alignment = 64
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset(_UNTYPED)
    text_components = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("FluxTransformerBlock", "FluxSingleTransformerBlock")

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else FluxOptions())
        # position ids depend only on the latent or text shape: built once per shape, not every step
        self._position_ids: dict[tuple[Any, ...], torch.Tensor] = {}

    def _ids(self, kind: str, rows: int, columns: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Image ids of a ``rows×columns`` latent or text ids (zeros) of ``rows`` tokens, cached per shape."""
        key = (kind, rows, columns, device, dtype)
        ids = self._position_ids.get(key)
        if ids is None:
            if kind == "image":
                ids = image_ids(rows, columns, device, dtype)
            else:
                ids = torch.zeros(rows, 3, device=device, dtype=dtype)
            self._position_ids[key] = ids
        return ids

    # -- text --------------------------------------------------------------------------------------------------

    def text_cache_settings(self) -> dict[str, Any]:
        """The T5 token limit shapes the embeddings."""
        return {"t5_max_tokens": self.options.flux_t5_max_tokens}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """CLIP's pooled output and T5's padded sequence (with its attention mask) per prompt, on the CPU."""
        clip, clip_tok = components["text_encoder"], components["tokenizer"]
        t5, t5_tok = components["text_encoder_2"], components["tokenizer_2"]
        prompts = list(prompts)
        clip_ids = clip_tok(prompts, padding="max_length", max_length=clip_tok.model_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(clip.device)
        pooled = clip(clip_ids, output_hidden_states=False).pooler_output
        t5_inputs = t5_tok(prompts, padding="max_length", max_length=self.options.flux_t5_max_tokens,
                           truncation=True, return_tensors="pt")
        mask = t5_inputs.attention_mask.to(t5.device)
        embeds = t5(t5_inputs.input_ids.to(t5.device), output_hidden_states=False)[0]
        return [
            {"prompt_embeds": embeds[i].cpu(), "pooled_prompt_embeds": pooled[i].cpu(),
             "attention_mask": mask[i].cpu()}
            for i in range(len(prompts))
        ]

    # -- latents -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The VAE posterior's mean, shifted and scaled like the pipeline expects (``(z − shift) · scale``)."""
        vae = components["vae"]
        pixels = pixels.to(device=vae.device, dtype=vae.dtype)
        latents = vae.encode(pixels).latent_dist.mode()
        config = vae.config
        return (latents - (config.shift_factor or 0.0)) * config.scaling_factor

    # -- training ----------------------------------------------------------------------------------------------

    def _guidance(self, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        opts = self.options
        if opts.flux_guidance_mode == "random-range":
            draw = torch.rand(batch, generator=generator, device=generator.device).to(device)
            return opts.flux_guidance_min + draw * (opts.flux_guidance_max - opts.flux_guidance_min)
        return torch.full((batch,), float(opts.flux_guidance_value), device=device)

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noisy packed latents, σ, position ids, guidance and the packed ``target`` ε − x₀."""
        b, _, h, w = latents.shape
        device, dtype = latents.device, latents.dtype
        sample = flow_sample(latents, generator, batch_shift(self, (h // 2) * (w // 2)), self.core)
        return {
            "hidden_states": pack_latents(sample.noisy),
            "timestep": sample.sigmas.to(dtype),
            "img_ids": self._ids("image", h, w, device, dtype),
            "guidance": self._guidance(b, generator, device),
            "target": pack_latents(sample.target),
            "sigmas": sample.sigmas,
        }

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call; padded T5 tokens are masked out with ``flux_attention_masked_training``."""
        transformer = components["transformer"]
        embeds = text["prompt_embeds"]
        txt_ids = self._ids("text", embeds.shape[1], 0, embeds.device, embeds.dtype)
        kwargs: dict[str, Any] = {}
        if self.options.flux_attention_masked_training:
            image_tokens = inputs["hidden_states"].shape[1]
            text_mask = text["attention_mask"].bool()
            full = torch.cat([text_mask, text_mask.new_ones(text_mask.shape[0], image_tokens)], dim=1)
            kwargs["joint_attention_kwargs"] = {"attention_mask": full[:, None, None, :]}
        guidance = inputs["guidance"] if model_config(transformer).guidance_embeds else None
        return transformer(
            hidden_states=inputs["hidden_states"], encoder_hidden_states=embeds,
            pooled_projections=text["pooled_prompt_embeds"], timestep=inputs["timestep"], img_ids=inputs["img_ids"],
            txt_ids=txt_ids, guidance=guidance, return_dict=False, **kwargs,
        )[0]

    # -- validation --------------------------------------------------------------------------------------------

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``FluxPipeline`` sharing the live components (the transformer carries the adapter)."""
        from diffusers import FluxPipeline

        return FluxPipeline(**{name: components[name] for name in _LOADERS})

