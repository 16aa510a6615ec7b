"""Cache reuse: a second run encodes nothing, one changed caption re-encodes one embedding, damaged files rebuild."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from training_helpers import events_of

from simpletuner.core.workspace import Workspace


def _ready(output_dir: Path) -> dict[str, dict[str, Any]]:
    """The last run's cache_ready events by kind."""
    events = events_of(output_dir)
    last_start = max(i for i, e in enumerate(events) if e["event"] == "datasets_scanned")
    return {e["kind"]: e for e in events[last_start:] if e["event"] == "cache_ready"}


def test_second_run_reuses_and_changes_rebuild_only_what_changed(make_env: Callable[..., str],
                                                                run_env: Callable[..., Any],
                                                                workspace: Workspace) -> None:
    name = make_env("cache", images=6, max_train_steps=1)
    first = run_env(name)
    assert first.encoder_calls == {"text": 2, "latents": 3}  # 7 captions (6 + empty) in 4s; 3 buckets of 2 images
    ready = _ready(first.run_dir)
    assert ready["text"]["encoded"] == 7 and ready["latents"]["encoded"] == 6

    second = run_env(name)
    assert second.encoder_calls == {"text": 0, "latents": 0}
    assert _ready(second.run_dir)["latents"]["reused"] == 6

    caption = workspace.datasets_dir / name / "demo-002.txt"
    caption.write_text("a brand new caption")
    third = run_env(name)
    ready = _ready(third.run_dir)
    assert third.encoder_calls == {"text": 1, "latents": 0}
    assert ready["text"]["encoded"] == 1 and ready["latents"]["encoded"] == 0

    cache_files = sorted((workspace.root / "cache" / name / "vae").rglob("*.safetensors"))
    assert len(cache_files) == 6
    data = cache_files[0].read_bytes()
    cache_files[0].write_bytes(data[: len(data) // 2])  # truncated, as by a crash mid-write on another tool
    # every text file, the stale one of the changed caption included (which is never read again): the 7 in use
    # (6 captions and the empty caption) are rebuilt
    for text_file in (workspace.root / "cache" / name / "text").rglob("*.safetensors"):
        text_file.write_bytes(b"garbage")
    fourth = run_env(name)
    ready = _ready(fourth.run_dir)
    assert ready["latents"]["encoded"] == 1 and ready["text"]["encoded"] == 7
    from safetensors.torch import load

    rebuilt, original = load(cache_files[0].read_bytes())["latents"], load(data)["latents"]
    assert (rebuilt - original).abs().max().item() < 1e-4  # same latents (batching may change the last bits)


def test_changed_resolution_recomputes_latents_only(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                    workspace: Workspace) -> None:
    import json

    name = make_env("resize", images=4, max_train_steps=1, minimum_image_size=64, train_batch_size=1)
    run_env(name)
    config_path = workspace.configs_dir / name / "config.json"
    config = json.loads(config_path.read_text())
    config["resolution"] = 64
    config_path.write_text(json.dumps(config))
    again = run_env(name)
    assert again.encoder_calls["text"] == 0 and again.encoder_calls["latents"] > 0
    ready = _ready(again.run_dir)
    assert ready["latents"]["encoded"] == 4


def test_damage_that_keeps_size_and_time_is_caught_when_read_and_rebuilt_by_the_next_run(
        make_env: Callable[..., str], run_env: Callable[..., Any], workspace: Workspace) -> None:
    import os

    import pytest

    name = make_env("quiet-damage", images=2, max_train_steps=2, train_batch_size=1)  # one epoch reads both
    run_env(name)
    assert (workspace.root / "cache" / name / "vae" / "cache-manifest.npz").is_file()
    [first, _] = sorted((workspace.root / "cache" / name / "vae").rglob("*.safetensors"))
    stat = first.stat()
    data = bytearray(first.read_bytes())
    data[8:16] = b"\0" * 8  # the header is unreadable now; same size, same modification time
    first.write_bytes(bytes(data))
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # the check trusts the manifest (nothing is opened); the read during training finds the damage
    with pytest.raises(ValueError, match=r"is missing or damaged; run again to rebuild it"):
        run_env(name)
    again = run_env(name)
    assert _ready(again.run_dir)["latents"]["encoded"] == 1 and again.step == 2


def test_latent_caching_frees_each_batchs_pixels_once_encoded(monkeypatch: Any) -> None:
    import gc
    import weakref
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import torch

    import simpletuner.core.training.caching as caching

    monkeypatch.setattr(caching, "load_pixels", lambda backend, path, placement: torch.zeros(3, 8, 8))
    job = SimpleNamespace(dataset=SimpleNamespace(backend=None), sample=SimpleNamespace(path="x", placement=None))
    seen: list[weakref.ref] = []
    with ThreadPoolExecutor(2) as pool:
        for _, pixels in caching._prefetched([[job]] * 12, pool, depth=2):
            seen.append(weakref.ref(pixels))
            del pixels
            gc.collect()
            assert [ref() is None for ref in seen[:-1]] == [True] * (len(seen) - 1)  # nothing consumed is kept
