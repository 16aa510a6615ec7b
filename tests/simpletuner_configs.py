"""SimpleTuner environments as its documentation and examples write them, for tests of loading them unchanged.

The workspace plays a SimpleTuner checkout: environments live in ``config/<name>/`` (names with '+', as in its
``examples`` folder), images in ``datasets/``, and every path in a config is relative to the checkout. The configs
follow SimpleTuner's quickstarts (FLUX.md, SANA.md, SIGMA.md), ``config/config.json.example`` and its examples
``flux.peft-lora``, ``flux.peft-lora+TREAD``, ``flux.peft-controlnet-lora`` and ``sana.lycoris-lokr``: keys with and
without ``--``, booleans and numbers as strings, SimpleTuner's family and flavour names, ``{model_family}``,
``{output_dir}`` and ``{id}`` in dataset paths. Environments with Hub datasets (``"type": "huggingface"``) are written
by ``tests/data_backends/test_huggingface_simpletuner_envs.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simpletuner.core.workspace import Workspace

FLUX = "flux.peft-lora+quickstart"
SANA = "sana.lycoris-lokr+ema"
PIXART = "pixart_sigma+full"
TREAD = "flux.peft-lora+TREAD"
CONTROLNET = "flux.peft-controlnet-lora"
REGULARISATION = "flux+regularisation"

FLUX_CONFIG: dict[str, Any] = {  # config/config.json.example with the FLUX quickstart's settings
    "--resume_from_checkpoint": "latest",
    "--data_backend_config": f"config/{FLUX}/multidatabackend.json",
    "--aspect_bucket_rounding": 2,
    "--seed": 42,
    "--minimum_image_size": 0,
    "--output_dir": "output/models",
    "--lora_type": "standard",
    "--max_train_steps": 10000,
    "--num_train_epochs": 0,
    "--checkpoint_step_interval": 500,
    "--checkpoints_total_limit": 5,
    "--hub_model_id": "simpletuner-lora",
    "--push_to_hub": "false",
    "--push_checkpoints_to_hub": "false",
    "--tracker_project_name": "lora-training",
    "--tracker_run_name": "simpletuner-lora",
    "--report_to": "none",
    "--model_type": "lora",
    "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
    "--model_family": "flux",
    "--model_flavour": "dev",
    "--train_batch_size": 1,
    "--gradient_checkpointing": "true",
    "--caption_dropout_probability": 0.1,
    "--resolution_type": "pixel_area",
    "--resolution": 1024,
    "--validation_seed": 42,
    "--validation_step_interval": 500,
    "--validation_resolution": "1024x1024",
    "--validation_guidance": 3.0,
    "--validation_guidance_rescale": "0.0",
    "--validation_num_inference_steps": "20",
    "--validation_prompt": "A photo-realistic image of a cat",
    "--mixed_precision": "bf16",
    "--optimizer": "adamw_bf16",
    "--learning_rate": "1e-4",
    "--lr_scheduler": "polynomial",
    "--lr_warmup_steps": 100,
    "--validation_torch_compile": "false",
    "--disable_benchmark": "false",
    "--base_model_precision": "int8-quanto",
    "--text_encoder_1_precision": "no_change",
    "--text_encoder_2_precision": "no_change",
    "--lora_rank": 16,
    "--max_grad_norm": 1.0,
    "--base_model_default_dtype": "bf16",
    "--flux_lora_target": "all",
    "--controlnet": "false",
    "--offload_during_startup": "true",
    "--user_prompt_library": "config/user_prompt_library.json",
}

FLUX_DATASETS: list[dict[str, Any]] = [  # the FLUX quickstart's, with the examples' placeholders
    {"id": "pseudo-camera-10k-flux", "type": "local", "crop": True, "crop_aspect": "square", "crop_style": "center",
     "resolution": 512, "minimum_image_size": 512, "maximum_image_size": 512, "target_downsample_size": 512,
     "resolution_type": "pixel_area", "cache_dir_vae": "cache/vae/{model_family}/{id}",
     "instance_data_dir": "datasets/pseudo-camera-10k", "disabled": False, "skip_file_discovery": "",
     "caption_strategy": "filename", "metadata_backend": "discovery", "repeats": 0},
    {"id": "dreambooth-subject", "type": "local", "crop": False, "resolution": 1024, "minimum_image_size": 1024,
     "maximum_image_size": 1024, "target_downsample_size": 1024, "resolution_type": "pixel_area",
     "cache_dir_vae": "cache/vae/{model_family}/{id}", "instance_data_dir": "datasets/dreambooth-subject",
     "caption_strategy": "instanceprompt", "instance_prompt": "the name of your subject goes here",
     "metadata_backend": "discovery", "repeats": 1000},
    {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
     "cache_dir": "cache/text/{model_family}", "disabled": False, "write_batch_size": 128},
]

SANA_CONFIG: dict[str, Any] = {  # the sana.lycoris-lokr example, EMA updated every step
    "aspect_bucket_rounding": 2,
    "base_model_precision": "no_change",
    "caption_dropout_probability": 0.1,
    "checkpoint_step_interval": 50,
    "checkpoints_total_limit": 5,
    "compress_disk_cache": True,
    "data_backend_config": f"config/{SANA}/multidatabackend.json",
    "delete_problematic_images": True,
    "disable_benchmark": False,
    "disable_bucket_pruning": True,
    "ema_validation": "comparison",
    "evaluation_type": "clip",
    "flow_schedule_shift": 3,
    "gradient_accumulation_steps": 1,
    "gradient_checkpointing": True,
    "gradient_checkpointing_interval": 1,
    "hub_model_id": "simpletuner-example-sana-lycoris-lokr",
    "learning_rate": 2e-5,
    "lora_alpha": 128,
    "lora_rank": 128,
    "lora_type": "lycoris",
    "lr_scheduler": "constant_with_warmup",
    "lr_warmup_steps": 100,
    "lycoris_config": f"config/{SANA}/lycoris_config.json",
    "max_grad_norm": 1,
    "max_train_steps": 100,
    "minimum_image_size": 0,
    "mixed_precision": "bf16",
    "model_family": "sana",
    "model_flavour": "sana1.0-1.6b-1024",
    "model_type": "lora",
    "num_train_epochs": 0,
    "optimizer": "adamw_bf16",
    "output_dir": "output/examples/sana.lycoris-lokr",
    "push_checkpoints_to_hub": False,
    "push_to_hub": False,
    "quantize_via": "cpu",
    "report_to": "none",
    "resolution": 1024,
    "resolution_type": "pixel_area",
    "resume_from_checkpoint": "latest",
    "seed": 42,
    "skip_file_discovery": False,
    "tracker_project_name": "lycoris-training",
    "tracker_run_name": "example-training-run",
    "train_batch_size": 4,
    "use_ema": True,
    "vae_batch_size": 1,
    "validation_guidance": 4.5,
    "validation_guidance_rescale": 0.0,
    "validation_lycoris_strength": 1.0,
    "validation_negative_prompt": "ugly, cropped, blurry, low-quality, mediocre average",
    "validation_num_inference_steps": 20,
    "validation_prompt": "🟫 is holding a sign that says hello world from sana",
    "validation_prompt_library": False,
    "validation_resolution": "1024x1024",
    "validation_seed": 42,
    "validation_steps": 50,
}

SANA_LYCORIS: dict[str, Any] = {  # the sana.lycoris-lokr example's
    "bypass_mode": True, "algo": "lokr", "multiplier": 1.0, "full_matrix": True, "linear_dim": 10000,
    "linear_alpha": 1, "factor": 4,
    "apply_preset": {"target_module": ["Attention", "FeedForward"],
                     "module_algo_map": {"FeedForward": {"factor": 4}, "Attention": {"factor": 2}}},
}

SANA_DATASETS: list[dict[str, Any]] = [  # multidatabackend-small-dreambooth-1024px.json, from a local folder
    {"id": "dreambooth-1024", "type": "local", "instance_data_dir": "datasets/{id}",
     "crop": True, "crop_style": "random", "crop_aspect": "square", "minimum_image_size": 256,
     "maximum_image_size": 1024, "target_downsample_size": 1024, "resolution": 1024, "resolution_type": "pixel_area",
     "metadata_backend": "discovery", "caption_strategy": "instanceprompt", "instance_prompt": "🟫",
     "cache_dir_vae": "{output_dir}/cache/vae/{model_family}/dreambooth-1024"},
    {"id": "alt-embed-cache", "dataset_type": "text_embeds", "default": True, "type": "local",
     "cache_dir": "cache/text/{model_family}"},
]

PIXART_CONFIG: dict[str, Any] = {  # the SIGMA quickstart's
    "model_type": "full",
    "use_bitfit": False,
    "pretrained_model_name_or_path": "pixart-alpha/pixart-sigma-xl-2-1024-ms",
    "model_family": "pixart_sigma",
    "model_flavour": "600M-1024",
    "output_dir": "output/models",
    "validation_resolution": "1024x1024,1280x768",
    "validation_guidance": 3.5,
    "data_backend_config": f"config/{PIXART}/multidatabackend.json",
}

PIXART_DATASETS: list[dict[str, Any]] = [  # the SIGMA quickstart's, its folder named by the family
    {"id": "pseudo-camera-10k-pixart", "type": "local", "crop": True, "crop_aspect": "square", "crop_style": "random",
     "resolution": 1.0, "minimum_image_size": 0.25, "maximum_image_size": 1.0, "target_downsample_size": 1.0,
     "resolution_type": "area", "cache_dir_vae": "cache/vae/pixart/pseudo-camera-10k",
     "instance_data_dir": "datasets/{model_family}/pseudo-camera-10k", "disabled": False,
     "skip_file_discovery": "", "caption_strategy": "filename", "metadata_backend": "discovery"},
    {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
     "cache_dir": "cache/text/pixart/pseudo-camera-10k", "disabled": False, "write_batch_size": 128},
]

TREAD_CONFIG: dict[str, Any] = {  # the flux.peft-lora+TREAD example's training keys
    "model_family": "flux", "model_type": "lora", "lora_type": "standard", "max_train_steps": 100,
    "num_train_epochs": 0, "controlnet": False, "grad_clip_method": "value", "disable_bucket_pruning": True,
    "tread_config": {"routes": [{"end_layer_idx": -2, "selection_ratio": 0.5, "start_layer_idx": 2}]},
}

CONTROLNET_CONFIG: dict[str, Any] = {  # the flux.peft-controlnet-lora example's training keys
    "model_family": "flux", "model_type": "lora", "lora_type": "standard", "max_train_steps": 100,
    "num_train_epochs": 0, "controlnet": True, "flux_lora_target": "controlnet",
    "data_backend_config": f"config/{CONTROLNET}/multidatabackend.json",
}

CONTROLNET_DATASETS: list[dict[str, Any]] = [  # multidatabackend-controlnet-128px.json, from a local folder
    {"id": "controlnet-128", "type": "local", "instance_data_dir": "datasets/pseudo-camera-10k", "crop": False,
     "crop_style": "random", "crop_aspect": "square", "minimum_image_size": 128, "repeats": 4, "resolution": 128,
     "maximum_image_size": 128, "target_downsample_size": 128, "resolution_type": "pixel_area",
     "caption_strategy": "instanceprompt", "instance_prompt": "minecraft",
     "cache_dir_vae": "cache/vae/{model_family}/controlnet-128",
     "conditioning": {"type": "canny", "conditioning_type": "controlnet", "captions": ["minecraft"]}},
    {"id": "alt-embed-cache", "dataset_type": "text_embeds", "default": True, "type": "local",
     "cache_dir": "cache/text/{model_family}"},
]


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")


def write_environment(configs: Path, name: str, config: dict[str, Any], datasets: list[dict[str, Any]] | None = None,
                      lycoris: dict[str, Any] | None = None) -> Path:
    """Write ``config/<name>/`` as SimpleTuner's documentation does."""
    folder = configs / name
    write_json(folder / "config.json", config)
    if datasets is not None:
        write_json(folder / "multidatabackend.json", datasets)
    if lycoris is not None:
        write_json(folder / "lycoris_config.json", lycoris)
    return folder


