"""The SDXL family on a tiny random-weight SDXL pipeline loaded through ``from_pretrained``: components, text and
latents as the stock pipeline makes them, the DDPM recipe (epsilon, v-prediction, zero terminal SNR, offset noise,
Min-SNR weights, size/crop conditioning), a LoRA that trains and loads with ``load_lora_weights``, LyCORIS on the
UNet, and quantisation with the convolution preset."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from tiny_models import build_tiny

from simpletuner.core.plugins import Registry

from .helpers import image_batch, lora_overfit, make_family, stack, without

pytestmark = pytest.mark.timeout(300)

PROMPTS = ["A photo of a RED cat ", "a drawing of a green dog running across a yellow field at night"]


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("sdxl", tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="module")
def family(registry: Registry) -> Any:
    return make_family(registry, "sdxl")


@pytest.fixture(scope="module")
def components(family: Any, sdxl_folder: Path) -> dict[str, Any]:
    return family.load_components(str(sdxl_folder), dtype=torch.float32, device="cpu")


def _alpha_bars(zero_snr: bool = False) -> torch.Tensor:
    """SDXL's ᾱ_t computed by hand: betas linear in √β from 0.00085 to 0.012 over 1000 steps."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    alpha_bar = torch.cumprod(1 - betas, 0)
    if zero_snr:  # Lin et al. 2023, algorithm 1
        root = alpha_bar.sqrt()
        first, last = root[0].clone(), root[-1].clone()
        root = (root - last) * first / (first - last)
        alpha_bar = root**2
    return alpha_bar


def test_loads_every_component_with_the_adapter_api(family: Any, sdxl_folder: Path) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import PeftAdapterMixin
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    loaded = family.load_components(str(sdxl_folder), dtype=torch.bfloat16, device="cpu")
    assert set(loaded) == set(family.components) and family.trained_component == "unet"
    unet = loaded["unet"]
    assert isinstance(unet, UNet2DConditionModel) and isinstance(unet, PeftAdapterMixin)
    assert unet.dtype == torch.bfloat16 and not any(p.requires_grad for p in unet.parameters())
    assert isinstance(loaded["text_encoder"], CLIPTextModel)
    assert isinstance(loaded["text_encoder_2"], CLIPTextModelWithProjection)
    assert isinstance(loaded["vae"], AutoencoderKL) and loaded["vae"].dtype == torch.bfloat16
    # FSDP2's wrap classes are the UNet's own repeated blocks
    names = {type(m).__name__ for m in unet.modules()}
    assert set(family.block_classes) <= names


def test_the_vae_is_kept_out_of_fp16_overflow(registry: Registry, family: Any, sdxl_folder: Path,
                                              tmp_path: Path) -> None:
    vae = family.load_components(str(sdxl_folder), dtype=torch.float16, device="cpu", names=["vae"])["vae"]
    assert vae.dtype == torch.float32  # SDXL's VAE asks for upcasting (force_upcast)
    for choice, dtype in (("fp16", torch.float16), ("fp32", torch.float32), ("bf16", torch.bfloat16)):
        chosen = make_family(registry, "sdxl", vae_dtype=choice)
        assert chosen.load_components(str(sdxl_folder), dtype=torch.float16, device="cpu",
                                      names=["vae"])["vae"].dtype == dtype
    # an fp16-safe VAE (force_upcast false, in a folder of its own like madebyollin/sdxl-vae-fp16-fix) stays fp16
    config = json.loads((sdxl_folder / "vae" / "config.json").read_text())
    fixed = tmp_path / "sdxl-vae-fp16-fix"
    fixed.mkdir()
    (fixed / "config.json").write_text(json.dumps({**config, "force_upcast": False}))
    (fixed / "diffusion_pytorch_model.safetensors").write_bytes(
        (sdxl_folder / "vae" / "diffusion_pytorch_model.safetensors").read_bytes())
    safe = family.load_components(str(fixed), dtype=torch.float16, device="cpu", names=["vae"])["vae"]
    assert safe.dtype == torch.float16
    with pytest.raises(ValueError, match=r"cannot load the Stable Diffusion XL vae from .*nothing"):
        family.load_components(str(tmp_path / "nothing"), dtype=torch.float32, device="cpu", names=["vae"])


