"""The PixArt family on a tiny random-weight PixArt-Sigma pipeline loaded through ``from_pretrained``."""

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
    return make_family(registry, "pixart")


@pytest.fixture(scope="module")
def components(family: Any, pixart_folder: Path) -> dict[str, Any]:
    return family.load_components(str(pixart_folder), dtype=torch.float32, device="cpu")


def test_loads_every_component_with_the_adapter_api(family: Any, pixart_folder: Path) -> None:
    from diffusers import AutoencoderKL, PixArtTransformer2DModel
    from diffusers.loaders import PeftAdapterMixin
    from transformers import T5EncoderModel

    loaded = family.load_components(str(pixart_folder), dtype=torch.bfloat16, device="cpu")
    assert set(loaded) == set(family.components)
    transformer = loaded["transformer"]
    assert isinstance(transformer, PixArtTransformer2DModel) and isinstance(transformer, PeftAdapterMixin)
    assert transformer.config.out_channels == 2 * transformer.config.in_channels  # learned sigma
    assert isinstance(loaded["text_encoder"], T5EncoderModel) and isinstance(loaded["vae"], AutoencoderKL)
    assert transformer.dtype == torch.bfloat16
    stock = PixArtTransformer2DModel.from_pretrained(pixart_folder, subfolder="transformer", torch_dtype=torch.bfloat16)
    for (name, mine), (_, theirs) in zip(transformer.state_dict().items(), stock.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), name


def test_text_matches_the_pipeline(registry: Registry, family: Any, components: dict[str, Any],
                                   pixart_folder: Path) -> None:
    from diffusers import PixArtSigmaPipeline

    encoded = family.encode_text(components, PROMPTS)
    assert [e["prompt_embeds"].shape for e in encoded] == [torch.Size([300, 32])] * 2
    for e in encoded:
        mask = e["attention_mask"]
        assert 1 < int(mask.sum()) < 300 and mask[0] == 1 and mask[-1] == 0
    pipeline = PixArtSigmaPipeline.from_pretrained(pixart_folder)
    embeds, mask, _, _ = pipeline.encode_prompt(PROMPTS, do_classifier_free_guidance=False, clean_caption=False,
                                                device=torch.device("cpu"))
    torch.testing.assert_close(stack(encoded)["prompt_embeds"], embeds)
    torch.testing.assert_close(stack(encoded)["attention_mask"], mask)
    short = make_family(registry, "pixart", pixart_max_tokens=77)
    assert short.encode_text(components, PROMPTS[:1])[0]["prompt_embeds"].shape == torch.Size([77, 32])
    assert short.text_cache_settings() != family.text_cache_settings()


def test_latents_round_trip_through_the_vae(family: Any, components: dict[str, Any]) -> None:
    pixels = image_batch(2, 64, 96)
    latents = family.encode_latents(components, pixels)
    vae = components["vae"]
    assert latents.shape == (2, 4, 8, 12)
    torch.testing.assert_close(latents, vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor)
    assert vae.decode(latents / vae.config.scaling_factor).sample.shape == pixels.shape


def test_training_inputs_follow_the_ddpm_epsilon_recipe(family: Any) -> None:
    latents = torch.randn(4, 4, 8, 8)
    inputs = family.training_inputs(latents, {}, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (4,), generator=generator)
    torch.testing.assert_close(inputs["target"], noise)
    assert torch.equal(inputs["timestep"], timesteps)
    # PixArt-Sigma's linear betas 1e-4 … 0.02 over 1000 steps
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)[timesteps].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(inputs["hidden_states"], alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise)


def test_the_learned_sigma_half_is_left_out_of_the_loss(family: Any) -> None:
    target = torch.randn(2, 4, 8, 8)
    eps = torch.randn(2, 4, 8, 8)
    inputs = {"target": target}
    one = family.loss(torch.cat([eps, torch.zeros_like(eps)], dim=1), inputs)
    other = family.loss(torch.cat([eps, 100 * torch.randn_like(eps)], dim=1), inputs)
    torch.testing.assert_close(one, other)
    torch.testing.assert_close(one, torch.nn.functional.mse_loss(eps, target))
    torch.testing.assert_close(family.loss(eps, inputs), one)  # a model without learned sigma
    with pytest.raises(ValueError, match="outputs 6 channels for 4-channel latents"):
        family.loss(torch.randn(2, 6, 8, 8), inputs)


