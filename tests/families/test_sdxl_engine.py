"""SDXL through the engine and the CLI on the tiny pipeline: a LoRA run feeds each image's size and crop to the UNet,
validates and saves a LoRA that ``load_lora_weights`` takes; a resumed run ends where an uninterrupted one does; a
full run saves a UNet folder; SimpleTuner's SDXL config passes ``config check`` while its SDXL-only keys stay
refused for other families; ``simpletuner demo --family sdxl`` trains."""

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
from simpletuner.core.training.outputs import read_lora
from simpletuner.core.training.run_folders import run_folders
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(300)


class Stop(Exception):
    """Raised by a listener to stop a run as a kill would."""


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("sdxl", tmp_path_factory.mktemp("tiny-sdxl-engine"))


def _environment(workspace: Workspace, model: Path, name: str, **overrides: Any) -> str:
    data_dir = workspace.datasets_dir / name
    make_demo_images(data_dir, 4)
    env_dir = workspace.configs_dir / name
    env_dir.mkdir(parents=True, exist_ok=True)
    (env_dir / "config.json").write_text(json.dumps({
        "model_family": "sdxl", "model_flavour": "base-1.0", "pretrained_model_name_or_path": str(model),
        "lora_rank": 4, "lora_dropout": 0.0, "learning_rate": 1e-3, "max_train_steps": 4, "num_train_epochs": 0,
        "train_batch_size": 2, "seed": 7, "resolution": 64, "resolution_type": "pixel", "mixed_precision": "no",
        "checkpointing_steps": 0, "output_dir": f"output/{name}", "report_to": "none", **overrides,
    }))
    (env_dir / "multidatabackend.json").write_text(json.dumps([
        {"id": "shapes", "instance_data_dir": str(data_dir), "caption_strategy": "textfile", "crop": True,
         "crop_aspect": "square", "crop_style": "corner", "cache_dir_vae": f"cache/{name}/vae"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": f"cache/{name}/text"},
    ]))
    return name


def _train(workspace: Workspace, name: str, listeners: list[Any] | None = None) -> Any:
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.plugins import Registry
    from simpletuner.core.training.run import train

    registry = Registry()
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry)
    return train(loaded, workspace, registry, listeners=listeners)


def _events(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_events(run_dir / EVENTS_FILE) if e["event"] == kind]


def test_a_lora_run_conditions_on_each_image_and_loads_into_the_pipeline(
        workspace: Workspace, sdxl_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionXLPipeline
    from PIL import Image

    from simpletuner.model_families.sdxl.family import SDXLFamily

    seen: list[torch.Tensor] = []
    original = SDXLFamily.training_inputs

    def spy(self: Any, latents: Any, text: Any, generator: Any, geometry: Any = None) -> Any:
        seen.append(geometry)
        return original(self, latents, text, generator, geometry=geometry)

    monkeypatch.setattr(SDXLFamily, "training_inputs", spy)
    name = _environment(workspace, sdxl_folder, "lora", validation_prompt="a red circle", validation_steps=0,
                        validation_resolution="64", validation_num_inference_steps=2)
    result = _train(workspace, name)
    losses = [e["loss"] for e in _events(result.run_dir, "step")]
    assert len(losses) == 4 and all(loss == loss for loss in losses)
    # each sample's own size, the corner crop's top-left (0, 0) and its 64 px bucket
    sizes = {Image.open(p).size for p in (workspace.datasets_dir / name).glob("*.png")}
    rows = {tuple(row) for geometry in seen for row in geometry.tolist()}
    assert rows == {(h, w, 0, 0, 64, 64) for w, h in sizes}
    validations = _events(result.run_dir, "validation")
    assert validations and validations[-1]["images"], _events(result.run_dir, "validation_failed")
    state, _ = read_lora(result.output, "unet")
    assert state and all(".lora_A." in k or ".lora_B." in k for k in state)

    pipeline = StableDiffusionXLPipeline.from_pretrained(sdxl_folder)

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline("a red circle", height=64, width=64, num_inference_steps=2,
                                         generator=torch.Generator().manual_seed(0), output_type="np").images)

    before = render()
    pipeline.load_lora_weights(str(result.output.parent))
    assert not torch.allclose(before, render())


def test_resume_reaches_the_uninterrupted_weights(workspace: Workspace, sdxl_folder: Path) -> None:
    settings = dict(max_train_steps=6, checkpointing_steps=2, train_batch_size=1, gradient_accumulation_steps=2,
                    caption_dropout_probability=0.3, lr_scheduler="cosine", lr_warmup_steps=2, snr_gamma=5.0,
                    offset_noise=True, noise_offset_probability=0.5)
    straight = _train(workspace, _environment(workspace, sdxl_folder, "straight", **settings))
    name = _environment(workspace, sdxl_folder, "stopped", **settings)

    def stop_after_checkpoint_4(event: dict[str, Any]) -> None:
        if event["event"] == "checkpoint_saved" and event["step"] == 4:
            raise Stop

    with pytest.raises(Stop):
        _train(workspace, name, listeners=[stop_after_checkpoint_4])
    config_path = workspace.configs_dir / name / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "resume_from_checkpoint": "latest"}))
    resumed = _train(workspace, name)
    assert [e["step"] for e in _events(resumed.run_dir, "step")] == [5, 6]
    expected, _ = read_lora(straight.output, "unet")
    actual, _ = read_lora(resumed.output, "unet")
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_a_full_run_saves_a_unet_the_pipeline_loads(workspace: Workspace, sdxl_folder: Path) -> None:
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    result = _train(workspace, _environment(workspace, sdxl_folder, "full", model_type="full", max_train_steps=2,
                                            learning_rate=1e-4))
    assert result.output == result.run_dir / "unet"
    unet = UNet2DConditionModel.from_pretrained(result.output)
    base = UNet2DConditionModel.from_pretrained(sdxl_folder, subfolder="unet")
    assert any(not torch.equal(a, b) for a, b in zip(unet.state_dict().values(), base.state_dict().values(),
                                                         strict=True))
    pipeline = StableDiffusionXLPipeline.from_pretrained(sdxl_folder, unet=unet)
    assert pipeline("a cat", height=64, width=64, num_inference_steps=1, output_type="np").images.shape[0] == 1
    finished = _events(result.run_dir, "finished")[-1]
    assert 'unet = UNet2DConditionModel.from_pretrained(' in finished["usage"]
    assert "StableDiffusionXLPipeline.from_pretrained(" in finished["usage"] and "unet=unet" in finished["usage"]