def test_text_matches_the_pipeline(family: Any, components: dict[str, Any], sdxl_folder: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    encoded = family.encode_text(components, PROMPTS)
    assert [e["prompt_embeds"].shape for e in encoded] == [torch.Size([77, 64])] * 2
    assert [e["pooled_prompt_embeds"].shape for e in encoded] == [torch.Size([32])] * 2
    pipeline = StableDiffusionXLPipeline.from_pretrained(sdxl_folder)
    embeds, _, pooled, _ = pipeline.encode_prompt(PROMPTS, device=torch.device("cpu"),
                                                  do_classifier_free_guidance=False)
    torch.testing.assert_close(stack(encoded)["prompt_embeds"], embeds)
    torch.testing.assert_close(stack(encoded)["pooled_prompt_embeds"], pooled)


def test_latents_round_trip_through_the_vae(family: Any, components: dict[str, Any]) -> None:
    pixels = image_batch(2, 64, 96)
    latents = family.encode_latents(components, pixels)
    vae = components["vae"]
    assert latents.shape == (2, 4, 8, 12)
    torch.testing.assert_close(latents, vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor)
    assert vae.decode(latents / vae.config.scaling_factor).sample.shape == pixels.shape


def test_training_inputs_follow_the_ddpm_recipe(registry: Registry, family: Any) -> None:
    latents = torch.randn(3, 4, 8, 8)
    geometry = torch.tensor([[1200, 900, 16, 0, 64, 64], [64, 64, 0, 0, 64, 64], [80, 120, 0, 8, 64, 64]])
    inputs = family.training_inputs(latents, {}, torch.Generator().manual_seed(3), geometry=geometry)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (3,), generator=generator)
    alpha_bar = _alpha_bars()[timesteps].view(-1, 1, 1, 1)
    assert torch.equal(inputs["timestep"], timesteps)
    torch.testing.assert_close(inputs["target"], noise)
    torch.testing.assert_close(inputs["sample"], alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise)
    # add_time_ids: original size, crop top-left, target size, as StableDiffusionXLPipeline builds them
    assert torch.equal(inputs["time_ids"], geometry.float())
    plain = family.training_inputs(latents[:1], {}, torch.Generator().manual_seed(3))
    assert plain["time_ids"].tolist() == [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]

    velocity = make_family(registry, "sdxl", prediction_type="v_prediction")
    v_inputs = velocity.training_inputs(latents, {}, torch.Generator().manual_seed(3), geometry=geometry)
    torch.testing.assert_close(v_inputs["target"], alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * latents)

    zero = make_family(registry, "sdxl", prediction_type="v_prediction", rescale_betas_zero_snr=True)
    torch.testing.assert_close(zero.noise_scheduler.alphas_cumprod, _alpha_bars(zero_snr=True))
    assert float(zero.noise_scheduler.alphas_cumprod[-1]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="rescale_betas_zero_snr needs prediction_type v_prediction"):
        make_family(registry, "sdxl", rescale_betas_zero_snr=True)


