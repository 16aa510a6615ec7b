"""The models of ``gpu_suite.py``: each family's published transformer size (and a tiny one of the same class for
the CPU dry run), the shapes it trains on, and the pipeline folder the engine loads it from.

A pipeline folder is the family's tiny test pipeline with its transformer replaced by one of the bench's size
(random weights: speed and memory do not depend on the values) and its text encoders widened to that transformer's
text width, so the engine's caches hold embeddings of the real shapes. Nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: FLUX.1-dev's transformer (black-forest-labs/FLUX.1-dev, transformer/config.json): 11.9 B parameters.
FLUX_1_DEV: dict[str, Any] = {
    "patch_size": 1, "in_channels": 64, "out_channels": None, "num_layers": 19, "num_single_layers": 38,
    "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
    "guidance_embeds": True, "axes_dims_rope": (16, 56, 56),
}
#: Sana 1600M 1024 px (Efficient-Large-Model/Sana_1600M_1024px_diffusers): 1.6 B parameters.
SANA_1600M: dict[str, Any] = {
    "in_channels": 32, "out_channels": 32, "num_attention_heads": 70, "attention_head_dim": 32, "num_layers": 20,
    "num_cross_attention_heads": 20, "cross_attention_head_dim": 112, "cross_attention_dim": 2240,
    "caption_channels": 2304, "mlp_ratio": 2.5, "dropout": 0.0, "attention_bias": False, "sample_size": 32,
    "patch_size": 1, "norm_elementwise_affine": False, "norm_eps": 1e-6,
}
#: PixArt-Sigma XL 1024 px (PixArt-alpha/PixArt-Sigma-XL-2-1024-MS): 0.6 B parameters.
PIXART_SIGMA_XL: dict[str, Any] = {
    "num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4, "out_channels": 8, "num_layers": 28,
    "cross_attention_dim": 1152, "caption_channels": 4096, "sample_size": 128, "patch_size": 2,
    "activation_fn": "gelu-approximate", "attention_bias": True, "norm_type": "ada_norm_single",
    "norm_elementwise_affine": False, "norm_eps": 1e-6, "num_embeds_ada_norm": 1000, "interpolation_scale": 2,
    "use_additional_conditions": False,
}


@dataclass(frozen=True)
class Encoder:
    """A text encoder of the tiny pipeline whose width follows the transformer's: ``attributes`` of its config are
    set to the size's ``text_width`` or ``pooled`` (``width``)."""

    folder: str
    class_name: str
    attributes: tuple[str, ...]
    width: str = "text_width"


@dataclass(frozen=True)
class Layout:
    """What a family's pipeline looks like to the bench: transformer class, latent geometry, the option naming its
    caption length, the encoders to widen, and the engine options every row of the family sets."""

    transformer_class: str
    vae_scale: int
    latent_channels: int
    token_option: str
    encoders: tuple[Encoder, ...]
    options: dict[str, Any] = field(default_factory=dict)


LAYOUTS: dict[str, Layout] = {
    "flux": Layout("FluxTransformer2DModel", 8, 16, "flux_t5_max_tokens",
                   (Encoder("text_encoder", "CLIPTextModel", ("hidden_size", "projection_dim"), "pooled"),
                    Encoder("text_encoder_2", "T5EncoderModel", ("d_model",))),
                   {"flux_guidance_value": 3.5}),
    "sana": Layout("SanaTransformer2DModel", 32, 32, "sana_max_tokens",
                   (Encoder("text_encoder", "Gemma2Model", ("hidden_size",)),)),
    "pixart": Layout("PixArtTransformer2DModel", 8, 4, "pixart_max_tokens",
                     (Encoder("text_encoder", "T5EncoderModel", ("d_model",)),)),
}


