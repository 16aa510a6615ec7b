"""Training from an s3 dataset: images read from the bucket, latents and text embeddings cached in the bucket (a
second run encodes nothing) or on this machine when the entry names no cache prefix; ``config check`` asks the
bucket and reports each unusable storage on one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from s3_helpers import keys_under, read_failed_event, tiny_config, upload_folder, write_env

from simpletuner.core.cli.demo_commands import make_demo_images
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def _train(workspace: Workspace, name: str) -> Any:
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.plugins import Registry
    from simpletuner.core.training.run import train

    registry = Registry()
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry)
    return train(loaded, workspace, registry)


@pytest.fixture
def s3_images(tmp_path: Path, s3_client: Any, bucket: str) -> list[str]:
    """Six demo images with their captions in the bucket under ``pets/images``."""
    make_demo_images(tmp_path / "demo", 6)
    return upload_folder(s3_client, bucket, tmp_path / "demo", "pets/images")


def test_caches_in_the_bucket_are_reused_by_the_next_run(workspace: Workspace, tiny_flux: Path, s3_endpoint: str,
                                                        s3_client: Any, bucket: str, s3_images: list[str]) -> None:
    # the endpoint is set once in config.json: the environment's value of a backend option is every entry's default
    config = tiny_config(tiny_flux, "s3run", aws_endpoint_url=s3_endpoint)
    where = {"type": "s3", "aws_bucket_name": bucket, "aws_data_prefix": "pets"}
    write_env(workspace.configs_dir, "s3run", config, [
        {"id": "pets", **where, "instance_data_dir": "images", "caption_strategy": "textfile",
         "cache_dir_vae": "cache/vae"},
        {"id": "embeds", **where, "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"},
    ])
    first = _train(workspace, "s3run")
    assert first.encoder_calls["latents"] > 0 and first.encoder_calls["text"] > 0
    latents = keys_under(s3_client, bucket, "pets/cache/vae/")
    assert len([key for key in latents if key.endswith(".safetensors")]) == 6
    # beside them, the cache's manifest and the dataset's index with its latent keys: a restart lists the bucket
    # instead of reading every image and cache object again
    indexes = [key for key in latents if key.startswith("pets/cache/vae/dataset-index/")]
    assert len(indexes) == 2 and indexes[1] == indexes[0].replace(".latent-keys.npz", ".npz")
    assert [key for key in latents if not key.endswith(".safetensors")] == ["pets/cache/vae/cache-manifest.npz",
                                                                            *indexes]
    texts = keys_under(s3_client, bucket, "pets/cache/text/")
    assert len(texts) == 7 + 1 and "pets/cache/text/cache-manifest.npz" in texts  # six captions and the empty one
    assert not (first.output_dir / "cache").exists()
    assert first.output.is_file()

    second = _train(workspace, "s3run")
    assert second.encoder_calls == {"text": 0, "latents": 0}
    assert len(keys_under(s3_client, bucket, "pets/")) == 6 * 2 + 9 + 8  # images, captions, caches: nothing new


def test_unset_cache_prefixes_keep_the_caches_on_this_machine(workspace: Workspace, tiny_flux: Path,
                                                              s3_endpoint: str, s3_client: Any, bucket: str,
                                                              s3_images: list[str]) -> None:
    write_env(workspace.configs_dir, "s3local", tiny_config(tiny_flux, "s3local"), [
        {"id": "pets", "type": "s3", "aws_bucket_name": bucket, "aws_endpoint_url": s3_endpoint,
         "aws_data_prefix": "pets/images", "caption_strategy": "textfile"},
        {"id": "embeds", "type": "s3", "aws_bucket_name": bucket, "aws_endpoint_url": s3_endpoint,
         "dataset_type": "text_embeds", "default": True},
    ])
    result = _train(workspace, "s3local")
    assert len(list((result.output_dir / "cache" / "vae" / "pets").rglob("*.safetensors"))) == 6
    assert len(list((result.output_dir / "cache" / "text" / "embeds").rglob("*.safetensors"))) == 7
    assert keys_under(s3_client, bucket, "") == sorted(s3_images)


def test_config_check_reports_each_unusable_bucket(workspace: Workspace, tiny_flux: Path, s3_endpoint: str,
                                                   bucket: str, closed_endpoint: str, aws_environment: dict,
                                                   run_cli: Callable[..., Any]) -> None:
    local_embeds = {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/t"}
    write_env(workspace.configs_dir, "broken", tiny_config(tiny_flux, "broken"), [
        {"id": "missing", "type": "s3", "aws_bucket_name": "no-such-bucket", "aws_endpoint_url": s3_endpoint},
        {"id": "offline", "type": "s3", "aws_bucket_name": bucket, "aws_endpoint_url": closed_endpoint},
        {"id": "nameless", "type": "s3", "aws_endpoint_url": s3_endpoint},
        {"id": "fine", "type": "s3", "aws_bucket_name": bucket, "aws_endpoint_url": s3_endpoint},
        local_embeds,
    ])
    result = run_cli("config", "check", "--env", "broken", env=aws_environment)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith("  - dataset 'missing': checking the bucket in s3://no-such-bucket at ")
    assert "bucket 'no-such-bucket' does not exist" in lines[0]
    assert lines[1].startswith(f"  - dataset 'offline': checking the bucket in s3://{bucket} at {closed_endpoint}: "
                               f"cannot reach {closed_endpoint}")
    assert lines[2] == ("  - dataset 'nameless': s3 dataset: aws_bucket_name is not set; name the bucket holding "
                        "the dataset")

    write_env(workspace.configs_dir, "good", tiny_config(tiny_flux, "good"), [
        {"id": "fine", "type": "s3", "aws_bucket_name": bucket, "aws_endpoint_url": s3_endpoint}, local_embeds])
    result = run_cli("config", "check", "--env", "good", env=aws_environment)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout


def test_training_stops_before_loading_models_when_the_bucket_is_missing(workspace: Workspace, tiny_flux: Path,
                                                                         s3_endpoint: str) -> None:
    from simpletuner.core.errors import DataBackendError

    write_env(workspace.configs_dir, "gone", tiny_config(tiny_flux, "gone"), [
        {"id": "pets", "type": "s3", "aws_bucket_name": "deleted-bucket", "aws_endpoint_url": s3_endpoint},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/gone"},
    ])
    with pytest.raises(DataBackendError, match="dataset 'pets': checking the bucket in s3://deleted-bucket at "):
        _train(workspace, "gone")
    assert "bucket 'deleted-bucket' does not exist" in read_failed_event(workspace.root / "output" / "gone")


def test_an_empty_prefix_names_its_location(workspace: Workspace, tiny_flux: Path, s3_endpoint: str,
                                            bucket: str) -> None:
    from simpletuner.core.datasets.scan import DatasetError

    write_env(workspace.configs_dir, "empty", tiny_config(tiny_flux, "empty"), [
        {"id": "pets", "type": "s3", "aws_bucket_name": bucket, "aws_endpoint_url": s3_endpoint,
         "instance_data_dir": "nothing-here"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/empty"},
    ])
    with pytest.raises(DatasetError, match=f"dataset 'pets' has no images .* in s3://{bucket}/nothing-here at "):
        _train(workspace, "empty")
