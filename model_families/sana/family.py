"""The Sana family's behaviour: loading, Gemma-2 text encoding with the complex human instruction, DC-AE latents,
the flow-matching recipe and validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily, model_config
from simpletuner.core.training.flow_matching import flow_sample, flow_shift
from simpletuner.model_families.sana.options import SanaOptions

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")  # both the linear self-attention and the cross-attention
_MLP = ("ff.conv_inverted", "ff.conv_point")  # the 1×1 convolutions of the GLU-MBConv feed-forward

#: Where each component lives in a diffusers Sana folder and the class that loads it.
_LOADERS = {
    "transformer": ("diffusers", "SanaTransformer2DModel"),
    "vae": ("diffusers", "AutoencoderDC"),
    "text_encoder": ("transformers", "Gemma2Model"),
    "tokenizer": ("transformers", "AutoTokenizer"),
    "scheduler": ("diffusers", "DPMSolverMultistepScheduler"),
}
_UNTYPED = {"tokenizer", "scheduler"}  # no dtype or device
_WEIGHTED = {"transformer", "vae", "text_encoder"}  # the components a weights variant applies to
#: Sana's flow-matching time runs over the scheduler's 1000 training steps: the transformer sees σ · 1000.
_TIMESTEPS = 1000


@cache
def complex_human_instruction() -> str:
    """The instruction diffusers' ``SanaPipeline`` prefixes to prompts by default (its lines joined by newlines).

    Read from the pipeline itself, so training embeds captions exactly like validation and inference do."""
    import inspect

    from diffusers import SanaPipeline

    lines = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default
    return "\n".join(lines)


class SanaFamily(ModelFamily):
    """Sana: rectified flow (x_t = (1−σ)·x₀ + σ·ε, target ε − x₀) with logit-normal σ and a shift, 32-channel DC-AE
    latents, Gemma-2 captions of 300 tokens with their attention mask, prefixed by the complex human instruction."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("*norm*", "patch_embed", "caption_projection", "time_embed", "proj_out",
                               "scale_shift_table")
    bucket_alignment = 32
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset(_UNTYPED)
    text_components = ("text_encoder", "tokenizer")
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("SanaTransformerBlock",)

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else SanaOptions())

    # -- loading -----------------------------------------------------------------------------------------------

    def component_kwargs(self, name: str, dtype: Any) -> dict[str, Any]:
        """The DC-AE is kept in float32 whatever the run's dtype (it loses detail in half precision); a weights
        variant (``sana_weights_variant``) applies to the components that have weights."""
        kwargs = super().component_kwargs(name, torch.float32 if name == "vae" else dtype)
        if name in _WEIGHTED and self.options.sana_weights_variant:
            kwargs["variant"] = self.options.sana_weights_variant
        return kwargs

    # -- text --------------------------------------------------------------------------------------------------

    def text_cache_settings(self) -> dict[str, Any]:
        """The token limit and the instruction prefix shape the embeddings."""
        prefix = complex_human_instruction() if self.options.sana_use_complex_human_instruction else ""
        return {"max_tokens": self.options.sana_max_tokens, "instruction": prefix}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Gemma-2's last hidden states and attention mask of ``sana_max_tokens`` tokens per prompt, on the CPU.

        Like ``SanaPipeline``: captions are lower-cased and stripped; a non-empty caption is prefixed with the
        complex human instruction, tokenized to the instruction's length plus the token budget, and the first
        token plus the last ``sana_max_tokens − 1`` positions are kept. An empty caption is encoded without the
        prefix, as the pipeline encodes its unconditional prompt."""
        encoder, tokenizer = components["text_encoder"], components["tokenizer"]
        tokenizer.padding_side = "right"
        texts = [p.lower().strip() for p in prompts]
        prefix = complex_human_instruction() if self.options.sana_use_complex_human_instruction else ""
        results: list[dict[str, Any] | None] = [None] * len(texts)
        groups = {
            True: [i for i, t in enumerate(texts) if prefix and t],
            False: [i for i, t in enumerate(texts) if not (prefix and t)],
        }
        budget = self.options.sana_max_tokens
        keep = [0, *range(-budget + 1, 0)]
        for prefixed, indices in groups.items():
            if not indices:
                continue
            batch = [prefix + texts[i] if prefixed else texts[i] for i in indices]
            length = len(tokenizer.encode(prefix)) + budget - 2 if prefixed else budget
            tokens = tokenizer(batch, padding="max_length", max_length=length, truncation=True,
                               add_special_tokens=True, return_tensors="pt")
            mask = tokens.attention_mask.to(encoder.device)
            embeds = encoder(tokens.input_ids.to(encoder.device), attention_mask=mask)[0]
            embeds, mask = embeds[:, keep], mask[:, keep]
            for row, index in enumerate(indices):
                results[index] = {"prompt_embeds": embeds[row].cpu(), "attention_mask": mask[row].cpu()}
        return [r for r in results if r is not None]

    # -- latents -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The DC-AE latent (32 channels, 32× smaller) times the autoencoder's ``scaling_factor``."""
        vae = components["vae"]
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent
        return latents * vae.config.scaling_factor

    # -- training ----------------------------------------------------------------------------------------------

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noisy latents x_t = (1−σ)·x₀ + σ·ε, the timestep σ·1000 and the ``target`` ε − x₀."""
        sample = flow_sample(latents, generator, flow_shift(self.core), self.core)
        return {
            "hidden_states": sample.noisy,
            "timestep": sample.sigmas * _TIMESTEPS,
            "target": sample.target,
            "sigmas": sample.sigmas,
        }

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call with the caption's attention mask (padded Gemma tokens are not attended)."""
        transformer = components["transformer"]
        config = model_config(transformer)
        if config.guidance_embeds:
            raise ValueError("this Sana transformer expects a guidance input (a Sana-Sprint model); only the "
                             "Sana 1.0 and 1.5 text-to-image models are supported")
        return transformer(
            inputs["hidden_states"], encoder_hidden_states=text["prompt_embeds"],
            encoder_attention_mask=text["attention_mask"], timestep=inputs["timestep"] * config.timestep_scale,
            return_dict=False,
        )[0]

    # -- validation --------------------------------------------------------------------------------------------

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``SanaPipeline`` sharing the live components (the transformer carries the adapter)."""
        from diffusers import SanaPipeline

        return SanaPipeline(**{name: components[name] for name in _LOADERS})

