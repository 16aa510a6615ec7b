"""The SDXL family's behaviour: loading (the VAE in an fp16-safe dtype), the two CLIP text encoders, latents, the
DDPM recipe with size and crop conditioning, Min-SNR weighting and validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily
from simpletuner.core.training.ddpm import ddpm_sample, ddpm_target, min_snr_weights, weighted_mse
from simpletuner.model_families.sdxl.options import SDXLOptions

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")  # self- and cross-attention of every transformer block
_MLP = ("ff.net.0.proj", "ff.net.2")
_CONV = ("conv1", "conv2", "conv_shortcut")  # the ResNet blocks' convolutions (LoCon-style)

#: Where each component lives in a diffusers SDXL folder and the class that loads it.
_LOADERS = {
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
    "tokenizer_2": ("transformers", "CLIPTokenizer"),
    "scheduler": ("diffusers", "EulerDiscreteScheduler"),
}
# the input/output convolutions, the timestep and added-condition embeddings and the norms stay in full precision:
# they are small and every activation passes through them
_QUANTIZATION_EXCLUSIONS = ("conv_in", "conv_out", "conv_norm_out", "time_embedding", "add_embedding", "*norm*")
_UNTYPED = {"tokenizer", "tokenizer_2", "scheduler"}  # no dtype or device
#: The DDPM schedule SDXL was trained with (every SDXL 1.0 checkpoint's scheduler config).
TRAINING_SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012)
_VAE_DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}
_VAE_SCALE = 8  # pixels per latent cell


class SDXLFamily(ModelFamily):
    """Stable Diffusion XL: DDPM noise (x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, t uniform over 1000 steps, scaled-linear
    betas), epsilon or v-prediction target, optional Min-SNR-γ weights and offset noise; text from two CLIP
    encoders (penultimate hidden states concatenated, the second's pooled projection) and micro-conditioning on each
    image's original size, crop and target size."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
        "attention+mlp+conv": _ATTENTION + _MLP + _CONV,
    }
    default_lora_preset = "attention"
    bucket_alignment = 64
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset(_UNTYPED)
    text_components = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    latent_components = ("vae",)
    trained_component = "unet"
    # FSDP2 shards each ResNet block and each transformer block (the UNet's repeated units) on its own
    block_classes = ("BasicTransformerBlock", "ResnetBlock2D")
    uses_image_geometry = True

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        options = options if options is not None else SDXLOptions()
        if options.rescale_betas_zero_snr and options.prediction_type != "v_prediction":
            raise ValueError("rescale_betas_zero_snr needs prediction_type v_prediction (at zero terminal SNR an "
                             "epsilon prediction cannot recover the image); set prediction_type: v_prediction")
        super().__init__(spec, flavour, options)
        self._noise_scheduler: Any = None
        self._alphas_cumprod: dict[Any, torch.Tensor] = {}

    @property
    def noise_scheduler(self) -> Any:
        """A ``DDPMScheduler`` with SDXL's training schedule, the configured prediction type and, when asked, the
        zero-terminal-SNR rescaling."""
        if self._noise_scheduler is None:
            from diffusers import DDPMScheduler

            self._noise_scheduler = DDPMScheduler(**TRAINING_SCHEDULE, prediction_type=self.options.prediction_type,
                                                  rescale_betas_zero_snr=self.options.rescale_betas_zero_snr)
        return self._noise_scheduler

    def _alpha_bars(self, device: Any) -> torch.Tensor:
        """ᾱ of every timestep on ``device`` (copied there once, not every step)."""
        if device not in self._alphas_cumprod:
            self._alphas_cumprod[device] = self.noise_scheduler.alphas_cumprod.to(device)
        return self._alphas_cumprod[device]

    @property
    def quantization_exclusions(self) -> tuple[str, ...]:  # type: ignore[override]
        """Modules kept out of quantisation; with a LoRA preset on the ResNet convolutions those stay unquantised
        too, as PEFT's LoRA cannot wrap a quantised convolution."""
        core = self.core
        if core is None or core.model_type != "lora" or core.lora_type != "standard":
            return _QUANTIZATION_EXCLUSIONS
        targets = self.lora_targets(core.lora_target_preset)
        return _QUANTIZATION_EXCLUSIONS + tuple(f"*.{name}" for name in _CONV if name in targets)

    # -- loading -----------------------------------------------------------------------------------------------

    def component_kwargs(self, name: str, dtype: Any) -> dict[str, Any]:
        """The VAE in ``vae_dtype`` when set; everything else as the default does."""
        if name == "vae" and self.options.vae_dtype in _VAE_DTYPES:
            return {"torch_dtype": _VAE_DTYPES[self.options.vae_dtype]}
        return super().component_kwargs(name, dtype)

    def load_components(self, pretrained: str, *, dtype: Any, device: Any,
                        names: Sequence[str] | None = None) -> dict[str, Any]:
        """The default loading, except the VAE: also from a folder or repository holding only a VAE (such as
        ``madebyollin/sdxl-vae-fp16-fix``), and with ``vae_dtype: default`` upcast to float32 under float16 when its
        config says it overflows there (``force_upcast``), as the pipeline does before decoding."""
        wanted = list(names or self.components)
        others = [name for name in wanted if name != "vae"]
        loaded = super().load_components(pretrained, dtype=dtype, device=device, names=others) if others else {}
        if "vae" in wanted:
            loaded["vae"] = self._load_vae(pretrained, dtype, device)
        return {name: loaded[name] for name in wanted}

    def _load_vae(self, source: str, dtype: Any, device: Any) -> Any:
        from diffusers import AutoencoderKL

        kwargs = self.component_kwargs("vae", dtype)
        folder = Path(source).expanduser()
        subfolders = ["vae"] if (folder / "vae").is_dir() else (["vae", None] if not folder.is_dir() else [None])
        problem: Exception | None = None
        for subfolder in subfolders:
            try:
                vae = AutoencoderKL.from_pretrained(source, subfolder=subfolder, **kwargs)
                break
            except (OSError, ValueError) as exc:
                problem = exc
        else:
            raise ValueError(f"cannot load the {self.spec.title} vae from {source!r} ({type(problem).__name__}: "
                             f"{problem}); give an SDXL diffusers folder or repository, or a VAE's") from None
        if self.options.vae_dtype == "default" and vae.dtype == torch.float16 and vae.config.force_upcast:
            vae = vae.to(torch.float32)
        return vae.to(device).eval().requires_grad_(False)

    # -- text --------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Per prompt, as ``StableDiffusionXLPipeline.encode_prompt``: both CLIP encoders' penultimate hidden states
        (77 tokens each) concatenated, and the second encoder's pooled projection; on the CPU."""
        prompts = list(prompts)
        hidden = []
        pooled = None
        for encoder_name, tokenizer_name in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
            encoder, tokenizer = components[encoder_name], components[tokenizer_name]
            ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(encoder.device)
            output = encoder(ids, output_hidden_states=True)
            hidden.append(output.hidden_states[-2])
            if encoder_name == "text_encoder_2":
                pooled = output.text_embeds
        embeds = torch.cat(hidden, dim=-1)
        assert pooled is not None
        return [{"prompt_embeds": embeds[i].cpu(), "pooled_prompt_embeds": pooled[i].cpu()}
                for i in range(len(prompts))]

    # -- latents -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The VAE posterior's mean times its ``scaling_factor`` (the pipeline divides by it to decode)."""
        vae = components["vae"]
        latents = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
        return latents * vae.config.scaling_factor

    # -- training ----------------------------------------------------------------------------------------------

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any,
                        geometry: Any = None) -> dict[str, Any]:
        """Noisy latents at uniform integer timesteps, the ``target`` (ε or v) and the size/crop conditions
        ``time_ids`` from ``geometry`` (original height and width, crop top and left, target height and width per
        sample; without it, the latents' own size uncropped, as the pipeline conditions by default)."""
        opts = self.options
        offset = opts.noise_offset if opts.offset_noise else 0.0
        sample = ddpm_sample(latents, self.noise_scheduler, generator, noise_offset=offset,
                             offset_probability=opts.noise_offset_probability)
        if geometry is None:
            b, _, h, w = latents.shape
            size = (h * _VAE_SCALE, w * _VAE_SCALE)
            geometry = torch.tensor([[*size, 0, 0, *size]], device=latents.device).expand(b, 6)
        return {
            "sample": sample.noisy,
            "timestep": sample.timesteps,
            "time_ids": geometry.to(device=latents.device, dtype=latents.dtype),
            "target": ddpm_target(self.noise_scheduler, latents, sample.noise, sample.timesteps),
        }

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One UNet call with the caption's hidden states and the added conditions (pooled text, time ids)."""
        unet = components["unet"]
        conditions = {"text_embeds": text["pooled_prompt_embeds"], "time_ids": inputs["time_ids"]}
        return unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=text["prompt_embeds"],
                    added_cond_kwargs=conditions, return_dict=False)[0]

    def loss(self, prediction: Any, inputs: Mapping[str, Any]) -> Any:
        """Mean squared error against the target in float32, weighted per sample by Min-SNR-γ with ``snr_gamma``."""
        gamma = self.options.snr_gamma
        weights = None
        if gamma:
            timesteps = inputs["timestep"]
            weights = min_snr_weights(self._alpha_bars(timesteps.device), timesteps, gamma,
                                      self.options.prediction_type)
        return weighted_mse(prediction, inputs["target"], weights)

    # -- validation --------------------------------------------------------------------------------------------

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``StableDiffusionXLPipeline`` sharing the live components; its scheduler (the weights' own class)
        samples with the trained prediction type, and with trailing timesteps on a zero-terminal-SNR schedule."""
        from diffusers import StableDiffusionXLPipeline

        parts = {name: components[name] for name in _LOADERS}
        scheduler = components["scheduler"]
        overrides: dict[str, Any] = {"prediction_type": self.options.prediction_type}
        if self.options.rescale_betas_zero_snr:
            overrides.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
        parts["scheduler"] = type(scheduler).from_config(scheduler.config, **overrides)
        return StableDiffusionXLPipeline(**parts)
