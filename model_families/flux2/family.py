"""The Flux.2 family's behaviour: Qwen3 text as ``Flux2KleinPipeline`` encodes it (three hidden layers stacked),
the Flux.2 VAE's patchified, batch-normalised latents, rectified flow and validation through the stock pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from simpletuner.core.interfaces import ModelFamily
from simpletuner.core.training.flow_matching import flow_sample, flow_shift
from simpletuner.model_families.flux2.options import Flux2Options

#: The hidden layers of the text encoder whose states are joined, as the [klein] pipeline takes them.
KLEIN_TEXT_LAYERS = (9, 18, 27)

_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
              "to_qkv_mlp_proj")
_MLP = ("ff.linear_in", "ff.linear_out", "ff_context.linear_in", "ff_context.linear_out")

_LOADERS = {
    "transformer": ("diffusers", "Flux2Transformer2DModel"),
    "vae": ("diffusers", "AutoencoderKLFlux2"),
    "text_encoder": ("transformers", "Qwen3ForCausalLM"),
    "tokenizer": ("transformers", "AutoTokenizer"),
    "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
}


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


class Flux2Family(ModelFamily):
    """FLUX.2 [klein]: a Flux.2 transformer (double- and single-stream blocks with shared modulation) over the Flux.2
    VAE's 32-channel latents, patchified 2×2 and normalised by the VAE's batch-norm statistics, conditioned on three
    stacked hidden layers of a Qwen3 text encoder; rectified flow (x_t = (1−σ)·x₀ + σ·ε, target ε − x₀)."""

    lora_target_presets = {
        "attention": _ATTENTION,
        "attention+mlp": _ATTENTION + _MLP,
    }
    default_lora_preset = "attention"
    quantization_exclusions = ("norm", "proj_out", "x_embedder", "context_embedder", "time_guidance_embed",
                               "modulation")
    bucket_alignment = 64
    components = tuple(_LOADERS)
    component_classes = _LOADERS
    weightless_components = frozenset({"tokenizer", "scheduler"})
    text_components = ("text_encoder", "tokenizer")
    latent_components = ("vae",)
    trained_component = "transformer"
    block_classes = ("Flux2TransformerBlock", "Flux2SingleTransformerBlock")

    def __init__(self, spec: Any, flavour: Any, options: Any) -> None:
        super().__init__(spec, flavour, options if options is not None else Flux2Options())
        self._ids: dict[tuple[Any, ...], torch.Tensor] = {}

    def text_cache_settings(self) -> dict[str, Any]:
        """The token limit shapes the embeddings."""
        return {"max_tokens": self.options.flux2_max_tokens}

    @torch.no_grad()
    def encode_text(self, components: Mapping[str, Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Per prompt, on the CPU: the chat-formatted caption (no thinking block) padded to the token limit, and
        hidden layers 9, 18 and 27 of the encoder joined per token, as the pipeline builds them."""
        encoder, tokenizer = components["text_encoder"], components["tokenizer"]
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                               add_generation_prompt=True, enable_thinking=False)
                 for prompt in prompts]
        inputs = tokenizer(texts, return_tensors="pt", padding="max_length", truncation=True,
                           max_length=self.options.flux2_max_tokens)
        output = encoder(input_ids=inputs.input_ids.to(encoder.device),
                         attention_mask=inputs.attention_mask.to(encoder.device), output_hidden_states=True,
                         use_cache=False)
        stacked = torch.stack([output.hidden_states[k] for k in KLEIN_TEXT_LAYERS], dim=1)
        b, layers, length, width = stacked.shape
        embeds = stacked.permute(0, 2, 1, 3).reshape(b, length, layers * width)
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

    def training_inputs(self, latents: Any, text: Mapping[str, Any], generator: Any) -> dict[str, Any]:
        """Noisy latents as tokens (one per latent cell), σ as the timestep, their coordinates and the target."""
        b, c, h, w = latents.shape
        sample = flow_sample(latents, generator, flow_shift(self.core))

        def tokens(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, c, h * w).permute(0, 2, 1)

        return {"hidden_states": tokens(sample.noisy), "timestep": sample.sigmas.to(latents.dtype),
                "img_ids": self._positions("image", h, w, b, latents.device), "target": tokens(sample.target),
                "sigmas": sample.sigmas}

    def predict(self, components: Mapping[str, Any], inputs: Mapping[str, Any], text: Mapping[str, Any]) -> Any:
        """One transformer call (the [klein] models take no guidance input)."""
        embeds = text["prompt_embeds"]
        txt_ids = self._positions("text", embeds.shape[1], 0, embeds.shape[0], embeds.device)
        return components["transformer"](
            hidden_states=inputs["hidden_states"], timestep=inputs["timestep"], guidance=None,
            encoder_hidden_states=embeds, txt_ids=txt_ids, img_ids=inputs["img_ids"], return_dict=False,
        )[0]

    def validation_pipeline(self, components: Mapping[str, Any]) -> Any:
        """A ``Flux2KleinPipeline`` sharing the live components (the transformer carries the adapter)."""
        from diffusers import Flux2KleinPipeline

        return Flux2KleinPipeline(**{name: components[name] for name in _LOADERS}, is_distilled=True)
