"""The SD3 family on a tiny random-weight SD 3.5 pipeline loaded through ``from_pretrained``: text as
``StableDiffusion3Pipeline.encode_prompt`` encodes it (with and without T5), SD3's noise-level sampling and loss
weighting schemes, a LoRA the stock pipeline loads, a resumed run equal to an uninterrupted one, SimpleTuner's SD3
config passing ``config check``, and the demo."""

from __future__ import annotations

import json
import math
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

from .helpers import image_batch, lora_overfit, make_family, stack

pytestmark = pytest.mark.timeout(300)
PROMPTS = ["a photo of a red cat", "a drawing of a green dog running across a yellow field at night"]


class Stop(Exception):
    """Raised by a listener to stop a run as a kill would."""


@pytest.fixture(scope="module")
def sd3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("sd3", tmp_path_factory.mktemp("tiny-sd3"))


@pytest.fixture(scope="module")
def family(registry: Registry) -> Any:
    return make_family(registry, "sd3", sd3_t5_max_tokens=16)


@pytest.fixture(scope="module")
def components(family: Any, sd3_folder: Path) -> dict[str, Any]:
    return family.load_components(str(sd3_folder), dtype=torch.float32, device="cpu")


def test_flavours_and_what_they_preset(registry: Registry) -> None:
    spec = registry.model_family("sd3")
    assert {f.name: f.pretrained for f in spec.flavours} == {
        "medium": "stabilityai/stable-diffusion-3.5-medium", "large": "stabilityai/stable-diffusion-3.5-large"}
    assert spec.flavour("large").settings["validation_guidance"] == 3.5


def test_text_matches_the_pipeline_with_and_without_t5(registry: Registry, family: Any, components: dict[str, Any],
                                                       sd3_folder: Path) -> None:
    from diffusers import StableDiffusion3Pipeline

    encoded = stack(family.encode_text(components, PROMPTS))
    pipeline = StableDiffusion3Pipeline.from_pretrained(sd3_folder)
    embeds, _, pooled, _ = pipeline.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False,
                                                  max_sequence_length=16, device=torch.device("cpu"))
    torch.testing.assert_close(encoded["prompt_embeds"], embeds)
    torch.testing.assert_close(encoded["pooled_prompt_embeds"], pooled)

    no_t5 = make_family(registry, "sd3", sd3_t5_max_tokens=16, sd3_use_t5=False)
    assert "text_encoder_3" not in no_t5.components and "text_encoder_3" not in no_t5.text_components
    assert no_t5.text_cache_settings() != family.text_cache_settings()
    clip_only = stack(no_t5.encode_text(components, PROMPTS))
    without = StableDiffusion3Pipeline.from_pretrained(sd3_folder, text_encoder_3=None, tokenizer_3=None)
    embeds, _, pooled, _ = without.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False,
                                                 max_sequence_length=16, device=torch.device("cpu"))
    torch.testing.assert_close(clip_only["pooled_prompt_embeds"], pooled)
    # what the transformer receives: the cached CLIP part, padded, then the pipeline's zeros in T5's place
    seen: dict[str, Any] = {}

    class Recorder(torch.nn.Module):
        config = pipeline.transformer.config

        def forward(self, **kwargs: Any) -> tuple[torch.Tensor]:
            seen.update(kwargs)
            return (kwargs["hidden_states"],)

    inputs = no_t5.training_inputs(torch.zeros(2, 16, 8, 8), clip_only, torch.Generator().manual_seed(0))
    no_t5.predict({"transformer": Recorder()}, inputs, clip_only)
    torch.testing.assert_close(seen["encoder_hidden_states"], embeds)


def test_latents_and_the_weighting_schemes(registry: Registry, family: Any, components: dict[str, Any]) -> None:
    from simpletuner.model_families.sd3.family import draw_sigmas

    pixels = image_batch(2, 64, 64)
    latents = family.encode_latents(components, pixels)
    vae = components["vae"]
    torch.testing.assert_close(latents, (vae.encode(pixels).latent_dist.mode() - 0.0609) * 1.5305)
    inputs = family.training_inputs(latents, {}, torch.Generator().manual_seed(3))
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
    sigmas = inputs["sigmas"].view(-1, 1, 1, 1)
    torch.testing.assert_close(inputs["target"], noise - latents)
    torch.testing.assert_close(inputs["hidden_states"], (1 - sigmas) * latents + sigmas * noise)
    torch.testing.assert_close(inputs["timestep"], inputs["sigmas"] * 1000)
    assert torch.equal(inputs["weights"], torch.ones(2))

    def many(scheme: str) -> torch.Tensor:
        options = registry.model_family("sd3").options(sd3_weighting_scheme=scheme)
        return draw_sigmas(20000, torch.Generator().manual_seed(0), scheme, options, 1.0)

    uniform, logit, mode = many("none"), many("logit_normal"), many("mode")
    assert abs(float(uniform.mean()) - 0.5) < 0.01 and float(uniform.std()) > 0.28
    assert abs(float(logit.mean()) - 0.5) < 0.01 and float(logit.std()) < 0.22  # concentrated in the middle
    assert float(((mode - 0.5).abs() < 0.25).float().mean()) > 0.55  # the mode scheme favours the middle too
    sqrt = make_family(registry, "sd3", sd3_weighting_scheme="sigma_sqrt")
    weighted = sqrt.training_inputs(latents, {}, torch.Generator().manual_seed(3))
    torch.testing.assert_close(weighted["weights"], weighted["sigmas"] ** -2)
    cosmap = make_family(registry, "sd3", sd3_weighting_scheme="cosmap")
    weighted = cosmap.training_inputs(latents, {}, torch.Generator().manual_seed(3))
    s = weighted["sigmas"]
    torch.testing.assert_close(weighted["weights"], 2 / (math.pi * (1 - 2 * s + 2 * s**2)))
    prediction = torch.zeros_like(latents)
    expected = (weighted["weights"] * ((prediction - weighted["target"]) ** 2).flatten(1).mean(1)).mean()
    torch.testing.assert_close(cosmap.loss(prediction, weighted), expected)