@dataclass(frozen=True)
class Size:
    """One family at one size: the transformer's constructor arguments and what it trains on (square images of
    ``pixels``, captions of ``tokens`` embeddings of ``text_width``, and Flux's pooled CLIP width)."""

    family: str
    transformer: dict[str, Any]
    pixels: int
    tokens: int
    text_width: int
    pooled: int | None = None

    @property
    def layout(self) -> Layout:
        """The family's layout."""
        return LAYOUTS[self.family]

    def bare_shapes(self) -> dict[str, Any]:
        """The shapes the bare step (``../shared/bench/bare_lora_step.py``'s ``forward``) draws its inputs in."""
        latent = self.pixels // self.layout.vae_scale
        shapes: dict[str, Any] = {"lat": (self.layout.latent_channels, latent, latent),
                                  "txt": (self.tokens, self.text_width)}
        if self.pooled is not None:
            shapes["pooled"] = self.pooled
        return shapes


def full_sizes() -> dict[str, Size]:
    """The published sizes at 1024 px with the families' caption lengths (T5-XXL 512 for Flux, 300 for the
    others)."""
    return {
        "flux": Size("flux", FLUX_1_DEV, 1024, 512, 4096, 768),
        "sana": Size("sana", SANA_1600M, 1024, 300, 2304),
        "pixart": Size("pixart", PIXART_SIGMA_XL, 1024, 300, 4096),
    }


def tiny_sizes() -> dict[str, Size]:
    """The dry run's sizes: each family's tiny test transformer with a few more blocks, at 64–128 px, and text
    widths other than the tiny encoders' (48, pooled 40), so that the encoders are widened as for the real sizes."""
    from simpletuner.model_families.flux.tiny import TINY_SIZES as FLUX
    from simpletuner.model_families.pixart.tiny import TINY_SIZES as PIXART
    from simpletuner.model_families.sana.tiny import TINY_SIZES as SANA

    width, pooled = 48, 40
    flux = {**FLUX["transformer"], "num_layers": 2, "num_single_layers": 2, "joint_attention_dim": width,
            "pooled_projection_dim": pooled}
    return {
        "flux": Size("flux", flux, 64, 16, width, pooled),
        # Sana's DC-AE downsamples 32×: 128 px is a 4×4 latent
        "sana": Size("sana", {**SANA["transformer"], "num_layers": 3, "caption_channels": width}, 128, 16, width),
        "pixart": Size("pixart", {**PIXART["transformer"], "num_layers": 3, "caption_channels": width}, 64, 16,
                       width),
    }


def transformer_class(size: Size) -> Any:
    """The diffusers class of ``size``'s transformer."""
    import diffusers

    return getattr(diffusers, size.layout.transformer_class)


def build_transformer(size: Size, device: str) -> Any:
    """``size``'s transformer with random weights, built directly on ``device`` in the bench's weight precision
    (bf16 on a GPU: no 48 GB float32 copy of Flux on the way; float32 on the CPU, as the bare step trains there)."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return transformer_class(size)(**size.transformer)
    finally:
        torch.set_default_dtype(previous)


def build_pipeline(size: Size, folder: Path, device: str) -> Path:
    """The family's tiny pipeline in ``folder`` with ``size``'s transformer and text encoders of its widths."""
    import torch

    from simpletuner.core.plugins import Registry

    spec = Registry().model_family(size.family)
    assert spec.tiny is not None, f"{size.family} declares no tiny pipeline"
    spec.tiny.build(folder)
    transformer = build_transformer(size, device)
    transformer.save_pretrained(folder / "transformer")
    del transformer
    if device == "cuda":
        torch.cuda.empty_cache()
    for encoder in size.layout.encoders:
        _widen(folder / encoder.folder, encoder, getattr(size, encoder.width))
    _check_index(folder, size)
    return folder


def _widen(folder: Path, encoder: Encoder, width: int) -> None:
    """Rebuild the encoder in ``folder`` with ``width`` (random weights; the tiny encoder's depth and heads)."""
    import torch
    import transformers

    cls = getattr(transformers, encoder.class_name)
    config = cls.config_class.from_pretrained(folder)
    if all(getattr(config, name) == width for name in encoder.attributes):
        return
    for name in encoder.attributes:
        setattr(config, name, width)
    torch.manual_seed(0)
    cls(config).save_pretrained(folder)


def _check_index(folder: Path, size: Size) -> None:
    """The folder's transformer is the class the bench built (a tiny builder that changed class would otherwise
    train something else silently)."""
    index = json.loads((folder / "model_index.json").read_text())
    assert index["transformer"][1] == size.layout.transformer_class, index["transformer"]
