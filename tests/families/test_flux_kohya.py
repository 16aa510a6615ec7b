"""The final Flux LoRA saved in kohya's layout (``lora_save_formats: ["kohya"]``): diffusers' own kohya reader gives
the image the diffusers-format file gives; fused layers hold exactly the separate updates; other families refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simpletuner.core.config.checks import check_config
from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.config.schema import Layer
from simpletuner.core.plugins import Registry

from .helpers import assert_kohya_reads_back, with_random_lora

# Every Flux layer kohya's layout names except a single block's fused linear1, whose split diffusers' reader fixes
# at FLUX.1's widths (3072, 12288) — the tiny model is narrower; test_fused_layers_hold_the_separate_updates covers it.
_BLOCK_TARGETS = (
    r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2)|norm1\.linear|norm1_context\.linear)"
    r"|single_transformer_blocks\.\d+\.(proj_out|norm\.linear)"
)
# diffusers' kohya reader names the layers outside the blocks without the ``transformer.`` prefix, so
# load_lora_weights drops them: these are compared through the reader itself.
_ALL_TARGETS = _BLOCK_TARGETS + (
    r"|proj_out|norm_out\.linear|x_embedder|context_embedder"
    r"|time_text_embed\.(timestep_embedder|guidance_embedder|text_embedder)\.linear_[12]"
)


def _save(transformer: Any, folder: Path, registry: Registry) -> tuple[Path, Path]:
    from simpletuner.core.training.outputs import LORA_FILE, save_lora, save_lora_layouts

    core = CoreOptions(lora_save_formats=["kohya"])
    lora = save_lora(folder / LORA_FILE, transformer, "transformer", core, {"step": 1})
    (kohya,) = save_lora_layouts(folder, transformer, core, registry.model_family("flux").lora_layouts, {"step": 1})
    return lora, kohya


@pytest.mark.timeout(300)
def test_diffusers_reads_the_kohya_file_as_the_same_lora(flux_folder: Path, registry: Registry,
                                                         tmp_path: Path) -> None:
    import torch
    from diffusers import FluxPipeline
    from safetensors import safe_open

    pipe = FluxPipeline.from_pretrained(str(flux_folder))
    with_random_lora(pipe.transformer, _BLOCK_TARGETS, rank=4, alpha=8.0)  # scale 2: alpha must survive
    lora, kohya = _save(pipe.transformer, tmp_path, registry)
    assert kohya.name == "pytorch_lora_weights_kohya.safetensors" and kohya.parent == lora.parent
    with safe_open(str(kohya), framework="pt") as handle:
        keys = set(handle.keys())
    assert all(k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha"))
               for k in keys)
    assert {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", "lora_unet_double_blocks_0_txt_attn_qkv.alpha",
            "lora_unet_single_blocks_0_linear2.lora_up.weight", "lora_unet_double_blocks_0_txt_mod_lin.alpha"} <= keys

    kwargs = dict(prompt="a red circle", height=64, width=64, num_inference_steps=2, guidance_scale=3.5,
                  max_sequence_length=16, output_type="pt")

    def image(weights: Path | None) -> Any:
        fresh = FluxPipeline.from_pretrained(str(flux_folder))
        if weights is not None:
            fresh.load_lora_weights(str(weights.parent), weight_name=weights.name)
        return fresh(generator=torch.Generator().manual_seed(0), **kwargs).images

    base, from_diffusers, from_kohya = image(None), image(lora), image(kohya)
    assert (from_diffusers - base).abs().max() > 1e-2  # the LoRA changes the image, so the comparison means something
    torch.testing.assert_close(from_kohya, from_diffusers, atol=2e-5, rtol=1e-4)


@pytest.mark.timeout(120)
def test_diffusers_kohya_reader_gives_back_every_layer(flux_folder: Path, registry: Registry, tmp_path: Path) -> None:
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import load_file

    transformer = FluxTransformer2DModel.from_pretrained(str(flux_folder), subfolder="transformer")
    with_random_lora(transformer, _ALL_TARGETS, rank=4, alpha=2.0)
    lora, kohya = _save(transformer, tmp_path, registry)
    assert {"lora_unet_final_layer_adaLN_modulation_1.alpha", "lora_unet_final_layer_linear.lora_up.weight",
            "lora_unet_guidance_in_in_layer.lora_down.weight", "lora_unet_img_in.alpha", "lora_unet_txt_in.alpha",
            "lora_unet_time_in_out_layer.alpha", "lora_unet_vector_in_in_layer.alpha"} <= set(load_file(str(kohya)))
    assert_kohya_reads_back(lora, kohya, layers=26)


@pytest.mark.timeout(120)
def test_fused_layers_hold_the_separate_updates(flux_folder: Path, registry: Registry, tmp_path: Path) -> None:
    import torch
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import load_file

    transformer = FluxTransformer2DModel.from_pretrained(str(flux_folder), subfolder="transformer")
    # single blocks' to_q/to_k/to_v without proj_mlp: linear1's MLP part must be a zero block of the right width
    with_random_lora(transformer, ["to_q", "to_k", "to_v", "add_q_proj"], rank=2, alpha=3.0)
    _, kohya = _save(transformer, tmp_path, registry)
    saved = load_file(str(kohya))
    separate = load_file(str(tmp_path / "pytorch_lora_weights.safetensors"))

    def update(key: str) -> Any:
        rank = saved[f"{key}.lora_down.weight"].shape[0]
        assert saved[f"{key}.alpha"].item() == rank
        return saved[f"{key}.lora_up.weight"] @ saved[f"{key}.lora_down.weight"]

    def part(module: str) -> Any:
        prefix = f"transformer.{module}"
        return 1.5 * separate[f"{prefix}.lora_B.weight"] @ separate[f"{prefix}.lora_A.weight"]

    inner = 64
    expected = torch.cat([part(f"single_transformer_blocks.0.attn.{p}") for p in ("to_q", "to_k", "to_v")]
                         + [torch.zeros(4 * inner, inner)])
    torch.testing.assert_close(update("lora_unet_single_blocks_0_linear1"), expected)
    expected = torch.cat([part(f"transformer_blocks.0.attn.{p}") for p in ("to_q", "to_k", "to_v")])
    torch.testing.assert_close(update("lora_unet_double_blocks_0_img_attn_qkv"), expected)
    expected = torch.cat([part("transformer_blocks.0.attn.add_q_proj"), torch.zeros(2 * inner, inner)])
    torch.testing.assert_close(update("lora_unet_double_blocks_0_txt_attn_qkv"), expected)


@pytest.mark.timeout(60)
def test_families_without_the_layout_refuse_it(registry: Registry) -> None:
    from simpletuner.core.config.loading import build_schema

    def problems(values: dict[str, Any]) -> list[str]:
        config, _ = build_schema(registry).load([Layer("env:test", values)], own_source="env:test")
        return check_config(config, registry)[0]

    assert not [p for p in problems({"model_family": "flux", "lora_save_formats": ["kohya"]})
                if "lora_save_formats" in p]
    assert ("$.lora_save_formats: sana has no 'kohya' LoRA layout (it offers: none); families with it: chroma, "
            "flux, flux2, qwen-image, sdxl, z-image"
            in problems({"model_family": "sana", "lora_save_formats": ["kohya"]}))
    assert ("$.lora_save_formats: flux has no 'comfy' LoRA layout (it offers: kohya); families with it: none "
            "installed" in problems({"model_family": "flux", "lora_save_formats": ["comfy"]}))
    assert ("$.lora_save_formats: only a standard LoRA (model_type lora, lora_type standard) is saved in other "
            "layouts" in problems({"model_family": "flux", "model_type": "full", "lora_save_formats": ["kohya"]}))
