"""The SD3 family's behaviour: three text encoders (T5 optional), rectified flow with SD3's noise-level sampling
and loss weighting schemes, and validation through ``StableDiffusion3Pipeline``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as functional

from simpletuner.core.interfaces import ModelFamily, model_config
from simpletuner.core.training.flow_matching import batch_shift
from simpletuner.model_families.sd3.options import SD3Options

_ATTENTION = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
              "attn.add_v_proj", "attn.to_add_out", "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")
_MLP = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2")

_LOADERS = {
    "transformer": ("diffusers", "SD3Transformer2DModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModelWithProjection"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
    "tokenizer_2": ("transformers", "CLIPTokenizer"),
    "text_encoder_3": ("transformers", "T5EncoderModel"),
    "tokenizer_3": ("transformers", "T5Tokenizer"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
}
_WITHOUT_T5 = tuple(name for name in _LOADERS if name not in ("text_encoder_3", "tokenizer_3"))


def draw_sigmas(batch: int, generator: torch.Generator, scheme: str, options: Any, shift: float) -> torch.Tensor:
    """σ per sample as SD3's recipe draws it: logit-normal, "mode" (uniform bent towards the middle) or uniform for
    the weighting-only schemes; then shifted by ``shift`` (σ' = sσ / (1 + (s − 1)σ)), as the SD3 scheduler does."""
    if scheme == "logit_normal":
        normal = torch.randn(batch, generator=generator, device=generator.device)
        u = torch.sigmoid(options.sd3_logit_mean + options.sd3_logit_std * normal)
    else:
        u = torch.rand(batch, generator=generator, device=generator.device)
        if scheme == "mode":
            u = 1 - u - options.sd3_mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    return shift * u / (1 + (shift - 1) * u)


def loss_weights(scheme: str, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample loss weights of the scheme: 1/σ² (sigma_sqrt), the cosine map's density (cosmap), else ones."""
    if scheme == "sigma_sqrt":
        return sigmas.float() ** -2.0
    if scheme == "cosmap":
        return 2 / (math.pi * (1 - 2 * sigmas.float() + 2 * sigmas.float() ** 2))
    return torch.ones_like(sigmas, dtype=torch.float32)


class SD3Family(ModelFamily):
    """Stable Diffusion 3.5: an MMDiT (joint text-image attention; 3.5 medium adds dual-attention blocks and q/k
    RMS norms) conditioned on CLIP-L and CLIP-G penultimate hidden states joined with T5-XXL's, and their pooled
    projections; rectified flow (x_t = (1−σ)·x₀ + σ·ε, target ε − x₀) with σ drawn and losses weighted by one of SD3's
    schemes, shifted by ``flow_schedule_shift`` (3.0, the scheduler's)."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
        "all-linear": _ATTENTION + _MLP + ("norm1.linear", "norm1_context.linear"),
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("norm", "proj_out", "pos_embed", "time_text_embed", "context_embedder")
    bucket_alignment = 64
    component_classes = _LOADERS
    weightless_components = frozenset({"tokenizer", "tokenizer_2", "tokenizer_3", "scheduler"})
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("JointTransformerBlock",)

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else SD3Options())
        uses_t5 = self.options.sd3_use_t5
        # without T5 its encoder is never loaded; the pipeline folder still needs it only with T5
        self.components = tuple(_LOADERS) if uses_t5 else _WITHOUT_T5
        self.text_components = tuple(n for n in self.components if n.startswith(("text_encoder", "tokenizer")))

    def text_cache_settings(self) -> dict[str, Any]:
        """Whether T5 is used, and its token limit, shape the embeddings."""
        return {"t5": self.options.sd3_use_t5, "t5_max_tokens": self.options.sd3_t5_max_tokens}

    @staticmethod
    def _clip(encoder: Any, tokenizer: Any, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """A CLIP encoder's penultimate hidden states and pooled projection, as the pipeline takes them."""
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(encoder.device)
        output = encoder(ids, output_hidden_states=True)
        return output.hidden_states[-2], output[0]

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Per prompt, on the CPU: the joined sequence ``encode_prompt`` builds (CLIP-L ‖ CLIP-G hidden states padded
        to T5's width, followed by T5's tokens) and the joined pooled projections. Without T5, only the CLIP part is
        kept; :meth:`predict` pads it and appends the zeros the pipeline uses in T5's place."""
        prompts = list(prompts)
        hidden_l, pooled_l = self._clip(components["text_encoder"], components["tokenizer"], prompts)
        hidden_g, pooled_g = self._clip(components["text_encoder_2"], components["tokenizer_2"], prompts)
        clip = torch.cat([hidden_l, hidden_g], dim=-1)
        pooled = torch.cat([pooled_l, pooled_g], dim=-1)
        if self.options.sd3_use_t5:
            t5, tokenizer = components["text_encoder_3"], components["tokenizer_3"]
            ids = tokenizer(prompts, padding="max_length", max_length=self.options.sd3_t5_max_tokens,
                            truncation=True, add_special_tokens=True, return_tensors="pt").input_ids.to(t5.device)
            t5_embeds = t5(ids)[0]
            clip = functional.pad(clip, (0, t5_embeds.shape[-1] - clip.shape[-1]))
            embeds = torch.cat([clip.to(t5_embeds.dtype), t5_embeds], dim=-2)
        else:
            embeds = clip
        return [{"prompt_embeds": embeds[i].cpu(), "pooled_prompt_embeds": pooled[i].cpu()}
                for i in range(len(prompts))]

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The VAE posterior's mean, shifted and scaled as the pipeline expects (``(z − shift) · scale``)."""
        vae = components["vae"]
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
        return (latents - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noise, σ drawn by the weighting scheme, the noisy latents, the timestep (σ · 1000, as the pipeline
        passes it), the target ε − x₀ and the scheme's loss weights."""
        scheme = self.options.sd3_weighting_scheme
        noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=torch.float32)
        noise = noise.to(device=latents.device, dtype=latents.dtype)
        h, w = latents.shape[-2:]
        shift = batch_shift(self, (h // 2) * (w // 2))
        sigmas = draw_sigmas(latents.shape[0], generator, scheme, self.options, shift)
        sigmas = sigmas.to(latents.device)
        s = sigmas.view(-1, 1, 1, 1).to(latents.dtype)
        return {
            "hidden_states": (1 - s) * latents + s * noise,
            "timestep": (sigmas * 1000).to(latents.dtype),
            "target": noise - latents,
            "sigmas": sigmas,
            "weights": loss_weights(scheme, sigmas),
        }

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call; CLIP-only embeddings (trained without T5) get the pipeline's padding and zeros."""
        transformer = components["transformer"]
        embeds = text["prompt_embeds"]
        if not self.options.sd3_use_t5:
            width = model_config(transformer).joint_attention_dim
            padded = functional.pad(embeds, (0, width - embeds.shape[-1]))
            zeros = padded.new_zeros(padded.shape[0], self.options.sd3_t5_max_tokens, width)
            embeds = torch.cat([padded, zeros], dim=-2)
        return transformer(hidden_states=inputs["hidden_states"], timestep=inputs["timestep"],
                           encoder_hidden_states=embeds, pooled_projections=text["pooled_prompt_embeds"],
                           return_dict=False)[0]

    def loss(self, prediction: Any, inputs: Mapping[str, Any]) -> Any:
        """Mean squared error against ε − x₀, each sample weighted by the scheme (float32)."""
        per_sample = ((prediction.float() - inputs["target"].float()) ** 2).flatten(1).mean(dim=1)
        return (inputs["weights"].to(per_sample.device) * per_sample).mean()

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``StableDiffusion3Pipeline`` sharing the live components (no T5 when trained without it)."""
        from diffusers import StableDiffusion3Pipeline

        parts = {name: components.get(name) for name in _LOADERS}
        return StableDiffusion3Pipeline(**parts)