def test_offset_noise_shifts_each_sample_and_channel(registry: Registry) -> None:
    latents = torch.randn(2, 4, 8, 8)
    always = make_family(registry, "sdxl", offset_noise=True, noise_offset=0.1, noise_offset_probability=1.0)
    inputs = always.training_inputs(latents, {}, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(latents.shape, generator=generator)
    torch.randint(0, 1000, (2,), generator=generator)
    noise = noise + 0.1 * torch.randn((2, 4, 1, 1), generator=generator)
    torch.testing.assert_close(inputs["target"], noise)
    # with a probability below 1 one draw decides per batch; across many batches about that fraction is offset
    sometimes = make_family(registry, "sdxl", offset_noise=True, noise_offset=0.1, noise_offset_probability=0.25)
    generator = torch.Generator().manual_seed(0)
    plain_family = make_family(registry, "sdxl")
    offset = 0
    for _ in range(200):
        state = generator.get_state()
        drawn = sometimes.training_inputs(latents, {}, generator)["target"]
        plain = plain_family.training_inputs(latents, {}, torch.Generator().set_state(state))["target"]
        offset += not torch.equal(drawn, plain)
    assert 25 < offset < 75


def test_min_snr_weighting_follows_diffusers(registry: Registry) -> None:
    from diffusers.training_utils import compute_snr

    prediction, target = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    timesteps = torch.tensor([0, 10, 500, 999])
    plain = make_family(registry, "sdxl")
    inputs = {"target": target, "timestep": timesteps}
    torch.testing.assert_close(plain.loss(prediction, inputs), torch.nn.functional.mse_loss(prediction, target))
    per_sample = ((prediction - target) ** 2).mean(dim=(1, 2, 3))
    for kind, denominator in (("epsilon", lambda s: s), ("v_prediction", lambda s: s + 1)):
        weighted = make_family(registry, "sdxl", snr_gamma=5.0, prediction_type=kind)
        snr = compute_snr(weighted.noise_scheduler, timesteps)
        weights = torch.minimum(snr, torch.full_like(snr, 5.0)) / denominator(snr)
        torch.testing.assert_close(weighted.loss(prediction, inputs), (per_sample * weights).mean())
        if kind == "epsilon":  # easy, low-noise timesteps weigh little; noisy ones fully
            assert weights[0] < 0.01 and float(weights[-1]) == pytest.approx(1.0)


def test_lora_trains_and_loads_into_the_sdxl_pipeline(family: Any, components: dict[str, Any],
                                                      sdxl_folder: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    from simpletuner.core.training.outputs import LORA_FILE, save_lora

    text = stack(family.encode_text(components, PROMPTS))
    latents = family.encode_latents(components, image_batch(2, 64, 64))
    unet = family.load_components(str(sdxl_folder), dtype=torch.float32, device="cpu", names=["unet"])["unet"]
    losses = lora_overfit(family, unet, latents, text, steps=40, lr=2e-2)
    assert losses[-1] < 0.7 * losses[0], losses
    save_lora(tmp_path / LORA_FILE, unet, family.trained_component, SimpleNamespace(model_type="lora"), {})

    pipeline = StableDiffusionXLPipeline.from_pretrained(sdxl_folder)

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                                         generator=torch.Generator().manual_seed(0), output_type="np").images)

    before = render()
    pipeline.load_lora_weights(str(tmp_path))
    assert not torch.allclose(before, render())
    inputs = family.training_inputs(latents, text, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = family.predict({"unet": unet}, inputs, text)
        loaded = family.predict({"unet": pipeline.unet}, inputs, text)
    torch.testing.assert_close(loaded, expected)


def test_lycoris_on_the_unet_loads_with_the_family_loader(family: Any, components: dict[str, Any],
                                                          sdxl_folder: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    from simpletuner.core.training.adapter import attach_adapter
    from simpletuner.core.training.outputs import LORA_FILE, save_lora
    from simpletuner.model_families.sdxl import load_lycoris

    unet = family.load_components(str(sdxl_folder), dtype=torch.float32, device="cpu", names=["unet"])["unet"]
    core = SimpleNamespace(model_type="lora", lora_type="lycoris")
    attach_adapter(unet, family, core, {"algo": "lokr", "multiplier": 1.0, "linear_dim": 4, "linear_alpha": 4,
                                        "factor": 4, "apply_preset": {"target_module": ["Attention"]}})
    with torch.no_grad():
        for param in unet.lycoris_network.parameters():
            param.add_(0.05 * torch.randn_like(param))
    save_lora(tmp_path / LORA_FILE, unet, family.trained_component, core, {})
    pipeline = StableDiffusionXLPipeline.from_pretrained(sdxl_folder)
    before = pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(0), output_type="np").images
    network = load_lycoris(pipeline, tmp_path)
    assert network.loras and pipeline.unet.lycoris_network is network
    after = pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                     generator=torch.Generator().manual_seed(0), output_type="np").images
    assert not torch.allclose(torch.from_numpy(before), torch.from_numpy(after))


