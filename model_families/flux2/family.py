"""The Flux.2 family's behaviour: text as the flavour's stock pipeline encodes it (three hidden layers of Qwen3 for
[klein], of Mistral Small 3.1 for [dev], stacked per token), the Flux.2 VAE's patchified, batch-normalised latents,
rectified flow with [dev]'s guidance input, and validation through the stock pipeline."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily, model_config
from simpletuner.core.training.flow_matching import batch_shift, flow_sample
from simpletuner.model_families.flux2.options import Flux2Options

#: The hidden layers of the text encoder whose states are joined, as the [klein] pipeline takes them.
KLEIN_TEXT_LAYERS = (9, 18, 27)
#: The hidden layers of Mistral Small 3.1 that ``Flux2Pipeline`` ([dev]) joins.
DEV_TEXT_LAYERS = (10, 20, 30)
#: The flavour whose transformer has a guidance input and whose text encoder is Mistral Small 3.1.
DEV = "dev"

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
              "to_qkv_mlp_proj")
_MLP = ("ff.linear_in", "ff.linear_out", "ff_context.linear_in", "ff_context.linear_out")

_KLEIN_LOADERS = {
    "transformer": ("diffusers", "Flux2Transformer2DModel"),
    "vae": ("diffusers", "AutoencoderKLFlux2"),
    "text_encoder": ("transformers", "Qwen3ForCausalLM"),
    "tokenizer": ("transformers", "AutoTokenizer"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
}
#: [dev]'s repository stores a PixtralProcessor as its tokenizer; only its tokenizer is needed for text (the
#: processor's chat template renders text-only conversations the same way), and loading the tokenizer alone avoids
#: the processor's image dependencies (torchvision).
_DEV_LOADERS = {**_KLEIN_LOADERS, "text_encoder": ("transformers", "Mistral3ForConditionalGeneration")}


def patchify(latents: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` → ``B×4C×H/2×W/2``: each 2×2 patch's values become channels, as the Flux.2 pipelines do."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)


def position_ids(height: int, width: int, device: torch.device) -> torch.Tensor:
    """The (time, row, column, layer) coordinates of a ``height×width`` latent's tokens."""
    rows = torch.arange(height, device=device)[:, None].expand(height, width).reshape(-1)
    columns = torch.arange(width, device=device)[None, :].expand(height, width).reshape(-1)
    zeros = torch.zeros_like(rows)
    return torch.stack([zeros, rows, columns, zeros], dim=-1)


def dev_conversation(prompt: str) -> list[dict[str, Any]]:
    """The chat ``Flux2Pipeline`` encodes for a caption: its system message, then the caption as the user's turn
    (``[IMG]`` markers removed, as the pipeline does)."""
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

    return [{"role": "system", "content": [{"type": "text", "text": SYSTEM_MESSAGE}]},
            {"role": "user", "content": [{"type": "text", "text": prompt.replace("[IMG]", "")}]}]


