"""Helpers of the data-backend tests (a uniquely named module: test folders share one import namespace)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Credentials the test server accepts (it checks none unless authentication is switched on).
ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLESIMPLETUNER", "example-secret-key"


def upload_folder(client: object, bucket: str, folder: Path, prefix: str) -> list[str]:
    """Put every file of a local folder under ``prefix`` in the bucket; returns the keys."""
    keys = []
    for path in sorted(folder.iterdir()):
        key = f"{prefix}/{path.name}"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())  # type: ignore[attr-defined]
        keys.append(key)
    return keys


def keys_under(client: object, bucket: str, prefix: str) -> list[str]:
    """Every key under a prefix (paginated)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


def tiny_config(model: Path, name: str, **overrides: Any) -> dict[str, Any]:
    """A small, fast LoRA config on the tiny Flux pipeline."""
    config: dict[str, Any] = {
        "model_family": "flux", "pretrained_model_name_or_path": str(model), "lora_rank": 4, "lora_dropout": 0.0,
        "learning_rate": 1e-3, "max_train_steps": 1, "num_train_epochs": 0, "train_batch_size": 2, "seed": 7,
        "resolution": 128, "resolution_type": "pixel", "mixed_precision": "no", "checkpointing_steps": 0,
        "output_dir": f"output/{name}", "flux_t5_max_tokens": 16, "report_to": "none",
    }
    config.update(overrides)
    return config


def write_env(configs_dir: Path, name: str, config: dict[str, Any], datasets: list[dict[str, Any]]) -> None:
    """An environment folder with its config.json and multidatabackend.json."""
    env = configs_dir / name
    env.mkdir(parents=True, exist_ok=True)
    (env / "config.json").write_text(json.dumps(config))
    (env / "multidatabackend.json").write_text(json.dumps(datasets))


def read_failed_event(output_dir: Path) -> str:
    """The error of the ``failed`` event of the one run under ``output_dir``."""
    from simpletuner.core.events import EVENTS_FILE, read_events
    from simpletuner.core.training.run_folders import run_folders

    [run] = run_folders(output_dir)
    return next(e["error"] for e in read_events(run.path / EVENTS_FILE) if e["event"] == "failed")