def test_lora_trains_and_loads_into_the_pixart_pipeline(family: Any, components: dict[str, Any],
                                                        pixart_folder: Path, tmp_path: Path) -> None:
    from diffusers import PixArtSigmaPipeline

    from simpletuner.core.training.outputs import LORA_FILE, save_lora
    from simpletuner.model_families.pixart.transformer import load_pixart_lora

    text = stack(family.encode_text(components, PROMPTS))
    latents = family.encode_latents(components, image_batch(2, 64, 64))
    transformer = family.load_components(str(pixart_folder), dtype=torch.float32, device="cpu",
                                         names=["transformer"])["transformer"]
    losses = lora_overfit(family, transformer, latents, text, steps=25, lr=1e-2)
    assert losses[-1] < 0.7 * losses[0], losses
    lora = save_lora(tmp_path / LORA_FILE, transformer, family.trained_component, SimpleNamespace(model_type="lora"),
                     {})

    pipeline = PixArtSigmaPipeline.from_pretrained(pixart_folder)  # the stock transformer class

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                                         generator=torch.Generator().manual_seed(0), output_type="np").images)

    before = render()
    load_pixart_lora(pipeline, lora)
    after = render()
    assert not torch.allclose(before, after)
    inputs = family.training_inputs(latents, text, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = family.predict({"transformer": transformer}, inputs, text)
        loaded = family.predict({"transformer": pipeline.transformer}, inputs, text)
    torch.testing.assert_close(loaded, expected)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pixart_lora(pipeline, tmp_path / "missing.safetensors")


@pytest.mark.parametrize(("choice", "expected"), [("ddim", "DDIMScheduler"),
                                                  ("dpm-solver++", "DPMSolverMultistepScheduler")])
def test_validation_pipeline_samples_with_the_chosen_scheduler(registry: Registry, components: dict[str, Any],
                                                               choice: str, expected: str) -> None:
    from diffusers import PixArtSigmaPipeline

    family = make_family(registry, "pixart", pixart_validation_scheduler=choice)
    pipeline = family.validation_pipeline(components)
    assert isinstance(pipeline, PixArtSigmaPipeline) and type(pipeline.scheduler).__name__ == expected
    assert pipeline.transformer is components["transformer"]
    assert pipeline.scheduler.config.beta_end == components["scheduler"].config.beta_end
    images = pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape[0] == 1 and images.shape[-1] == 3


def test_a_folder_missing_a_component_is_a_clear_error(family: Any, pixart_folder: Path, tmp_path: Path) -> None:
    broken = without(pixart_folder, "text_encoder", tmp_path / "no-t5")
    with pytest.raises(ValueError, match=r"not a PixArt-Sigma diffusers folder: missing text_encoder"):
        family.check_pretrained(str(broken))
    with pytest.raises(ValueError, match=r"cannot load the PixArt-Sigma text_encoder from .*no-t5"):
        family.load_components(str(broken), dtype=torch.float32, device="cpu", names=["text_encoder"])
    family.check_pretrained(str(pixart_folder))


def test_a_saved_transformer_loads_with_the_stock_class(family: Any, pixart_folder: Path, tmp_path: Path) -> None:
    import json

    from diffusers import PixArtTransformer2DModel

    transformer = family.load_components(str(pixart_folder), dtype=torch.float32, device="cpu",
                                         names=["transformer"])["transformer"]
    transformer.save_pretrained(tmp_path / "transformer")
    config = json.loads((tmp_path / "transformer" / "config.json").read_text())
    assert config["_class_name"] == "PixArtTransformer2DModel" and config["out_channels"] == 8
    stock = PixArtTransformer2DModel.from_pretrained(tmp_path / "transformer")
    for (name, mine), (_, theirs) in zip(transformer.state_dict().items(), stock.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), name
