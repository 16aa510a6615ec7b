"""Training from a huggingface dataset entry written as SimpleTuner writes one: rows become images and captions,
caches stay on this machine, a new version of the dataset re-encodes only the rows it changed, and ``config check``
accepts the entry and reports a missing column on one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import png, rows, use_datasets_cache, write_parquet
from s3_helpers import tiny_config, write_env

from simpletuner.core.workspace import Workspace

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("fresh_accelerate_state")]


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private ``datasets`` cache; the environment of child processes using it."""
    return use_datasets_cache(monkeypatch, tmp_path / "hf-datasets-cache")


def _train(workspace: Workspace, name: str) -> Any:
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.plugins import Registry
    from simpletuner.core.training.run import train

    registry = Registry()
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry)
    return train(loaded, workspace, registry)


def _entries(dataset: Path | str, **overrides: Any) -> list[dict[str, Any]]:
    """A SimpleTuner-style huggingface entry and a local text-embeds entry."""
    pets = {"id": "pets", "type": "huggingface", "dataset_name": str(dataset), "split": "train",
            "caption_strategy": "huggingface", "metadata_backend": "huggingface", "image_column": "image",
            "caption_column": "text", "fallback_caption_column": "meta.alt", "width_column": "width",
            "height_column": "height", "cache_dir_vae": "cache/vae/pets", **overrides}
    return [pets, {"id": "embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
                   "cache_dir": "cache/text"}]


def test_training_from_rows_reencodes_only_changed_rows(workspace: Workspace, tiny_flux: Path,
                                                        hf_env: dict[str, str], tmp_path: Path) -> None:
    dataset = tmp_path / "pets"
    items = rows(4)
    write_parquet(dataset, items)
    write_env(workspace.configs_dir, "hfrun", tiny_config(tiny_flux, "hfrun"), _entries(dataset))
    first = _train(workspace, "hfrun")
    _assert_loads_into_the_pipeline(first.output, tiny_flux)
    latents, texts = workspace.root / "cache" / "vae" / "pets", workspace.root / "cache" / "text"
    assert _files(latents) == 4
    assert _files(texts) == 5  # four captions (one from the fallback column) and the empty one

    # a new version of the dataset: one image and one caption changed
    items[1]["image"] = {"bytes": png(128, 128, (255, 0, 0)), "path": None}
    items[3]["text"] = "a changed caption"
    write_parquet(dataset, items)
    second = _train(workspace, "hfrun")
    assert second.encoder_calls == {"latents": 1, "text": 1}
    assert (_files(latents), _files(texts)) == (5, 6)  # one new latent and one new embedding, nothing else


def _assert_loads_into_the_pipeline(lora: Path, base: Path) -> None:
    """The trained LoRA loads into the stock pipeline through diffusers' loader, weights unchanged."""
    import torch
    from diffusers import FluxPipeline
    from peft import get_peft_model_state_dict

    from simpletuner.core.training.outputs import read_lora

    saved, _ = read_lora(lora, "transformer")
    pipeline = FluxPipeline.from_pretrained(str(base), dtype=torch.float32)
    pipeline.load_lora_weights(str(lora), adapter_name="trained")
    loaded = get_peft_model_state_dict(pipeline.transformer, adapter_name="trained")
    assert saved and loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[key], saved[key].to(loaded[key].dtype)) for key in saved)


def _files(folder: Path) -> int:
    return len(list(folder.rglob("*.safetensors")))


def test_max_num_samples_trains_on_a_subset(workspace: Workspace, tiny_flux: Path, hf_env: dict[str, str],
                                            tmp_path: Path) -> None:
    write_parquet(tmp_path / "pets", rows(6))
    write_env(workspace.configs_dir, "hfsub", tiny_config(tiny_flux, "hfsub"),
              _entries(tmp_path / "pets", max_num_samples=2))
    _train(workspace, "hfsub")
    assert _files(workspace.root / "cache" / "vae" / "pets") == 2


def test_config_check_accepts_the_entry_and_names_a_missing_column(workspace: Workspace, tiny_flux: Path,
                                                                   hf_env: dict[str, str], tmp_path: Path,
                                                                   run_cli: Callable[..., Any]) -> None:
    write_parquet(tmp_path / "pets", rows(2))
    write_env(workspace.configs_dir, "good", tiny_config(tiny_flux, "good"), _entries(tmp_path / "pets"))
    result = run_cli("config", "check", "--env", "good", env=hf_env)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout

    write_env(workspace.configs_dir, "bad", tiny_config(tiny_flux, "bad"),
              _entries(tmp_path / "pets", caption_column=["caption"]))
    result = run_cli("config", "check", "--env", "bad", env=hf_env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert lines == [f"  - dataset 'pets': huggingface dataset {tmp_path / 'pets'} (split train): no column "
                     "'caption'; its columns are image, text, meta, tags, width, height"], result.stderr
    assert json.loads((workspace.configs_dir / "bad" / "multidatabackend.json").read_text())[0]["type"] == \
        "huggingface"


def test_cache_folders_and_local_datasets_are_confined(workspace: Workspace, tmp_path: Path) -> None:
    from simpletuner.core.config import load_environment
    from simpletuner.core.config.confinement import PathPolicy, datasets_path_problems
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.plugins import Registry

    outside = tmp_path / "outside"
    write_env(workspace.configs_dir, "confined", {"model_family": "flux"}, [
        {"id": "hub", "type": "huggingface", "dataset_name": "owner/pets", "cache_dir_vae": "cache/vae/hub"},
        {"id": "far", "type": "huggingface", "dataset_name": str(outside / "pets"),
         "cache_dir_vae": str(outside / "vae")},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"},
    ])
    registry = Registry()
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), "confined", registry)
    problems = datasets_path_problems(workspace, loaded.environment, loaded.datasets, registry,
                                      PathPolicy.for_workspace(workspace))
    assert sorted(p.split(":")[0] for p in problems) == ["dataset 'far'.cache_dir_vae", "dataset 'far'.dataset_name"]