def simpletuner_checkout(workspace: Workspace, root: Path | None = None) -> Path:
    """Write a SimpleTuner checkout at ``root`` (the workspace's own folder if None) with the Flux, Sana and PixArt
    environments, a Flux one with regularisation data, a refused TREAD and ControlNet environment each, and the
    image folders their datasets name; point the workspace's configs folder at its ``config/``, which is
    returned."""
    root = root or workspace.root
    configs = root / "config"
    workspace.update_settings(configs_dir=str(configs))
    write_environment(configs, FLUX, FLUX_CONFIG, FLUX_DATASETS)
    write_environment(configs, SANA, SANA_CONFIG, SANA_DATASETS, SANA_LYCORIS)
    write_environment(configs, PIXART, PIXART_CONFIG, PIXART_DATASETS)
    write_environment(configs, TREAD, TREAD_CONFIG, FLUX_DATASETS)
    write_environment(configs, CONTROLNET, CONTROLNET_CONFIG, CONTROLNET_DATASETS)
    regularised = [dict(FLUX_DATASETS[0], is_regularisation_data=True), *FLUX_DATASETS[1:]]
    write_environment(configs, REGULARISATION, {**FLUX_CONFIG, "--data_backend_config":
                                                f"config/{REGULARISATION}/multidatabackend.json"}, regularised)
    write_json(configs / "user_prompt_library.json", {"nickname": "the prompt goes here"})
    for folder in ("pseudo-camera-10k", "dreambooth-subject", "dreambooth-1024", "pixart_sigma/pseudo-camera-10k"):
        (root / "datasets" / folder).mkdir(parents=True)
    return configs
