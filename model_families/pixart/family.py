"""The PixArt family's behaviour: loading, T5 text encoding, SDXL-VAE latents, the DDPM epsilon recipe (with the
learned-sigma half of the output left out of the loss) and validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily, model_config
from simpletuner.core.training.ddpm import ddpm_sample
from simpletuner.model_families.pixart.options import PixArtOptions

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")  # self- and cross-attention of every block
_MLP = ("ff.net.0.proj", "ff.net.2")

#: Where each component lives in a diffusers PixArt-Sigma folder and the class that loads it.
_LOADERS = {
    "transformer": ("simpletuner.model_families.pixart.transformer", "PixArtSigmaTransformer"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "T5EncoderModel"),
    "tokenizer": ("transformers", "AutoTokenizer"),
    "scheduler": ("diffusers", "DPMSolverMultistepScheduler"),
}
_UNTYPED = {"tokenizer", "scheduler"}  # no dtype or device
#: The DDPM noise schedule PixArt-Sigma was trained with (every released PixArt-Sigma checkpoint uses it).
TRAINING_SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
                         prediction_type="epsilon")
_VAE_SCALE = 8  # the SDXL VAE's downsampling, for the size conditions of models that use them


class PixArtFamily(ModelFamily):
    """PixArt-Sigma: DDPM noise (x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, t uniform over 1000 steps), epsilon target; the
    transformer also outputs a learned variance, which the loss ignores; T5 captions of 300 tokens with a mask."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("*norm*", "pos_embed", "adaln_single", "caption_projection", "proj_out",
                               "scale_shift_table")
    bucket_alignment = 32
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset(_UNTYPED)
    text_components = ("text_encoder", "tokenizer")
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("BasicTransformerBlock",)

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else PixArtOptions())
        self._noise_scheduler: Any = None

    @property
    def noise_scheduler(self) -> Any:
        """A ``DDPMScheduler`` with PixArt-Sigma's training schedule (adds the noise, knows ᾱ_t)."""
        if self._noise_scheduler is None:
            from diffusers import DDPMScheduler

            self._noise_scheduler = DDPMScheduler(**TRAINING_SCHEDULE)
        return self._noise_scheduler

    # -- text --------------------------------------------------------------------------------------------------

    def text_cache_settings(self) -> dict[str, Any]:
        """The T5 token limit shapes the embeddings."""
        return {"max_tokens": self.options.pixart_max_tokens}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """T5's padded sequence of ``pixart_max_tokens`` tokens and its attention mask per prompt, on the CPU;
        captions are lower-cased and stripped as ``PixArtSigmaPipeline`` does."""
        encoder, tokenizer = components["text_encoder"], components["tokenizer"]
        texts = [p.lower().strip() for p in prompts]
        tokens = tokenizer(texts, padding="max_length", max_length=self.options.pixart_max_tokens, truncation=True,
                           add_special_tokens=True, return_tensors="pt")
        mask = tokens.attention_mask.to(encoder.device)
        embeds = encoder(tokens.input_ids.to(encoder.device), attention_mask=mask)[0]
        return [{"prompt_embeds": embeds[i].cpu(), "attention_mask": mask[i].cpu()} for i in range(len(texts))]

    # -- latents -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The VAE posterior's mean times its ``scaling_factor`` (the pipeline divides by it to decode)."""
        vae = components["vae"]
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
        return latents * vae.config.scaling_factor

    # -- training ----------------------------------------------------------------------------------------------

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noisy latents at uniform integer timesteps and the ``target`` ε."""
        sample = ddpm_sample(latents, self.noise_scheduler, generator)
        return {"hidden_states": sample.noisy, "timestep": sample.timesteps, "target": sample.noise}

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call with the caption's attention mask; returns the whole output (noise prediction
        and, for learned-sigma models, the variance channels after it)."""
        transformer = components["transformer"]
        latents = inputs["hidden_states"]
        conditions: dict[str, Any] = {"resolution": None, "aspect_ratio": None}
        if model_config(transformer).use_additional_conditions:  # PixArt-Alpha-style size conditioning
            b, _, h, w = latents.shape
            size = torch.tensor([h * _VAE_SCALE, w * _VAE_SCALE], device=latents.device, dtype=latents.dtype)
            conditions = {"resolution": size.expand(b, 2),
                          "aspect_ratio": torch.full((b, 1), h / w, device=latents.device, dtype=latents.dtype)}
        return transformer(
            latents, encoder_hidden_states=text["prompt_embeds"], encoder_attention_mask=text["attention_mask"],
            timestep=inputs["timestep"], added_cond_kwargs=conditions, return_dict=False,
        )[0]

    def loss(self, prediction: Any, inputs: Mapping[str, Any]) -> Any:
        """Mean squared error of the noise prediction against ε in float32; with a learned variance (twice the
        latent channels) its half is left out, as the pipeline ignores it when sampling."""
        import torch.nn.functional as functional

        target = inputs["target"]
        channels = target.shape[1]
        if prediction.shape[1] == 2 * channels:
            prediction = prediction[:, :channels]
        elif prediction.shape[1] != channels:
            raise ValueError(f"PixArt transformer outputs {prediction.shape[1]} channels for {channels}-channel "
                             f"latents; expected {channels} or {2 * channels} (with learned sigma)")
        return functional.mse_loss(prediction.float(), target.float())

    # -- validation --------------------------------------------------------------------------------------------

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``PixArtSigmaPipeline`` sharing the live components, sampling with ``pixart_validation_scheduler``
        (DDIM or DPM-Solver++) configured from the weights' own scheduler."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PixArtSigmaPipeline

        sampler = DDIMScheduler if self.options.pixart_validation_scheduler == "ddim" else DPMSolverMultistepScheduler
        parts = {name: components[name] for name in _LOADERS}
        parts["scheduler"] = sampler.from_config(components["scheduler"].config)
        return PixArtSigmaPipeline(**parts)

