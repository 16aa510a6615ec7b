"""``vae_batch_size`` sets how many images each VAE call encodes while caching, and is a known option (no
legacy-key warning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simpletuner.core.config import load_environment
from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace


def test_vae_batch_size_sets_images_per_vae_call(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                 workspace: Workspace) -> None:
    # 6 images in 3 buckets of 2: one call per image at 1, one per bucket at the default 4
    single = run_env(make_env("vae1", images=6, max_train_steps=1, vae_batch_size=1))
    assert single.encoder_calls["latents"] == 6
    default = make_env("vae4", images=6, max_train_steps=1)
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), default, Registry())
    assert loaded.config.core.vae_batch_size == 4
    assert not any("vae_batch_size" in warning for warning in loaded.warnings)
    assert run_env(default).encoder_calls["latents"] == 3