@pytest.mark.parametrize("precision", ["int8-quanto", "int4-quanto"])
def test_a_quantised_unet_trains_a_lora_on_its_convolutions(registry: Registry, sdxl_folder: Path,
                                                           precision: str) -> None:
    from simpletuner.core.training.adapter import attach_adapter

    family = make_family(registry, "sdxl")
    from simpletuner.core.config.core_options import CoreOptions

    core = CoreOptions(model_type="lora", lora_type="standard", lora_target_preset="attention+mlp+conv",
                       lora_rank=4, lora_dropout=0.0)
    family.configure(core)
    assert "*.conv1" in family.quantization_exclusions
    unet = family.load_components(str(sdxl_folder), dtype=torch.float32, device="cpu", names=["unet"])["unet"]
    quantizer = registry.quantizer_for(precision).build(None)
    quantizer.quantize(unet, precision, exclude=family.quantization_exclusions)
    attach_adapter(unet, family, core)
    assert any(name.endswith("conv1.lora_A.default.weight") for name, _ in unet.named_parameters())
    latents = torch.randn(1, 4, 8, 8)
    text = {"prompt_embeds": torch.randn(1, 77, 64), "pooled_prompt_embeds": torch.randn(1, 32)}
    inputs = family.training_inputs(latents, text, torch.Generator().manual_seed(0))
    family.loss(family.predict({"unet": unet}, inputs, text), inputs).backward()
    assert all(p.grad is not None for n, p in unet.named_parameters() if p.requires_grad)
    family.configure(SimpleNamespace(model_type="lora", lora_type="standard", lora_target_preset=None))
    assert not any("conv1" in pattern for pattern in family.quantization_exclusions)


@pytest.mark.parametrize(("choice", "zero_snr"), [("epsilon", False), ("v_prediction", True)])
def test_validation_pipeline_samples_with_the_trained_prediction_type(registry: Registry,
                                                                      components: dict[str, Any], choice: str,
                                                                      zero_snr: bool) -> None:
    from diffusers import StableDiffusionXLPipeline

    family = make_family(registry, "sdxl", prediction_type=choice, rescale_betas_zero_snr=zero_snr)
    pipeline = family.validation_pipeline(components)
    assert isinstance(pipeline, StableDiffusionXLPipeline) and pipeline.unet is components["unet"]
    config = pipeline.scheduler.config
    assert type(pipeline.scheduler) is type(components["scheduler"]) and config.prediction_type == choice
    assert config.rescale_betas_zero_snr == zero_snr
    assert config.timestep_spacing == ("trailing" if zero_snr else "leading")
    images = pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 64, 64, 3)


def test_a_folder_missing_a_component_is_a_clear_error(family: Any, sdxl_folder: Path, tmp_path: Path) -> None:
    broken = without(sdxl_folder, "text_encoder_2", tmp_path / "no-clip-g")
    with pytest.raises(ValueError, match=r"not a Stable Diffusion XL diffusers folder: missing text_encoder_2"):
        family.check_pretrained(str(broken))
    with pytest.raises(ValueError, match=r"cannot load the Stable Diffusion XL text_encoder_2 from .*no-clip-g"):
        family.load_components(str(broken), dtype=torch.float32, device="cpu", names=["text_encoder_2"])
    family.check_pretrained(str(sdxl_folder))
