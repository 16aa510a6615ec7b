"""The Flux.2 family on tiny random-weight FLUX.2 [klein] and [dev] pipelines loaded through ``from_pretrained``: text
as ``Flux2KleinPipeline.encode_prompt`` and ``Flux2Pipeline.encode_prompt`` encode it (three stacked hidden layers),
the VAE's patchified, batch-normalised latents, rectified flow with [dev]'s guidance input, LoRAs the stock pipelines
load, a resumed run equal to an uninterrupted one, SimpleTuner's Flux.2 configs passing ``config check``, and the
demo."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import simpletuner_configs as st
import torch
from tiny_models import build_tiny

from simpletuner.core.cli.demo_commands import make_demo_images
from simpletuner.core.events import EVENTS_FILE, read_events
from simpletuner.core.plugins import Registry
from simpletuner.core.training.outputs import read_lora
from simpletuner.core.workspace import Workspace

from .helpers import image_batch, lora_overfit, stack

pytestmark = pytest.mark.timeout(300)
PROMPTS = ["a photo of a red cat", "a drawing of a green dog running across a yellow field at night"]


class Stop(Exception):
    """Raised by a listener to stop a run as a kill would."""


@pytest.fixture(scope="module")
def flux2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("flux2", tmp_path_factory.mktemp("tiny-flux2"))


@pytest.fixture(scope="module")
def dev_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simpletuner.model_families.flux2.tiny import build_tiny_flux2_dev_pipeline

    return build_tiny_flux2_dev_pipeline(tmp_path_factory.mktemp("tiny-flux2-dev"))


@pytest.fixture(scope="module")
def family(registry: Registry) -> Any:
    spec = registry.model_family("flux2")
    return spec.build(spec.flavour("klein-4b"), spec.options(flux2_max_tokens=32))


def dev_family(registry: Registry, **options: Any) -> Any:
    spec = registry.model_family("flux2")
    return spec.build(spec.flavour("dev"), spec.options(flux2_max_tokens=32, **options))


@pytest.fixture(scope="module")
def dev_components(registry: Registry, dev_folder: Path) -> dict[str, Any]:
    return dev_family(registry).load_components(str(dev_folder), dtype=torch.float32, device="cpu")


@pytest.fixture(scope="module")
def components(family: Any, flux2_folder: Path) -> dict[str, Any]:
    return family.load_components(str(flux2_folder), dtype=torch.float32, device="cpu")


def test_flavours_and_what_they_preset(registry: Registry) -> None:
    spec = registry.model_family("flux2")
    assert {f.name: f.pretrained for f in spec.flavours} == {"klein-4b": "black-forest-labs/FLUX.2-klein-4B",
                                                             "klein-9b": "black-forest-labs/FLUX.2-klein-9B",
                                                             "dev": "black-forest-labs/FLUX.2-dev"}
    assert spec.flavour(None).name == "klein-9b"  # SimpleTuner's default flavour
    assert spec.flavour("klein-9b").settings["validation_num_inference_steps"] == 4
    assert spec.flavour("dev").settings == {"validation_guidance": 4.0, "validation_num_inference_steps": 50}


def test_text_matches_the_pipeline(family: Any, components: dict[str, Any], flux2_folder: Path) -> None:
    from diffusers import Flux2KleinPipeline

    encoded = stack(family.encode_text(components, PROMPTS))
    pipeline = Flux2KleinPipeline.from_pretrained(flux2_folder)
    embeds, text_ids = pipeline.encode_prompt(list(PROMPTS), max_sequence_length=32, device=torch.device("cpu"))
    torch.testing.assert_close(encoded["prompt_embeds"], embeds)
    assert encoded["prompt_embeds"].shape == (2, 32, 48)  # three hidden layers of 16, joined per token
    assert torch.equal(family._positions("text", 32, 0, 2, torch.device("cpu")), text_ids)


def test_latents_and_the_flow_recipe(family: Any, components: dict[str, Any], flux2_folder: Path) -> None:
    from diffusers import Flux2KleinPipeline

    pixels = image_batch(2, 64, 64)
    latents = family.encode_latents(components, pixels)
    pipeline = Flux2KleinPipeline.from_pretrained(flux2_folder)
    torch.testing.assert_close(latents, pipeline._encode_vae_image(pixels, generator=None))
    assert latents.shape == (2, 128, 4, 4)
    inputs = family.training_inputs(latents, {}, torch.Generator().manual_seed(3))
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
    sigmas = inputs["sigmas"].view(-1, 1, 1, 1)
    torch.testing.assert_close(inputs["target"], pipeline._pack_latents(noise - latents))
    torch.testing.assert_close(inputs["hidden_states"], pipeline._pack_latents((1 - sigmas) * latents + sigmas * noise))
    assert torch.equal(inputs["img_ids"], pipeline._prepare_latent_ids(latents))
    torch.testing.assert_close(inputs["timestep"], inputs["sigmas"])


def test_dev_text_matches_flux2_pipeline(registry: Registry, dev_components: dict[str, Any],
                                         dev_folder: Path) -> None:
    from diffusers import Flux2Pipeline

    family = dev_family(registry)
    prompts = [*PROMPTS[:1], "a dog [IMG] on a chair"]  # the pipeline drops [IMG] markers
    encoded = stack(family.encode_text(dev_components, prompts))
    pipeline = Flux2Pipeline.from_pretrained(dev_folder)
    embeds, text_ids = pipeline.encode_prompt(prompts, max_sequence_length=32, device=torch.device("cpu"))
    torch.testing.assert_close(encoded["prompt_embeds"], embeds)
    assert encoded["prompt_embeds"].shape == (2, 32, 48)  # hidden layers 10, 20, 30 of 16, joined per token
    assert torch.equal(family._positions("text", 32, 0, 2, torch.device("cpu")), text_ids)
    assert type(dev_components["text_encoder"]).__name__ == "Mistral3ForConditionalGeneration"


def test_dev_guidance_enters_training_and_klein_takes_none(registry: Registry, family: Any,
                                                           dev_components: dict[str, Any]) -> None:
    constant, ranged = dev_family(registry, flux2_guidance_value=3.5), dev_family(
        registry, flux2_guidance_mode="random-range", flux2_guidance_min=2.0, flux2_guidance_max=5.0)
    latents = constant.encode_latents(dev_components, image_batch(2, 64, 64))
    text = stack(constant.encode_text(dev_components, PROMPTS))
    inputs = constant.training_inputs(latents, text, torch.Generator().manual_seed(3))
    assert torch.equal(inputs["guidance"], torch.full((2,), 3.5))
    generator = torch.Generator().manual_seed(3)
    drawn = ranged.training_inputs(latents, text, generator)["guidance"]
    reference = torch.Generator().manual_seed(3)
    torch.randn(latents.shape, generator=reference), torch.randn(2, generator=reference)  # noise, then σ
    torch.testing.assert_close(drawn, 2.0 + 3.0 * torch.rand(2, generator=reference))
    torch.testing.assert_close(inputs["hidden_states"],
                               family.training_inputs(latents, text, torch.Generator().manual_seed(3))["hidden_states"])
    assert "guidance" not in family.training_inputs(latents, text, torch.Generator().manual_seed(3))
    transformer = dev_components["transformer"]
    with torch.no_grad():
        low = constant.predict(dev_components, inputs, text)
        high = constant.predict(dev_components, {**inputs, "guidance": torch.full((2,), 6.0)}, text)
    assert transformer.config.guidance_embeds and not torch.allclose(low, high)
    with pytest.raises(ValueError, match="flux2_guidance_min .* is above flux2_guidance_max"):
        dev_family(registry, flux2_guidance_mode="random-range", flux2_guidance_min=5.0, flux2_guidance_max=1.0)


def test_a_folder_of_the_other_flavour_is_refused(registry: Registry, family: Any, flux2_folder: Path,
                                                  dev_folder: Path) -> None:
    with pytest.raises(ValueError, match="Mistral3ForConditionalGeneration text encoder.*set model_flavour dev"):
        family.check_pretrained(str(dev_folder))
    with pytest.raises(ValueError, match="Qwen3ForCausalLM text encoder.*set model_flavour klein-4b or klein-9b"):
        dev_family(registry).check_pretrained(str(flux2_folder))
    family.check_pretrained(str(flux2_folder))
    dev_family(registry).check_pretrained(str(dev_folder))


def test_lora_trains_and_loads_into_the_klein_pipeline(family: Any, components: dict[str, Any], flux2_folder: Path,
                                                       tmp_path: Path) -> None:
    from types import SimpleNamespace

    from diffusers import Flux2KleinPipeline, Flux2Transformer2DModel

    from simpletuner.core.training.outputs import LORA_FILE, save_lora

    text = stack(family.encode_text(components, PROMPTS))
    latents = family.encode_latents(components, image_batch(2, 64, 64))
    transformer = Flux2Transformer2DModel.from_pretrained(flux2_folder, subfolder="transformer")
    transformer.requires_grad_(False)
    losses = lora_overfit(family, transformer, latents, text, steps=100, lr=2e-2)
    assert losses[-1] < 0.7 * losses[0], losses
    save_lora(tmp_path / LORA_FILE, transformer, "transformer", SimpleNamespace(model_type="lora"), {})
    pipeline = Flux2KleinPipeline.from_pretrained(flux2_folder)

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline(prompt="a red cat", height=64, width=64, num_inference_steps=2,
                                         max_sequence_length=32, generator=torch.Generator().manual_seed(0),
                                         output_type="np").images)

    before = render()
    pipeline.load_lora_weights(tmp_path)
    assert not torch.allclose(before, render())
    inputs = family.training_inputs(latents, text, torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(family.predict({"transformer": pipeline.transformer}, inputs, text),
                                   family.predict({"transformer": transformer}, inputs, text))


def _environment(workspace: Workspace, model: Path, name: str, **overrides: Any) -> str:
    data_dir = workspace.datasets_dir / name
    make_demo_images(data_dir, 4)
    env_dir = workspace.configs_dir / name
    env_dir.mkdir(parents=True, exist_ok=True)
    (env_dir / "config.json").write_text(json.dumps({
        "model_family": "flux2", "model_flavour": "klein-4b", "pretrained_model_name_or_path": str(model),
        "flux2_max_tokens": 32, "lora_rank": 4, "lora_dropout": 0.0, "learning_rate": 1e-3,
        "max_train_steps": 4, "num_train_epochs": 0, "train_batch_size": 1, "seed": 7, "resolution": 64,
        "resolution_type": "pixel", "mixed_precision": "no", "checkpointing_steps": 0, "output_dir": f"output/{name}",
        "report_to": "none", **overrides,
    }))
    (env_dir / "multidatabackend.json").write_text(json.dumps([
        {"id": "shapes", "instance_data_dir": str(data_dir), "caption_strategy": "textfile", "crop": True,
         "crop_aspect": "square", "cache_dir_vae": f"cache/{name}/vae"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": f"cache/{name}/text"},
    ]))
    return name


def _train(workspace: Workspace, name: str, listeners: list[Any] | None = None) -> Any:
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.training.run import train

    registry = Registry()
    return train(load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry), workspace,
                 registry, listeners=listeners)


def test_a_run_validates_and_resumes_to_the_uninterrupted_weights(workspace: Workspace,
                                                                   flux2_folder: Path) -> None:
    settings = dict(max_train_steps=6, checkpointing_steps=2, gradient_accumulation_steps=2,
                    caption_dropout_probability=0.3, lr_scheduler="cosine", lr_warmup_steps=2,
                    validation_prompt="a red circle", validation_steps=6, validation_resolution="64")
    straight = _train(workspace, _environment(workspace, flux2_folder, "straight", **settings))
    events = read_events(straight.run_dir / EVENTS_FILE)
    assert [e for e in events if e["event"] == "validation" and e.get("images")], "no validation images"
    name = _environment(workspace, flux2_folder, "stopped", **settings)

    def stop_after_checkpoint_4(event: dict[str, Any]) -> None:
        if event["event"] == "checkpoint_saved" and event["step"] == 4:
            raise Stop

    with pytest.raises(Stop):
        _train(workspace, name, listeners=[stop_after_checkpoint_4])
    config_path = workspace.configs_dir / name / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "resume_from_checkpoint": "latest"}))
    resumed = _train(workspace, name)
    assert [e["step"] for e in read_events(resumed.run_dir / EVENTS_FILE) if e["event"] == "step"] == [5, 6]
    expected, _ = read_lora(straight.output, "transformer")
    actual, _ = read_lora(resumed.output, "transformer")
    assert expected.keys() == actual.keys() and expected
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_a_dev_run_validates_through_flux2_pipeline_and_its_lora_loads(workspace: Workspace,
                                                                        dev_folder: Path) -> None:
    from diffusers import Flux2Pipeline

    name = _environment(workspace, dev_folder, "dev", model_flavour="dev", max_train_steps=3, learning_rate=5e-2,
                        flux2_guidance_value=3.5, validation_prompt="a red circle", validation_steps=3,
                        validation_resolution="64", validation_num_inference_steps=2)
    result = _train(workspace, name)
    events = read_events(result.run_dir / EVENTS_FILE)
    assert [e for e in events if e["event"] == "validation" and e.get("images")], "no validation images"
    pipeline = Flux2Pipeline.from_pretrained(dev_folder)

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline(prompt="a red cat", height=64, width=64, num_inference_steps=2,
                                         guidance_scale=4.0, max_sequence_length=32,
                                         generator=torch.Generator().manual_seed(0), output_type="np").images)

    before = render()
    pipeline.load_lora_weights(result.output)
    assert not torch.allclose(before, render())


FLUX2 = "flux2+quickstart"
FLUX2_CONFIG: dict[str, Any] = {  # SimpleTuner's Flux.2 [klein] quickstart
    "--model_type": "lora",
    "--model_family": "flux2",
    "--model_flavour": "klein-9b",
    "--output_dir": "output/models",
    "--lora_rank": 16,
    "--learning_rate": "1e-4",
    "--base_model_precision": "int8-quanto",
    "--gradient_checkpointing": "true",
    "--validation_resolution": "1024x1024",
    "--validation_guidance": 1.0,
    "--validation_num_inference_steps": 4,
    "--max_train_steps": 1000,
    "--num_train_epochs": 0,
    "--data_backend_config": f"config/{FLUX2}/multidatabackend.json",
}


def test_simpletuner_flux2_config_passes_config_check(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                                        workspace: Workspace) -> None:
    configs = st.simpletuner_checkout(workspace)
    (workspace.root / "datasets" / "flux2" / "pseudo-camera-10k").mkdir(parents=True)
    datasets = [{**st.PIXART_DATASETS[0], "id": "flux2-images", "cache_dir_vae": "cache/vae/flux2"},
                {**st.PIXART_DATASETS[1], "cache_dir": "cache/text/flux2"}]
    st.write_environment(configs, FLUX2, FLUX2_CONFIG, datasets)
    st.write_environment(configs, "flux2+4b", {**FLUX2_CONFIG, "--model_flavour": "klein-4b"}, datasets)
    st.write_environment(configs, "flux2+dev", {**FLUX2_CONFIG, "--model_flavour": "dev", "--validation_guidance": 4.0,
                                                "--validation_num_inference_steps": 28,
                                                "--base_model_precision": "int4-quanto"}, datasets)
    for name, flavour in ((FLUX2, "klein-9b"), ("flux2+4b", "klein-4b"), ("flux2+dev", "dev")):
        result = run_cli("config", "check", "--env", name)
        assert result.returncode == 0, result.stderr
        assert f"Environment {name!r} is valid: flux2 ({flavour}), lora" in result.stdout


def test_demo_trains_flux2(run_cli: Callable[..., subprocess.CompletedProcess[str]], workspace: Workspace) -> None:
    from simpletuner.core.training.run_folders import run_folders

    result = run_cli("demo", "--family", "flux2", "--steps", "3", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    model_index = json.loads((workspace.root / "models" / "tiny-flux2" / "model_index.json").read_text())
    assert model_index["transformer"][1] == "Flux2Transformer2DModel"
    [run] = run_folders(workspace.root / "output" / "demo-flux2")
    lora = run.path / "pytorch_lora_weights.safetensors"
    assert f"Model: {lora}" in result.stdout and read_lora(lora, "transformer")[0]
