"""The final LoRA of SDXL, Flux.2, Qwen-Image, Z-Image and Chroma saved in kohya's layout
(``lora_save_formats: ["kohya"]``): the stock pipeline's ``load_lora_weights`` (diffusers' own converter) reads it as
the same LoRA as the diffusers-format file, so both give the same image. Flux's layout has its own test
(test_flux_kohya.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.plugins import Registry

from .helpers import assert_kohya_reads_back, with_random_lora


@dataclass(frozen=True)
class Case:
    family: str
    pipeline: str  # the stock diffusers pipeline class
    component: str  # the trained component (and the LoRA file's key prefix)
    targets: str  # the layers given a LoRA: every kind the layout names that diffusers' reader loads back
    keys: frozenset[str]  # kohya keys the file must hold
    render: dict[str, Any] = field(default_factory=dict)


CASES = (
    Case("sdxl", "StableDiffusionXLPipeline", "unet",
         r".*(to_q|to_k|to_v|to_out\.0|ff\.net\.0\.proj|ff\.net\.2|proj_in|proj_out"
         r"|conv1|conv2|conv_shortcut|time_emb_proj)",
         frozenset({"lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q.lora_down.weight",
                    "lora_unet_input_blocks_3_0_skip_connection.alpha", "lora_unet_input_blocks_1_0_in_layers_2.alpha",
                    "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_out_0.lora_up.weight",
                    "lora_unet_middle_block_2_out_layers_3.alpha", "lora_unet_middle_block_0_emb_layers_1.alpha",
                    "lora_unet_output_blocks_1_1_proj_in.alpha", "lora_unet_output_blocks_3_0_skip_connection.alpha",
                    "lora_unet_output_blocks_0_1_transformer_blocks_0_ff_net_0_proj.alpha"})),
    Case("flux2", "Flux2KleinPipeline", "transformer",
         r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
         r"|ff\.linear_(in|out)|ff_context\.linear_(in|out))"
         r"|single_transformer_blocks\.\d+\.attn\.(to_qkv_mlp_proj|to_out)"
         r"|x_embedder|context_embedder|proj_out|time_guidance_embed\.timestep_embedder\.linear_[12]",
         frozenset({"lora_unet_double_blocks_0_img_attn_qkv.alpha", "lora_unet_double_blocks_0_txt_attn_qkv.alpha",
                    "lora_unet_double_blocks_0_img_mlp_0.alpha", "lora_unet_double_blocks_0_txt_mlp_2.alpha",
                    "lora_unet_single_blocks_0_linear1.lora_down.weight", "lora_unet_single_blocks_0_linear2.alpha",
                    "lora_unet_img_in.alpha", "lora_unet_txt_in.alpha", "lora_unet_time_in_out_layer.alpha",
                    "lora_unet_final_layer_linear.lora_up.weight"}),
         {"max_sequence_length": 32}),
    Case("qwen-image", "QwenImagePipeline", "transformer",
         r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
         r"|(img|txt)_mlp\.net\.(0\.proj|2)|(img|txt)_mod\.1)",
         frozenset({"lora_unet_transformer_blocks_0_attn_to_q.alpha",
                    "lora_unet_transformer_blocks_0_attn_add_k_proj.lora_down.weight",
                    "lora_unet_transformer_blocks_0_attn_to_out_0.alpha",
                    "lora_unet_transformer_blocks_0_attn_to_add_out.alpha",
                    "lora_unet_transformer_blocks_0_img_mlp_net_0_proj.alpha",
                    "lora_unet_transformer_blocks_0_txt_mod_1.lora_up.weight"})),
    Case("z-image", "ZImagePipeline", "transformer",
         r"(layers|noise_refiner|context_refiner)\.\d+\.(attention\.(to_q|to_k|to_v|to_out\.0)"
         r"|feed_forward\.w[123]|adaLN_modulation\.0)",
         frozenset({"lora_unet_layers_0_attention_qkv.lora_down.weight", "lora_unet_layers_0_attention_out.alpha",
                    "lora_unet_noise_refiner_0_feed_forward_w1.alpha", "lora_unet_layers_0_adaLN_modulation_0.alpha",
                    "lora_unet_context_refiner_0_attention_qkv.alpha"}),
         {"max_sequence_length": 32}),
    # a single block's fused linear1 is left out: diffusers' reader splits it at FLUX.1's widths only (the tiny
    # model is narrower; test_flux_kohya.py checks the fused layer), and it drops the layers outside the blocks
    # (checked through the reader below)
    Case("chroma", "ChromaPipeline", "transformer",
         r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
         r"|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2))|single_transformer_blocks\.\d+\.proj_out",
         frozenset({"lora_unet_double_blocks_0_img_attn_qkv.alpha", "lora_unet_double_blocks_0_txt_attn_proj.alpha",
                    "lora_unet_double_blocks_0_img_mlp_0.alpha", "lora_unet_single_blocks_0_linear2.alpha"}),
         {"max_sequence_length": 32}),
)


def _save(model: Any, case: Case, folder: Path, registry: Registry) -> tuple[Path, Path]:
    from simpletuner.core.training.outputs import LORA_FILE, save_lora, save_lora_layouts

    core = CoreOptions(lora_save_formats=["kohya"])
    lora = save_lora(folder / LORA_FILE, model, case.component, core, {"step": 1})
    layouts = registry.model_family(case.family).lora_layouts
    (kohya,) = save_lora_layouts(folder, model, core, layouts, {"step": 1})
    return lora, kohya


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES, ids=[case.family for case in CASES])
def test_the_stock_pipeline_reads_the_kohya_file_as_the_same_lora(case: Case, tiny_folder: Callable[[str], Path],
                                                                  registry: Registry, tmp_path: Path) -> None:
    import diffusers
    import torch
    from safetensors.torch import load_file

    folder = tiny_folder(case.family)
    pipeline_class = getattr(diffusers, case.pipeline)
    model = getattr(pipeline_class.from_pretrained(str(folder)), case.component)
    with_random_lora(model, case.targets, rank=4, alpha=8.0)  # scale 2: alpha must survive
    lora, kohya = _save(model, case, tmp_path, registry)
    saved = load_file(str(kohya))
    assert all(k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha"))
               for k in saved)
    assert case.keys <= set(saved)
    assert all(saved[k].item() == saved[k.replace(".alpha", ".lora_down.weight")].shape[0]
               for k in saved if k.endswith(".alpha"))

    def image(weights: Path | None) -> Any:
        pipeline = pipeline_class.from_pretrained(str(folder))
        if weights is not None:
            pipeline.load_lora_weights(str(weights.parent), weight_name=weights.name)
        return pipeline(prompt="a red cat", height=64, width=64, num_inference_steps=2, output_type="pt",
                        generator=torch.Generator().manual_seed(0), **case.render).images

    base, from_diffusers, from_kohya = image(None), image(lora), image(kohya)
    assert (from_diffusers - base).abs().max() > 1e-2  # the LoRA changes the image, so the comparison means something
    torch.testing.assert_close(from_kohya, from_diffusers, atol=2e-5, rtol=1e-4)


@pytest.mark.timeout(120)
def test_chroma_layers_outside_the_blocks_read_back_through_diffusers_reader(tiny_folder: Callable[[str], Path],
                                                                             registry: Registry,
                                                                             tmp_path: Path) -> None:
    from diffusers import ChromaTransformer2DModel
    from safetensors.torch import load_file

    transformer = ChromaTransformer2DModel.from_pretrained(str(tiny_folder("chroma")), subfolder="transformer")
    with_random_lora(transformer, r"x_embedder|context_embedder|proj_out|single_transformer_blocks\.0\.proj_out"
                     r"|transformer_blocks\.0\.attn\.to_add_out", rank=4, alpha=2.0)
    lora, kohya = _save(transformer, CASES[-1], tmp_path, registry)
    assert {"lora_unet_img_in.alpha", "lora_unet_txt_in.alpha", "lora_unet_final_layer_linear.alpha",
            "lora_unet_single_blocks_0_linear2.alpha", "lora_unet_double_blocks_0_txt_attn_proj.alpha"
            } <= set(load_file(str(kohya)))
    assert_kohya_reads_back(lora, kohya, layers=5)


@pytest.mark.timeout(60)
def test_layers_the_layout_has_no_place_for_are_refused(registry: Registry) -> None:
    from types import SimpleNamespace

    import torch

    layouts = {name: registry.model_family(name).lora_layouts["kohya"] for name in ("sdxl", "z-image", "qwen-image",
                                                                                      "flux2")}
    unet = SimpleNamespace(config=SimpleNamespace(layers_per_block=2))
    pair = {"lora_A.weight": torch.zeros(2, 4), "lora_B.weight": torch.zeros(4, 2)}
    for family, module in (("sdxl", "conv_in"), ("z-image", "t_embedder.mlp.0"), ("qwen-image", "img_in"),
                           ("flux2", "double_stream_modulation_img.linear")):
        with pytest.raises(ValueError, match="no place in kohya's .* layout"):
            layouts[family]({f"{module}.{k}": v for k, v in pair.items()}, 1.0, unet)
