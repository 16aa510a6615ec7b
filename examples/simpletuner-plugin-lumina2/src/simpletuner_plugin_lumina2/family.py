"""The Lumina 2 family's behaviour, written only against SimpleTuner's public plugin interface.

Recipe (matching ``Lumina2Pipeline``): rectified flow x_t = (1−σ)·x₀ + σ·ε with logit-normal σ and a shift; Lumina's
time runs the other way (t = 1 − σ, 0 is noise) and the transformer predicts x₀ − ε (the pipeline negates it into
the sampler's ε − x₀). Captions are prefixed with the system prompt and encoded by Gemma-2's second-to-last layer,
with their attention mask. Latents are the 16-channel VAE's, shifted and scaled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily
from simpletuner.core.training.flow_matching import flow_sample, flow_shift
from simpletuner_plugin_lumina2 import TINY_FOLDER, Lumina2Options

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
_MLP = ("linear_1", "linear_2", "linear_3")  # the SwiGLU feed-forward of every block

_LOADERS = {
    "transformer": ("diffusers", "Lumina2Transformer2DModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "Gemma2Model"),
    "tokenizer": ("transformers", "AutoTokenizer"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
}
_UNTYPED = {"tokenizer", "scheduler"}


class Lumina2Family(ModelFamily):
    """Lumina-Image 2.0."""

    lora_target_presets = {"attention": _ATTENTION, "attention+mlp": _ATTENTION + _MLP}
    default_lora_preset = "attention"
    quantization_exclusions = ("*norm*", "x_embedder", "time_caption_embed", "norm_out", "rope_embedder")
    bucket_alignment = 16  # 8× VAE downsampling and 2×2 patches
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset(_UNTYPED)
    text_components = ("text_encoder", "tokenizer")
    latent_components = ("vae",)
    trained_component = "transformer"

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else Lumina2Options())

    def check_pretrained(self, pretrained: str) -> None:
        """Build the ``tiny`` flavour's pipeline on first use, then check the folder like any other."""
        if self.flavour is not None and self.flavour.name == "tiny" and pretrained.endswith(TINY_FOLDER[2:]):
            folder = Path(pretrained).expanduser()
            if not (folder / "model_index.json").is_file():
                from simpletuner_plugin_lumina2.tiny import build_tiny_lumina2_pipeline

                build_tiny_lumina2_pipeline(folder)
        super().check_pretrained(pretrained)

    def component_kwargs(self, name: str, dtype: Any) -> dict[str, Any]:
        """The VAE stays in float32 whatever the run's dtype."""
        return super().component_kwargs(name, torch.float32 if name == "vae" else dtype)

    def text_cache_settings(self) -> dict[str, Any]:
        """The token budget and the system prompt shape the embeddings."""
        return {"max_tokens": self.options.lumina2_max_tokens, "system_prompt": self.options.lumina2_system_prompt}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Gemma-2's second-to-last hidden states and the attention mask per prompt, on the CPU."""
        encoder, tokenizer = components["text_encoder"], components["tokenizer"]
        texts = [f"{self.options.lumina2_system_prompt} <Prompt Start> {p}" for p in prompts]
        tokens = tokenizer(texts, padding="max_length", max_length=self.options.lumina2_max_tokens, truncation=True,
                           return_tensors="pt")
        mask = tokens.attention_mask.to(encoder.device)
        hidden = encoder(tokens.input_ids.to(encoder.device), attention_mask=mask, output_hidden_states=True)
        embeds = hidden.hidden_states[-2]
        return [{"prompt_embeds": embeds[i].cpu(), "attention_mask": mask[i].cpu()} for i in range(len(prompts))]

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """(mean of the VAE posterior − shift_factor) × scaling_factor."""
        vae = components["vae"]
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """x_t, Lumina's time 1 − σ and the target x₀ − ε."""
        sample = flow_sample(latents, generator, flow_shift(self.core))
        # Lumina's transformer runs on time 1 − σ and predicts the reversed velocity x₀ − ε
        return {"hidden_states": sample.noisy, "timestep": 1 - sample.sigmas, "target": -sample.target}

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call with the caption mask."""
        return components["transformer"](
            hidden_states=inputs["hidden_states"], timestep=inputs["timestep"],
            encoder_hidden_states=text["prompt_embeds"], encoder_attention_mask=text["attention_mask"],
            return_dict=False,
        )[0]

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``Lumina2Pipeline`` sharing the live components (the transformer carries the adapter)."""
        from diffusers import Lumina2Pipeline

        pipeline = Lumina2Pipeline(**{name: components[name] for name in _LOADERS})
        return _WithSettings(pipeline, self.options)


class _WithSettings:
    """The pipeline, called with this run's token budget and system prompt (so validation matches training)."""

    def __init__(self, pipeline: Any, options: Any) -> None:
        self._pipeline = pipeline
        self._options = options

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def __call__(self, prompt: Any = None, width: int | None = None, height: int | None = None,
                 num_inference_steps: int = 30, guidance_scale: float = 4.0, negative_prompt: Any = None,
                 generator: Any = None, output_type: str = "pil") -> Any:
        return self._pipeline(prompt=prompt, width=width, height=height, num_inference_steps=num_inference_steps,
                              guidance_scale=guidance_scale, negative_prompt=negative_prompt, generator=generator,
                              output_type=output_type, system_prompt=self._options.lumina2_system_prompt,
                              max_sequence_length=self._options.lumina2_max_tokens)
