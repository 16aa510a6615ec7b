"""A SimpleTuner checkout's environments through the CLI, as a user migrating would run it: listed ('+' names and
folders that cannot be loaded, with the reason), checked (Flux, Sana and PixArt as SimpleTuner documents them load
unchanged, keys without effect warn), and keys that change what is trained refused by name unless left at their
default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import simpletuner_configs as st

from simpletuner.core.config import load_environment
from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def configs(workspace: Workspace) -> Path:
    return st.simpletuner_checkout(workspace)


def check(run_cli, name: str):  # type: ignore[no-untyped-def]
    return run_cli("config", "check", "--env", name)


def test_every_folder_is_listed_and_unloadable_ones_say_why(run_cli, configs: Path) -> None:  # type: ignore[no-untyped-def]
    st.write_environment(configs, "my pixart", st.PIXART_CONFIG)
    st.write_environment(configs / "examples", "kontext.peft-lora", {"model_family": "flux"})
    listed = run_cli("env", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row["error"] for row in json.loads(listed.stdout)}
    assert {name: rows[name] for name in (st.FLUX, st.SANA, st.PIXART, st.TREAD, st.CONTROLNET)} == dict.fromkeys(
        (st.FLUX, st.SANA, st.PIXART, st.TREAD, st.CONTROLNET))
    assert "rename the folder (e.g. to 'my-pixart')" in rows["my pixart"]
    assert "nested in a folder" in rows["examples/kontext.peft-lora"]


@pytest.mark.parametrize(("name", "summary"), [
    (st.FLUX, "flux (dev), lora, 2 image dataset(s)"),
    (st.SANA, "sana (sana1.0-1.6b-1024), lora, 1 image dataset(s)"),
    (st.PIXART, "pixart_sigma (600M-1024), full, 1 image dataset(s)"),
    (st.REGULARISATION, "flux (dev), lora, 2 image dataset(s)"),  # one of them regularisation data
])
def test_documented_environments_pass_config_check(run_cli, configs: Path, name: str, summary: str) -> None:  # type: ignore[no-untyped-def]
    result = check(run_cli, name)
    assert result.returncode == 0, result.stderr
    assert f"Environment {name!r} is valid: {summary}" in result.stdout


def test_keys_without_effect_still_warn(run_cli, configs: Path) -> None:  # type: ignore[no-untyped-def]
    warnings = check(run_cli, st.FLUX).stderr.splitlines()
    assert "warning: disable_benchmark: a SimpleTuner option that has no effect here; remove it to silence this " \
           "warning" in warnings
    assert "warning: offload_during_startup: a SimpleTuner option that has no effect here; remove it to silence " \
           "this warning" in warnings
    assert any("(id 'text-embeds').write_batch_size: a SimpleTuner option that has no effect here" in line
               for line in warnings)
    # keys that change what is trained, left at their default, load without a word: nothing differs
    assert not any("controlnet" in line or "flux_lora_target" in line for line in warnings)


@pytest.mark.parametrize(("name", "refused"), [
    (st.TREAD, {"$.tread_config": "asks for TREAD token routing"}),  # its grad_clip_method value acts
    (st.CONTROLNET, {"$.controlnet: true asks for ControlNet training": "remove the key or set it to false",
                     "$.flux_lora_target": "use lora_target_preset",
                     "(id 'controlnet-128').conditioning": "trains on images and their captions only"}),
])
def test_simpletuner_examples_that_train_something_else_are_refused(run_cli, configs: Path, name: str,  # type: ignore[no-untyped-def]
                                                                    refused: dict[str, str]) -> None:
    result = check(run_cli, name)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == len(refused), result.stderr
    for key, advice in refused.items():
        assert any(key in line and advice in line for line in problems), (key, result.stderr)


WHAT_IS_TRAINED = {  # key: (a value asking for something, its default)
    "use_bitfit": (True, False),
    "snr_gamma": (5.0, None),
    "loss_type": ("huber", "l2"),
    "timestep_bias_strategy": ("later", "none"),
    "offset_noise": (True, False),
    "train_text_encoder": (True, False),
    "prediction_type": ("v_prediction", None),
    "optimizer_config": ("beta1=0.9,weight_decay=0.1", ""),
    "flux_fast_schedule": (True, False),
    "input_perturbation": (0.1, 0.0),
    "use_soft_min_snr": (True, False),
    "quantize_activations": (True, False),
    "pretrained_unet_subfolder": ("unet-v2", "unet"),
}


def test_each_key_that_changes_training_is_named_with_the_way_forward(run_cli, configs: Path) -> None:  # type: ignore[no-untyped-def]
    asked = {**st.FLUX_CONFIG, "--use_ema": "true", **{f"--{k}": v for k, (v, _) in WHAT_IS_TRAINED.items()}}
    st.write_environment(configs, "flux+everything", asked, st.FLUX_DATASETS)
    result = check(run_cli, "flux+everything")
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - config.json: $.")]
    assert sorted(line.split(":")[1].strip()[2:] for line in problems) == sorted(WHAT_IS_TRAINED)
    assert all("which this version does not do; " in line for line in problems)

    defaults = {**st.FLUX_CONFIG, "--use_ema": "true", **{f"--{k}": d for k, (_, d) in WHAT_IS_TRAINED.items()}}
    st.write_environment(configs, "flux+defaults", defaults, st.FLUX_DATASETS)
    assert check(run_cli, "flux+defaults").returncode == 0


@pytest.mark.parametrize(("key", "value", "message"), [
    ("disable", True, None),  # SimpleTuner's spelling of disabled
    ("slider_strength", 0.5, "asks for slider training"),
    ("caption_shuffle", {"enable": True, "count": 3, "seed": 42, "split_on": "comma", "position_start": 1,
                         "include_original": True}, None),  # as SimpleTuner documents it
    ("caption_shuffle", {"enable": True, "split_on": "semicolon"},
     "caption_shuffle: split_on: expected one of comma, space, period, got 'semicolon'"),
    ("prepend_instance_prompt", True,
     "dataset 'pseudo-camera-10k-flux': prepend_instance_prompt needs instance_prompt"),
    ("target_downsample_size", 768, "downsampled to 768 before cropping to resolution 512"),
    ("conditioning_data", "controlnet-128", "asks for a conditioning dataset"),
    ("start_step", 300, "asks for this dataset only from or until a point of the training"),
])
def test_dataset_keys_that_change_training(run_cli, configs: Path, key: str, value, message) -> None:  # type: ignore[no-untyped-def]
    first = {k: v for k, v in st.FLUX_DATASETS[0].items() if k != "disabled"}
    datasets = [dict(first, **{key: value}), *st.FLUX_DATASETS[1:]]
    st.write_environment(configs, "flux+dataset", {**st.FLUX_CONFIG, "--data_backend_config": None}, datasets)
    result = check(run_cli, "flux+dataset")
    if message is None:
        assert result.returncode == 0, result.stderr
        assert f").{key}:" not in result.stderr  # acted on: no "has no effect" warning
        if key == "disable":
            assert "flux (dev), lora, 1 image dataset(s)" in result.stdout  # the disabled dataset is left out
    else:
        assert result.returncode == 1
        assert message in result.stderr
        assert f"(id 'pseudo-camera-10k-flux').{key}: " in result.stderr or "dataset 'pseudo-camera" in message


def test_placeholders_expand_as_in_simpletuner(workspace: Workspace, configs: Path) -> None:
    registry = Registry()
    store = EnvironmentStore(workspace.configs_dir)
    sana = load_environment(workspace, store, st.SANA, registry)
    assert sana.datasets[0].instance_data_dir == "datasets/dreambooth-1024"
    assert sana.datasets[0].cache_dir_vae == "output/examples/sana.lycoris-lokr/cache/vae/sana/dreambooth-1024"
    pixart = load_environment(workspace, store, st.PIXART, registry)
    assert pixart.datasets[0].instance_data_dir == "datasets/pixart_sigma/pseudo-camera-10k"
    flux = load_environment(workspace, store, st.FLUX, registry)
    assert [d.cache_dir_vae for d in flux.datasets[:2]] == ["cache/vae/flux/pseudo-camera-10k-flux",
                                                             "cache/vae/flux/dreambooth-subject"]
    assert flux.datasets_path == configs / st.FLUX / "multidatabackend.json"  # relative to the checkout


def test_paths_are_relative_to_a_checkout_outside_the_workspace(run_cli, workspace: Workspace,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    checkout = tmp_path / "SimpleTuner"
    configs = st.simpletuner_checkout(workspace, checkout)
    for name in (st.FLUX, st.SANA, st.PIXART):
        assert check(run_cli, name).returncode == 0, name
    flux = load_environment(workspace, EnvironmentStore(configs), st.FLUX, Registry())
    assert flux.datasets_path == configs / st.FLUX / "multidatabackend.json"
    assert workspace.resolve_config_path(flux.datasets[0].instance_data_dir or "", flux.environment.path) == (
        checkout / "datasets" / "pseudo-camera-10k")


def test_environment_variables_are_not_expanded(run_cli, configs: Path) -> None:  # type: ignore[no-untyped-def]
    datasets = [dict(st.FLUX_DATASETS[0], cache_dir_vae="cache/{env:HOME}/vae"), *st.FLUX_DATASETS[1:]]
    st.write_environment(configs, "flux+env", {**st.FLUX_CONFIG, "--data_backend_config": None}, datasets)
    result = check(run_cli, "flux+env")
    assert result.returncode == 1
    assert "cache_dir_vae: {env:HOME} (an environment variable) is not expanded here" in result.stderr


def test_model_card_private_sets_the_hub_publishers_privacy() -> None:
    from simpletuner.core.config import Layer, build_schema

    config, warnings = build_schema(Registry()).load(
        [Layer("env:t", {"--model_card_private": "false", "--push_to_hub": "true"})], own_source="env:t")
    assert config.get("hub_private") is False and warnings == []
    assert config.to_file_dict() == {"--hub_private": False, "--push_to_hub": True}


def test_the_migration_guide_names_every_refused_key() -> None:
    from simpletuner.core.config.refusals import REFUSED_DATASET_KEYS, REFUSED_KEYS

    guide = (Path(__file__).parents[2] / "docs" / "migrating.md").read_text(encoding="utf-8")
    assert sorted(key for key in REFUSED_KEYS | REFUSED_DATASET_KEYS if f"`{key}`" not in guide) == []


def test_lora_format_comfyui_saves_the_layout_comfyui_loads(run_cli, configs: Path,  # type: ignore[no-untyped-def]
                                                            workspace: Workspace) -> None:
    st.write_environment(configs, "flux+comfyui", {**st.FLUX_CONFIG, "--lora_format": "comfyui"}, st.FLUX_DATASETS)
    result = check(run_cli, "flux+comfyui")
    assert result.returncode == 0, result.stderr
    assert "lora_format" not in result.stderr  # it is acted on, so not "without effect"
    flux = load_environment(workspace, EnvironmentStore(configs), "flux+comfyui", Registry())
    assert flux.config.core.lora_save_formats == ["kohya"]

    sana = {**st.SANA_CONFIG, "lora_format": "comfyui", "lora_type": "standard"}
    st.write_environment(configs, "sana+comfyui", sana, st.SANA_DATASETS)
    refused = check(run_cli, "sana+comfyui")
    assert refused.returncode == 1
    assert "$.lora_format: 'comfyui' (read as lora_save_formats: [\"kohya\"]): sana has no 'kohya' LoRA layout" \
        in refused.stderr


def test_options_of_another_family_warn_and_simpletuner_s_model_revision_is_refused() -> None:
    from simpletuner.core.config import Layer, build_schema
    from simpletuner.core.errors import ConfigError

    schema = build_schema(Registry())
    written = {"model_family": "sana", "flux_t5_max_tokens": 256, "aws_region_name": "eu-west-1", "revision": "main"}
    config, warnings = schema.load([Layer("env:t", written)], own_source="env:t")
    assert warnings == [
        "flux_t5_max_tokens: has no effect in this config (only the flux family trains with it); remove it to "
        "silence this warning",
    ]  # revision "main" asks for the weights as they are: a refused key at its default loads without a word
    # a dataset-entry option in a config is the default of every dataset of its backend
    assert config.get("aws_region_name") == "eu-west-1"
    assert config.to_file_dict() == written  # kept as written when the config is saved again
    with pytest.raises(ConfigError) as refused:
        schema.load([Layer("env:t", {**written, "revision": "fp16"})], own_source="env:t")
    assert refused.value.problems == [
        "$.revision: \"fp16\" asks for the Hub revision 'fp16' of the weights, which this version does not do; "
        "download that revision and set pretrained_model_name_or_path to its folder (here it is a key of huggingface "
        "dataset entries, set on the dataset in the datasets file)"]


def test_clipping_by_value_learning_rate_scaling_lr_end_and_optimizer_betas_act() -> None:
    from simpletuner.core.config import Layer, build_schema
    from simpletuner.core.config.checks import check_config
    from simpletuner.core.distributed import distributed_problems

    schema = build_schema(Registry())
    written = {"--optimizer_beta1": 0.8, "--optimizer_beta2": None, "--grad_clip_method": "value",
               "--lr_scale": "true", "--lr_scale_sqrt": True}
    config, warnings = schema.load([Layer("env:t", written)], own_source="env:t")
    core = config.core
    assert (core.adam_beta1, core.adam_beta2, core.grad_clip_method, core.lr_scale, core.lr_scale_sqrt) == (
        0.8, 0.999, "value", True, True)  # SimpleTuner's null beta is its default
    assert warnings == []
    assert distributed_problems(core, quantized=False) == []
    sharded, _ = schema.load([Layer("env:t", {**written, "deepspeed_config": "zero2"})], own_source="env:t")
    assert [p for p in distributed_problems(sharded.core, quantized=False) if "grad_clip_method" in p] == [
        "$.grad_clip_method: DeepSpeed and FSDP2 clip the gradients' total norm only; set grad_clip_method: norm "
        "(max_grad_norm is then the norm) or train without sharding"]
    alone, _ = schema.load([Layer("env:t", {"lr_scale_sqrt": True})], own_source="env:t")
    assert "lr_scale_sqrt: no effect without lr_scale; set lr_scale: true to scale learning_rate" in check_config(
        alone, Registry())[1]
    ending, _ = schema.load([Layer("env:t", {"lr_scheduler": "polynomial", "learning_rate": 1e-4, "lr_end": 1e-3})],
                            own_source="env:t")
    assert "$.lr_end: a polynomial schedule decays from learning_rate (0.0001) to lr_end (0.001); set lr_end below " \
           "learning_rate" in check_config(ending, Registry())[0]
