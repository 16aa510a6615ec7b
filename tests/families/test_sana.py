"""The Sana family on a tiny random-weight pipeline loaded through ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from simpletuner.core.plugins import Registry

from .helpers import image_batch, lora_overfit, make_family, stack, without

PROMPTS = ["A photo of a RED cat ", "a drawing of a green dog running across a yellow field at night"]


@pytest.fixture(scope="module")
def family(registry: Registry) -> Any:
    return make_family(registry, "sana")


@pytest.fixture(scope="module")
def components(family: Any, sana_folder: Path) -> dict[str, Any]:
    return family.load_components(str(sana_folder), dtype=torch.float32, device="cpu")


def test_loads_every_component_and_keeps_the_autoencoder_in_float32(family: Any, sana_folder: Path) -> None:
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import Gemma2Model

    loaded = family.load_components(str(sana_folder), dtype=torch.bfloat16, device="cpu")
    assert set(loaded) == set(family.components)
    assert isinstance(loaded["transformer"], SanaTransformer2DModel)
    assert isinstance(loaded["text_encoder"], Gemma2Model)
    assert isinstance(loaded["vae"], AutoencoderDC) and loaded["vae"].config.latent_channels == 32
    assert loaded["transformer"].dtype == torch.bfloat16 and loaded["text_encoder"].dtype == torch.bfloat16
    assert loaded["vae"].dtype == torch.float32
    assert not any(p.requires_grad for p in loaded["transformer"].parameters())


def test_text_matches_the_pipeline_with_the_complex_human_instruction(family: Any, components: dict[str, Any],
                                                                       sana_folder: Path) -> None:
    from diffusers import SanaPipeline

    from simpletuner.model_families.sana.family import complex_human_instruction

    encoded = family.encode_text(components, PROMPTS)
    assert [e["prompt_embeds"].shape for e in encoded] == [torch.Size([300, 32])] * 2
    assert all(e["attention_mask"].shape == torch.Size([300]) for e in encoded)
    # the mask covers the kept instruction tail and the caption, then padding
    for e in encoded:
        mask = e["attention_mask"]
        assert 1 < int(mask.sum()) < 300 and mask[0] == 1 and mask[-1] == 0
    pipeline = SanaPipeline.from_pretrained(sana_folder)
    lines = complex_human_instruction().split("\n")
    assert lines[0].startswith("Given a user prompt")
    embeds, mask, _, _ = pipeline.encode_prompt(PROMPTS, do_classifier_free_guidance=False,
                                                complex_human_instruction=lines, device=torch.device("cpu"))
    torch.testing.assert_close(stack(encoded)["prompt_embeds"], embeds)
    torch.testing.assert_close(stack(encoded)["attention_mask"], mask)
    # an empty caption is encoded like the pipeline's unconditional prompt: no instruction
    empty = family.encode_text(components, [""])[0]
    _, _, negative, negative_mask = pipeline.encode_prompt("x", do_classifier_free_guidance=True, negative_prompt="",
                                                           complex_human_instruction=lines,
                                                           device=torch.device("cpu"))
    torch.testing.assert_close(empty["prompt_embeds"], negative[0])
    assert int(empty["attention_mask"].sum()) == int(negative_mask.sum()) == 1


def test_the_instruction_prefix_can_be_turned_off_and_keys_the_cache(registry: Registry,
                                                                     components: dict[str, Any]) -> None:
    with_prefix = make_family(registry, "sana")
    without_prefix = make_family(registry, "sana", sana_use_complex_human_instruction=False)
    short = make_family(registry, "sana", sana_max_tokens=64)
    a = with_prefix.encode_text(components, PROMPTS[:1])[0]
    b = without_prefix.encode_text(components, PROMPTS[:1])[0]
    c = short.encode_text(components, PROMPTS[:1])[0]
    assert not torch.allclose(a["prompt_embeds"], b["prompt_embeds"])
    assert c["prompt_embeds"].shape == torch.Size([64, 32])
    settings = [f.text_cache_settings() for f in (with_prefix, without_prefix, short)]
    assert len({repr(s) for s in settings}) == 3


def test_latents_round_trip_through_the_dc_ae(family: Any, components: dict[str, Any]) -> None:
    pixels = image_batch(2, 64, 96)
    latents = family.encode_latents(components, pixels)
    vae = components["vae"]
    assert latents.shape == (2, 32, 2, 3)  # 32 channels, 32× smaller
    torch.testing.assert_close(latents, vae.encode(pixels).latent * vae.config.scaling_factor)
    decoded = vae.decode(latents / vae.config.scaling_factor).sample
    assert decoded.shape == pixels.shape


def test_training_inputs_follow_the_flow_matching_recipe(registry: Registry, family: Any) -> None:
    latents = torch.randn(4, 32, 2, 3)
    inputs = family.training_inputs(latents, {}, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(latents.shape, generator=generator)
    sigmas = inputs["sigmas"].view(-1, 1, 1, 1)
    torch.testing.assert_close(inputs["target"], noise - latents)
    torch.testing.assert_close(inputs["hidden_states"], (1 - sigmas) * latents + sigmas * noise)
    torch.testing.assert_close(inputs["timestep"], inputs["sigmas"] * 1000)
    assert bool(((inputs["sigmas"] > 0) & (inputs["sigmas"] < 1)).all())

    from simpletuner.core.config.core_options import CoreOptions

    unshifted = make_family(registry, "sana")
    unshifted.configure(CoreOptions(flow_schedule_shift=1.0))
    many = torch.zeros(4096, 1, 1, 1)
    high = family.training_inputs(many, {}, torch.Generator().manual_seed(0))["sigmas"].mean()
    plain = unshifted.training_inputs(many, {}, torch.Generator().manual_seed(0))["sigmas"].mean()
    assert abs(float(plain) - 0.5) < 0.03 and float(high) > float(plain) + 0.15  # the shift favours high noise


def test_lora_trains_and_loads_into_the_sana_pipeline(family: Any, components: dict[str, Any], sana_folder: Path,
                                                      tmp_path: Path) -> None:
    from diffusers import SanaPipeline, SanaTransformer2DModel

    from simpletuner.core.training.outputs import LORA_FILE, save_lora

    text = stack(family.encode_text(components, PROMPTS))
    latents = family.encode_latents(components, image_batch(2, 64, 64))
    transformer = SanaTransformer2DModel.from_pretrained(sana_folder, subfolder="transformer")
    transformer.requires_grad_(False)
    losses = lora_overfit(family, transformer, latents, text, steps=25)
    assert losses[-1] < 0.7 * losses[0], losses
    save_lora(tmp_path / LORA_FILE, transformer, family.trained_component, SimpleNamespace(model_type="lora"), {})

    pipeline = SanaPipeline.from_pretrained(sana_folder)

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                                         generator=torch.Generator().manual_seed(0), output_type="np").images)

    before = render()
    pipeline.load_lora_weights(tmp_path)
    after = render()
    assert not torch.allclose(before, after)
    # the pipeline's transformer with the loaded LoRA predicts exactly what the trained one does
    inputs = family.training_inputs(latents, text, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = family.predict({"transformer": transformer}, inputs, text)
        loaded = family.predict({"transformer": pipeline.transformer}, inputs, text)
    torch.testing.assert_close(loaded, expected)


def test_validation_pipeline_shares_the_live_components(family: Any, components: dict[str, Any]) -> None:
    from diffusers import SanaPipeline

    pipeline = family.validation_pipeline(components)
    assert isinstance(pipeline, SanaPipeline)
    assert pipeline.transformer is components["transformer"] and pipeline.vae is components["vae"]
    images = pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape[0] == 1 and images.shape[-1] == 3


def test_a_folder_missing_a_component_is_a_clear_error(family: Any, sana_folder: Path, tmp_path: Path) -> None:
    broken = without(sana_folder, "vae", tmp_path / "no-vae")
    with pytest.raises(ValueError, match=r"not a Sana diffusers folder: missing vae"):
        family.check_pretrained(str(broken))
    with pytest.raises(ValueError, match=r"cannot load the Sana vae from .*no-vae"):
        family.load_components(str(broken), dtype=torch.float32, device="cpu", names=["vae"])
    with pytest.raises(ValueError, match="sana has no component 'unet'"):
        family.load_components(str(sana_folder), dtype=torch.float32, device="cpu", names=["unet"])
    family.check_pretrained(str(sana_folder))