SDXL = "sdxl+quickstart"
SDXL_CONFIG: dict[str, Any] = {  # the SDXL quickstart's, with SimpleTuner's SDXL training keys
    "--model_type": "lora",
    "--model_family": "sdxl",
    "--model_flavour": "base-1.0",
    "--output_dir": "output/models",
    "--validation_resolution": "1024x1024,1280x768",
    "--validation_guidance": 3.4,
    "--gradient_checkpointing": "true",
    "--learning_rate": "1e-4",
    "--pretrained_vae_model_name_or_path": "madebyollin/sdxl-vae-fp16-fix",
    "--vae_dtype": "bf16",
    "--snr_gamma": 5,
    "--offset_noise": "true",
    "--noise_offset": 0.05,
    "--base_model_precision": "int8-quanto",
    "--text_encoder_1_precision": "no_change",
    "--text_encoder_2_precision": "no_change",
    "--max_train_steps": 1000,
    "--num_train_epochs": 0,
    "--data_backend_config": f"config/{SDXL}/multidatabackend.json",
}
SDXL_DATASETS = [{**st.PIXART_DATASETS[0], "id": "pseudo-camera-10k-sdxl",
                  "cache_dir_vae": "cache/vae/sdxl/pseudo-camera-10k"},
                 {**st.PIXART_DATASETS[1], "cache_dir": "cache/text/sdxl/pseudo-camera-10k"}]


def test_simpletuner_sdxl_config_passes_and_its_keys_stay_refused_elsewhere(
        run_cli: Callable[..., subprocess.CompletedProcess[str]], workspace: Workspace) -> None:
    configs = st.simpletuner_checkout(workspace)
    (workspace.root / "datasets" / "sdxl" / "pseudo-camera-10k").mkdir(parents=True)
    st.write_environment(configs, SDXL, SDXL_CONFIG, SDXL_DATASETS)
    velocity = {**SDXL_CONFIG, "--prediction_type": "v_prediction", "--rescale_betas_zero_snr": True}
    st.write_environment(configs, "sdxl+velocity", velocity, SDXL_DATASETS)
    flux = {**st.FLUX_CONFIG, "--snr_gamma": 5, "--noise_offset": 0.05, "--prediction_type": "epsilon"}
    st.write_environment(configs, "flux+snr", flux, st.FLUX_DATASETS)
    st.write_environment(configs, "flux+offset", {**st.FLUX_CONFIG, "--noise_offset": 0.05}, st.FLUX_DATASETS)
    own_unet = {**SDXL_CONFIG, "--pretrained_unet_model_name_or_path": "someone/sdxl-finetune",
                "--pretrained_unet_subfolder": "unet"}
    st.write_environment(configs, "sdxl+own-unet", own_unet, SDXL_DATASETS)
    for name in (SDXL, "sdxl+velocity"):
        result = run_cli("config", "check", "--env", name)
        assert result.returncode == 0, result.stderr
        assert f"Environment {name!r} is valid: sdxl (base-1.0), lora, 1 image dataset(s)" in result.stdout
    refused = run_cli("config", "check", "--env", "flux+snr")
    assert refused.returncode != 0
    assert ("$.snr_gamma: 5 asks for Min-SNR loss weighting, which this version does not do; remove the key or set "
            "0 (only the sdxl family trains with it)") in refused.stderr
    assert "$.prediction_type: \"epsilon\" asks for the prediction type 'epsilon', which this version does not do" \
        in refused.stderr
    refused = run_cli("config", "check", "--env", "sdxl+own-unet")
    assert refused.returncode != 0
    assert ("$.pretrained_unet_model_name_or_path: \"someone/sdxl-finetune\" asks for a UNet from "
            "'someone/sdxl-finetune', which this version does not do; put it in the unet/ folder of a pipeline folder "
            "and set pretrained_model_name_or_path to that folder") in refused.stderr
    assert "pretrained_unet_subfolder" not in refused.stderr  # "unet" is where a pipeline keeps it anyway
    warned = run_cli("config", "check", "--env", "flux+offset")
    assert warned.returncode == 0, warned.stderr
    assert ("warning: noise_offset: a SimpleTuner option that has no effect here; remove it to silence this "
            "warning") in warned.stderr.splitlines()


def test_demo_trains_sdxl(run_cli: Callable[..., subprocess.CompletedProcess[str]], workspace: Workspace) -> None:
    result = run_cli("demo", "--family", "sdxl", "--steps", "3", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    model_index = json.loads((workspace.root / "models" / "tiny-sdxl" / "model_index.json").read_text())
    assert model_index["unet"][1] == "UNet2DConditionModel"
    [run] = run_folders(workspace.root / "output" / "demo-sdxl")
    lora = run.path / "pytorch_lora_weights.safetensors"
    assert f"Model: {lora}" in result.stdout and read_lora(lora, "unet")[0]