class Flux2Family(ModelFamily):
    """FLUX.2: a Flux.2 transformer (double- and single-stream blocks with shared modulation) over the Flux.2 VAE's
    32-channel latents, patchified 2×2 and normalised by the VAE's batch-norm statistics, conditioned on three
    stacked hidden layers of the text encoder (Qwen3 for [klein], Mistral Small 3.1 for [dev]); rectified flow
    (x_t = (1−σ)·x₀ + σ·ε, target ε − x₀), with a training guidance value for [dev]'s guidance input."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("norm", "proj_out", "x_embedder", "context_embedder", "time_guidance_embed",
                               "modulation")
    bucket_alignment = 64
    components = tuple(_KLEIN_LOADERS)
    component_classes = _KLEIN_LOADERS
    weightless_components = frozenset({"tokenizer", "scheduler"})
    text_components = ("text_encoder", "tokenizer")
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("Flux2TransformerBlock", "Flux2SingleTransformerBlock")

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else Flux2Options())
        self.is_dev = flavour is not None and flavour.name == DEV
        self.component_classes = _DEV_LOADERS if self.is_dev else _KLEIN_LOADERS
        opts = self.options
        if opts.flux2_guidance_mode == "random-range" and opts.flux2_guidance_min > opts.flux2_guidance_max:
            raise ValueError(f"flux2_guidance_min ({opts.flux2_guidance_min}) is above flux2_guidance_max "
                             f"({opts.flux2_guidance_max}); swap them")
        self._ids: dict[tuple[Any, ...], torch.Tensor] = {}

    def check_pretrained(self, pretrained: str) -> None:
        """Besides the components, a local folder's text encoder must be the flavour's: a [dev] folder (Mistral 3)
        trained as [klein] (Qwen3) or the reverse would encode captions with the wrong chat template and layers."""
        super().check_pretrained(pretrained)
        index = Path(pretrained).expanduser() / "model_index.json"
        if not index.is_file():
            return
        encoder = json.loads(index.read_text()).get("text_encoder", [None, None])[1]
        expected = self.component_classes["text_encoder"][1]
        if encoder and encoder != expected:
            flavour = self.flavour.name if self.flavour else "?"
            fix = "model_flavour dev" if encoder.startswith("Mistral3") else "model_flavour klein-4b or klein-9b"
            raise ValueError(f"pretrained_model_name_or_path {pretrained!r} has a {encoder} text encoder, but flavour "
                             f"{flavour!r} uses {expected}; set {fix}")

    def text_cache_settings(self) -> dict[str, Any]:
        """The token limit shapes the embeddings."""
        return {"max_tokens": self.options.flux2_max_tokens}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Per prompt, on the CPU: the caption in the flavour's chat template padded to the token limit, and three
        hidden layers of the encoder joined per token, as the flavour's pipeline builds them ([klein]: the user's
        turn and an empty thinking block, layers 9, 18, 27; [dev]: the pipeline's system message and the user's turn,
        layers 10, 20, 30)."""
        encoder, tokenizer = components["text_encoder"], components["tokenizer"]
        limit = self.options.flux2_max_tokens
        if self.is_dev:
            inputs = tokenizer.apply_chat_template([dev_conversation(p) for p in prompts], add_generation_prompt=False,
                                                   tokenize=True, return_dict=True, return_tensors="pt",
                                                   padding="max_length", truncation=True, max_length=limit)
            layers = DEV_TEXT_LAYERS
        else:
            texts = [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                   add_generation_prompt=True, enable_thinking=False)
                     for prompt in prompts]
            inputs = tokenizer(texts, return_tensors="pt", padding="max_length", truncation=True, max_length=limit)
            layers = KLEIN_TEXT_LAYERS
        output = encoder(input_ids=inputs["input_ids"].to(encoder.device),
                         attention_mask=inputs["attention_mask"].to(encoder.device), output_hidden_states=True,
                         use_cache=False)
        stacked = torch.stack([output.hidden_states[k] for k in layers], dim=1)
        b, count, length, width = stacked.shape
        embeds = stacked.permute(0, 2, 1, 3).reshape(b, length, count * width)
        return [{"prompt_embeds": embeds[i].cpu()} for i in range(b)]

    @torch.no_grad()
    def encode_latents(self, components: Mapping[str, Any], pixels: Any) -> Any:
        """The VAE posterior's mean, patchified and normalised by the VAE's batch-norm running statistics."""
        vae = components["vae"]
        latents = patchify(vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode())
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(latents.device,
                                                                                               latents.dtype)
        return (latents - mean) / std

    def _positions(self, kind: str, rows: int, columns: int, batch: int, device: torch.device) -> torch.Tensor:
        key = (kind, rows, columns, batch, device)
        if key not in self._ids:
            if kind == "image":
                ids = position_ids(rows, columns, device)
            else:  # text: (0, 0, 0, token index)
                ids = torch.zeros(rows, 4, dtype=torch.long, device=device)
                ids[:, 3] = torch.arange(rows, device=device)
            self._ids[key] = ids[None].expand(batch, -1, -1)
        return self._ids[key]

    def _guidance(self, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """[dev]'s training guidance per sample: the constant, or a draw from the generator in the range."""
        opts = self.options
        if opts.flux2_guidance_mode == "random-range":
            draw = torch.rand(batch, generator=generator, device=generator.device).to(device)
            return opts.flux2_guidance_min + draw * (opts.flux2_guidance_max - opts.flux2_guidance_min)
        return torch.full((batch,), float(opts.flux2_guidance_value), device=device)

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noisy latents as tokens (one per latent cell), σ as the timestep, their coordinates, the target and, for
        [dev], the guidance value (drawn after noise and σ)."""
        b, c, h, w = latents.shape
        sample = flow_sample(latents, generator, batch_shift(self, h * w), self.core)

        def tokens(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, c, h * w).permute(0, 2, 1)

        inputs = {"hidden_states": tokens(sample.noisy), "timestep": sample.sigmas.to(latents.dtype),
                  "img_ids": self._positions("image", h, w, b, latents.device), "target": tokens(sample.target),
                  "sigmas": sample.sigmas}
        if self.is_dev:
            inputs["guidance"] = self._guidance(b, generator, latents.device)
        return inputs

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call; the guidance value goes in only where the transformer has a guidance input."""
        transformer = components["transformer"]
        embeds = text["prompt_embeds"]
        txt_ids = self._positions("text", embeds.shape[1], 0, embeds.shape[0], embeds.device)
        guidance = inputs.get("guidance") if model_config(transformer).guidance_embeds else None
        return transformer(
            hidden_states=inputs["hidden_states"], timestep=inputs["timestep"], guidance=guidance,
            encoder_hidden_states=embeds, txt_ids=txt_ids, img_ids=inputs["img_ids"], return_dict=False,
        )[0]

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """The flavour's stock pipeline sharing the live components (the transformer carries the adapter):
        ``Flux2Pipeline`` for [dev], ``Flux2KleinPipeline`` (step-distilled) for [klein]."""
        from diffusers import Flux2KleinPipeline, Flux2Pipeline

        parts = {name: components[name] for name in self.component_classes}
        return Flux2Pipeline(**parts) if self.is_dev else Flux2KleinPipeline(**parts, is_distilled=True)