def test_training_from_a_private_sharded_hub_dataset_with_the_owner_s_token(
        workspace: Workspace, tiny_flux: Path, hf_env: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hub_datasets import dataset_hub, use_hub
    from test_huggingface_shards import ROWS_PER_SHARD, repository

    from simpletuner.core.hub_tokens import JOB_ID_ENV, TOKEN_FILE_ENV

    token = "hf_ownerOfPets0123456789"
    items = rows(3 * ROWS_PER_SHARD)
    with dataset_hub() as hub:
        use_hub(monkeypatch, hub.base_url, tmp_path / "hub-cache")
        hub.publish("owner/pets", repository(items))
        hub.private["owner/pets"] = token
        # as the server's job runner starts a job: the owner's stored Hub login, checked against this Hub
        stored = tmp_path / "secrets" / "3.token"
        stored.parent.mkdir()
        stored.write_text(token + "\n")
        stored.with_suffix(".json").write_text(json.dumps({"name": "rita", "endpoint": hub.base_url, "role": "read",
                                                           "saved_at": 0}))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv(JOB_ID_ENV, "3")
        monkeypatch.setenv(TOKEN_FILE_ENV, str(stored))
        write_env(workspace.configs_dir, "hubrun", tiny_config(tiny_flux, "hubrun"), _entries("owner/pets"))
        first = _train(workspace, "hubrun")
        _assert_loads_into_the_pipeline(first.output, tiny_flux)
        assert _files(workspace.root / "cache" / "vae" / "pets") == 3 * ROWS_PER_SHARD
        assert {auth for path, auth in hub.auth if "/datasets/" in path} == {f"Bearer {token}"}

        # a new revision changes one image of the second shard: only that shard is downloaded, one row encoded
        items[ROWS_PER_SHARD]["image"] = {"bytes": png(128, 128, (255, 0, 0)), "path": None}
        hub.publish("owner/pets", repository(items))
        hub.reads.clear()
        second = _train(workspace, "hubrun")
        assert second.encoder_calls == {"latents": 1, "text": 0}
        assert _files(workspace.root / "cache" / "vae" / "pets") == 3 * ROWS_PER_SHARD + 1
        downloaded = [name for method, name, asked in hub.reads if method == "GET" and asked is None
                      and name.endswith(".parquet")]
        assert [name.rsplit("/", 1)[-1] for name in downloaded] == ["train-00001-of-00003.parquet"]


def test_latents_encoded_while_training_from_a_hub_dataset(workspace: Workspace, tiny_flux: Path,
                                                           hf_env: dict[str, str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``vae_cache_ondemand`` with the dataset's size columns: the scan fetches no shard, training starts with no
    latent encoded and encodes only the rows its batches reach; the LoRA loads; a restart reuses them."""
    from hub_datasets import dataset_hub, use_hub
    from test_huggingface_shards import ROWS_PER_SHARD, SHARDS, full_downloads, repository

    from simpletuner.core.events import EVENTS_FILE, read_events

    total = SHARDS * ROWS_PER_SHARD
    with dataset_hub() as hub:
        use_hub(monkeypatch, hub.base_url, tmp_path / "hub-cache")
        hub.publish("owner/pets", repository(rows(total)))
        write_env(workspace.configs_dir, "lazy", tiny_config(tiny_flux, "lazy", vae_cache_ondemand=True),
                  _entries("owner/pets"))
        first = _train(workspace, "lazy")
        _assert_loads_into_the_pipeline(first.output, tiny_flux)
        events = read_events(first.run_dir / EVENTS_FILE)
        [latents_ready] = [e for e in events if e["event"] == "cache_ready" and e["kind"] == "latents"]
        assert (latents_ready["encoded"], latents_ready["deferred"]) == (0, total)
        encoded = _files(workspace.root / "cache" / "vae" / "pets")
        # the batches the reader reached (one step of two images, a few batches read ahead), not every row
        assert 2 <= encoded < total and first.encoder_calls["latents"] >= 1
        assert len(full_downloads(hub)) <= SHARDS

        again = _train(workspace, "lazy")
        [ready_again] = [e for e in read_events(again.run_dir / EVENTS_FILE)
                         if e["event"] == "cache_ready" and e["kind"] == "latents"]
        assert ready_again["deferred"] == total - encoded  # what the first run encoded is found and kept
        assert again.encoder_calls["text"] == 0