def test_lora_trains_and_loads_into_the_sd3_pipeline(family: Any, components: dict[str, Any], sd3_folder: Path,
                                                     tmp_path: Path) -> None:
    from types import SimpleNamespace

    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    from simpletuner.core.training.outputs import LORA_FILE, save_lora

    text = stack(family.encode_text(components, PROMPTS))
    latents = family.encode_latents(components, image_batch(2, 64, 64))
    transformer = SD3Transformer2DModel.from_pretrained(sd3_folder, subfolder="transformer")
    transformer.requires_grad_(False)
    losses = lora_overfit(family, transformer, latents, text, steps=100, lr=2e-2)
    assert losses[-1] < 0.7 * losses[0], losses
    save_lora(tmp_path / LORA_FILE, transformer, "transformer", SimpleNamespace(model_type="lora"), {})
    pipeline = StableDiffusion3Pipeline.from_pretrained(sd3_folder)

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                                         max_sequence_length=16, generator=torch.Generator().manual_seed(0),
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
        "model_family": "sd3", "model_flavour": "medium", "pretrained_model_name_or_path": str(model),
        "sd3_t5_max_tokens": 16, "lora_rank": 4, "lora_dropout": 0.0, "learning_rate": 1e-3,
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
                                                                   sd3_folder: Path) -> None:
    settings = dict(max_train_steps=6, checkpointing_steps=2, gradient_accumulation_steps=2,
                    caption_dropout_probability=0.3, lr_scheduler="cosine", lr_warmup_steps=2,
                    validation_prompt="a red circle", validation_steps=6, validation_resolution="64")
    straight = _train(workspace, _environment(workspace, sd3_folder, "straight", **settings))
    events = read_events(straight.run_dir / EVENTS_FILE)
    assert [e for e in events if e["event"] == "validation" and e.get("images")], "no validation images"
    name = _environment(workspace, sd3_folder, "stopped", **settings)

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


SD3 = "sd3+quickstart"
SD3_CONFIG: dict[str, Any] = {  # SimpleTuner's SD3 quickstart
    "--model_type": "lora",
    "--model_family": "sd3",
    "--model_flavour": "large",
    "--output_dir": "output/models",
    "--lora_rank": 16,
    "--learning_rate": "1e-4",
    "--base_model_precision": "int8-quanto",
    "--gradient_checkpointing": "true",
    "--validation_resolution": "1024x1024",
    "--validation_guidance": 3.0,
    "--validation_num_inference_steps": 28,
    "--sd3_t5_uncond_behaviour": "empty_string",
    "--max_train_steps": 1000,
    "--num_train_epochs": 0,
    "--data_backend_config": f"config/{SD3}/multidatabackend.json",
}


def test_simpletuner_sd3_config_passes_config_check(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                                        workspace: Workspace) -> None:
    configs = st.simpletuner_checkout(workspace)
    (workspace.root / "datasets" / "sd3" / "pseudo-camera-10k").mkdir(parents=True)
    datasets = [{**st.PIXART_DATASETS[0], "id": "sd3-images", "cache_dir_vae": "cache/vae/sd3"},
                {**st.PIXART_DATASETS[1], "cache_dir": "cache/text/sd3"}]
    st.write_environment(configs, SD3, SD3_CONFIG, datasets)
    medium = {**SD3_CONFIG, "--model_flavour": "medium", "--sd3_weighting_scheme": "cosmap", "--sd3_use_t5": False}
    st.write_environment(configs, "sd3+medium", medium, datasets)
    for name, flavour in ((SD3, "large"), ("sd3+medium", "medium")):
        result = run_cli("config", "check", "--env", name)
        assert result.returncode == 0, result.stderr
        assert f"Environment {name!r} is valid: sd3 ({flavour}), lora" in result.stdout
    st.write_environment(configs, "sd3+typo", {**medium, "--sd3_weighting_scheme": "logit-normal"}, datasets)
    refused = run_cli("config", "check", "--env", "sd3+typo")
    assert refused.returncode != 0 and "sd3_weighting_scheme" in refused.stderr and "logit_normal" in refused.stderr
    # zeros in place of a dropped caption's embeddings would train other unconditional inputs than the empty caption's
    zeros = {**SD3_CONFIG, "--sd3_clip_uncond_behaviour": "zero", "--sd3_t5_uncond_behaviour": "zero"}
    st.write_environment(configs, "sd3+zeros", zeros, datasets)
    refused = run_cli("config", "check", "--env", "sd3+zeros")
    assert refused.returncode != 0
    for encoders in ("CLIP", "T5"):
        assert (f"asks for 'zero' in place of a dropped caption's {encoders} embeddings, which this version does not "
                "do; remove the key or set empty_string") in refused.stderr


def test_demo_trains_sd3(run_cli: Callable[..., subprocess.CompletedProcess[str]], workspace: Workspace) -> None:
    from simpletuner.core.training.run_folders import run_folders

    result = run_cli("demo", "--family", "sd3", "--steps", "3", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    model_index = json.loads((workspace.root / "models" / "tiny-sd3" / "model_index.json").read_text())
    assert model_index["transformer"][1] == "SD3Transformer2DModel"
    [run] = run_folders(workspace.root / "output" / "demo-sd3")
    lora = run.path / "pytorch_lora_weights.safetensors"
    assert f"Model: {lora}" in result.stdout and read_lora(lora, "transformer")[0]
