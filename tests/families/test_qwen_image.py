"""The Qwen-Image family on a tiny random-weight Qwen-Image pipeline loaded through ``from_pretrained``: text as
``QwenImagePipeline`` encodes it (prompt template, template tokens dropped), the VAE's latent normalisation, packing
and rectified flow, a LoRA the stock pipeline loads, a resumed run equal to an uninterrupted one, SimpleTuner's
Qwen-Image config passing ``config check``, and the demo."""

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

from .helpers import image_batch, lora_overfit, make_family, stack

pytestmark = pytest.mark.timeout(300)
PROMPTS = ["a photo of a red cat", "a drawing of a green dog running across a yellow field at night"]


class Stop(Exception):
    """Raised by a listener to stop a run as a kill would."""


@pytest.fixture(scope="module")
def qwen_image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("qwen_image", tmp_path_factory.mktemp("tiny-qwen-image"))


@pytest.fixture(scope="module")
def family(registry: Registry) -> Any:
    return make_family(registry, "qwen_image", qwen_image_max_tokens=128)


@pytest.fixture(scope="module")
def components(family: Any, qwen_image_folder: Path) -> dict[str, Any]:
    return family.load_components(str(qwen_image_folder), dtype=torch.float32, device="cpu")


def test_flavours_and_what_they_preset(registry: Registry) -> None:
    spec = registry.model_family("qwen_image")
    assert {f.name: f.pretrained for f in spec.flavours} == {"v1.0": "Qwen/Qwen-Image", "v2.0": "Qwen/Qwen-Image-2512"}


def test_text_matches_the_pipeline(family: Any, components: dict[str, Any], qwen_image_folder: Path) -> None:
    from diffusers import QwenImagePipeline

    encoded = stack(family.encode_text(components, PROMPTS))
    pipeline = QwenImagePipeline.from_pretrained(qwen_image_folder)
    embeds, mask = pipeline._get_qwen_prompt_embeds(list(PROMPTS), device=torch.device("cpu"))
    longest = embeds.shape[1]
    assert longest < 128 and torch.equal(encoded["attention_mask"][:, :longest], mask)
    assert not encoded["attention_mask"][:, longest:].any()
    torch.testing.assert_close(encoded["prompt_embeds"][:, :longest], embeds)

    # the transformer sees the same text as from the pipeline: padding past the longest caption is cut
    seen: dict[str, Any] = {}

    class Recorder(torch.nn.Module):
        def forward(self, **kwargs: Any) -> tuple[torch.Tensor]:
            seen.update(kwargs)
            return (kwargs["hidden_states"],)

    inputs = family.training_inputs(torch.zeros(2, 16, 8, 8), encoded, torch.Generator().manual_seed(0))
    family.predict({"transformer": Recorder()}, inputs, encoded)
    torch.testing.assert_close(seen["encoder_hidden_states"], embeds)
    assert torch.equal(seen["encoder_hidden_states_mask"], mask) and seen["img_shapes"] == [[(1, 4, 4)]] * 2


def test_latents_and_the_flow_recipe(family: Any, components: dict[str, Any]) -> None:
    from simpletuner.model_families.flux.family import pack_latents

    pixels = image_batch(2, 64, 64)
    latents = family.encode_latents(components, pixels)
    vae = components["vae"]
    raw = vae.encode(pixels[:, :, None]).latent_dist.mode()[:, :, 0]
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1)
    torch.testing.assert_close(latents, (raw - mean) / std)
    assert latents.shape == (2, 16, 8, 8)
    inputs = family.training_inputs(latents, {}, torch.Generator().manual_seed(3))
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
    sigmas = inputs["sigmas"].view(-1, 1, 1, 1)
    torch.testing.assert_close(inputs["target"], pack_latents(noise - latents))
    torch.testing.assert_close(inputs["hidden_states"], pack_latents((1 - sigmas) * latents + sigmas * noise))
    torch.testing.assert_close(inputs["timestep"], inputs["sigmas"])


