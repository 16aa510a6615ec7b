"""SimpleTuner's Flux, Sana and PixArt environments with their datasets on the Hugging Face Hub, written as its
dataloader documentation writes a ``huggingface`` entry (the ``huggingface`` object with its column keys and
filters), through the CLI: listed, passed by ``config check`` when the dataset is a parquet copy in the checkout,
and, offline without a downloaded copy, refused on one line naming the dataset and what to do."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import simpletuner_configs as st
from hf_helpers import rows, use_datasets_cache, write_parquet

from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(180)

PARQUET_COPY = "datasets/pseudo-camera-10k-parquet"


def hub_datasets(dataset_name: str) -> list[dict[str, Any]]:
    """A ``huggingface`` image entry as SimpleTuner documents it, and the text-embeds entry."""
    return [
        {"id": "pseudo-camera-10k", "type": "huggingface", "dataset_name": dataset_name, "split": "train",
         "caption_strategy": "huggingface", "metadata_backend": "huggingface", "image_column": "image",
         "resolution": 64, "resolution_type": "pixel", "minimum_image_size": 32,
         "cache_dir_vae": "cache/vae/{model_family}/{id}",
         "huggingface": {"caption_column": "text", "fallback_caption_column": "meta.alt", "width_column": "width",
                         "height_column": "height", "filter_func": {"min_width": 64, "min_height": 64}}},
        {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": "cache/text/{model_family}"},
    ]


ENVIRONMENTS = {  # name: (config, LyCORIS config, summary)
    "flux.peft-lora+hub": (st.FLUX_CONFIG, None, "flux (dev), lora"),
    "sana.lycoris-lokr+hub": (st.SANA_CONFIG, st.SANA_LYCORIS, "sana (sana1.0-1.6b-1024), lora"),
    "pixart_sigma+hub": (st.PIXART_CONFIG, None, "pixart_sigma (600M-1024), full"),
}


@pytest.fixture
def checkout(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """SimpleTuner's checkout with a parquet copy of the dataset, and an offline environment without a Hub copy."""
    configs = st.simpletuner_checkout(workspace)
    write_parquet(workspace.root / PARQUET_COPY, rows(3))
    env = {**use_datasets_cache(monkeypatch, tmp_path / "datasets-cache"), "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "hub-cache"), "HF_TOKEN": ""}
    return configs, env


def _write(configs: Path, name: str, dataset_name: str) -> None:
    config, lycoris, _ = ENVIRONMENTS[name]
    dash = "--" if any(key.startswith("--") for key in config) else ""
    config = {key: value for key, value in config.items() if key.lstrip("-") != "data_backend_config"}
    config[f"{dash}data_backend_config"] = f"config/{name}/multidatabackend.json"
    st.write_environment(configs, name, config, hub_datasets(dataset_name), lycoris)


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_hub_dataset_environments_are_listed_and_pass_config_check(
        run_cli: Callable[..., Any], checkout: tuple[Path, dict[str, str]], name: str) -> None:
    configs, env = checkout
    _write(configs, name, PARQUET_COPY)
    listed = {row["name"]: row["error"] for row in json.loads(run_cli("env", "list", "--json", env=env).stdout)}
    assert name in listed and listed[name] is None
    result = run_cli("config", "check", "--env", name, env=env)
    assert result.returncode == 0, result.stderr
    assert f"Environment {name!r} is valid: {ENVIRONMENTS[name][2]}, 1 image dataset(s)" in result.stdout


def test_offline_a_hub_dataset_never_downloaded_is_the_only_problem(
        run_cli: Callable[..., Any], checkout: tuple[Path, dict[str, str]]) -> None:
    configs, env = checkout
    _write(configs, "flux.peft-lora+hub", "bghira/pseudo-camera-10k")
    result = run_cli("config", "check", "--env", "flux.peft-lora+hub", env=env)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, result.stderr
    assert "bghira/pseudo-camera-10k" in problems[0]
    assert "HF_HUB_OFFLINE is set and the dataset was not downloaded" in problems[0]