def test_lora_trains_and_loads_into_the_qwen_image_pipeline(family: Any, components: dict[str, Any],
                                                            qwen_image_folder: Path, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from diffusers import QwenImagePipeline, QwenImageTransformer2DModel

    from simpletuner.core.training.outputs import LORA_FILE, save_lora

    text = stack(family.encode_text(components, PROMPTS))
    latents = family.encode_latents(components, image_batch(2, 64, 64))
    transformer = QwenImageTransformer2DModel.from_pretrained(qwen_image_folder, subfolder="transformer")
    transformer.requires_grad_(False)
    losses = lora_overfit(family, transformer, latents, text, steps=100, lr=2e-2)
    assert losses[-1] < 0.7 * losses[0], losses
    save_lora(tmp_path / LORA_FILE, transformer, "transformer", SimpleNamespace(model_type="lora"), {})
    pipeline = QwenImagePipeline.from_pretrained(qwen_image_folder)

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline("a red cat", height=64, width=64, num_inference_steps=2,
                                         generator=torch.Generator().manual_seed(0), output_type="np").images)

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
        "model_family": "qwen_image", "model_flavour": "v1.0", "pretrained_model_name_or_path": str(model),
        "qwen_image_max_tokens": 128, "lora_rank": 4, "lora_dropout": 0.0, "learning_rate": 1e-3,
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
                                                                   qwen_image_folder: Path) -> None:
    settings = dict(max_train_steps=6, checkpointing_steps=2, gradient_accumulation_steps=2,
                    caption_dropout_probability=0.3, lr_scheduler="cosine", lr_warmup_steps=2,
                    validation_prompt="a red circle", validation_steps=6, validation_resolution="64")
    straight = _train(workspace, _environment(workspace, qwen_image_folder, "straight", **settings))
    events = read_events(straight.run_dir / EVENTS_FILE)
    assert [e for e in events if e["event"] == "validation" and e.get("images")], "no validation images"
    name = _environment(workspace, qwen_image_folder, "stopped", **settings)

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


QWEN = "qwen_image+quickstart"
QWEN_CONFIG: dict[str, Any] = {  # SimpleTuner's Qwen-Image quickstart
    "--model_type": "lora",
    "--model_family": "qwen_image",
    "--model_flavour": "v1.0",
    "--output_dir": "output/models",
    "--lora_rank": 16,
    "--learning_rate": "1e-4",
    "--base_model_precision": "int8-quanto",
    "--gradient_checkpointing": "true",
    "--validation_resolution": "1024x1024",
    "--validation_guidance": 4.0,
    "--validation_num_inference_steps": 30,
    "--max_train_steps": 1000,
    "--num_train_epochs": 0,
    "--data_backend_config": f"config/{QWEN}/multidatabackend.json",
}


def test_simpletuner_qwen_image_config_passes_config_check(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                                        workspace: Workspace) -> None:
    configs = st.simpletuner_checkout(workspace)
    (workspace.root / "datasets" / "qwen_image" / "pseudo-camera-10k").mkdir(parents=True)
    datasets = [{**st.PIXART_DATASETS[0], "id": "qwen-images", "cache_dir_vae": "cache/vae/qwen_image"},
                {**st.PIXART_DATASETS[1], "cache_dir": "cache/text/qwen_image"}]
    st.write_environment(configs, QWEN, QWEN_CONFIG, datasets)
    st.write_environment(configs, "qwen_image+v2", {**QWEN_CONFIG, "--model_flavour": "v2.0"}, datasets)
    for name, flavour in ((QWEN, "v1.0"), ("qwen_image+v2", "v2.0")):
        result = run_cli("config", "check", "--env", name)
        assert result.returncode == 0, result.stderr
        assert f"Environment {name!r} is valid: qwen_image ({flavour}), lora" in result.stdout


def test_demo_trains_qwen_image(run_cli: Callable[..., subprocess.CompletedProcess[str]], workspace: Workspace) -> None:
    from simpletuner.core.training.run_folders import run_folders

    result = run_cli("demo", "--family", "qwen_image", "--steps", "3", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    model_index = json.loads((workspace.root / "models" / "tiny-qwen-image" / "model_index.json").read_text())
    assert model_index["transformer"][1] == "QwenImageTransformer2DModel"
    [run] = run_folders(workspace.root / "output" / "demo-qwen-image")
    lora = run.path / "pytorch_lora_weights.safetensors"
    assert f"Model: {lora}" in result.stdout and read_lora(lora, "transformer")[0]
