"""The cache manifest: a complete cache is checked from one listing without opening an entry; new, changed,
removed and damaged entries are noticed; a damaged manifest is ignored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from training_helpers import CountingBackend

from simpletuner.core.datasets.cache_manifest import MANIFEST_FILE, load_manifest
from simpletuner.core.datasets.cache_store import CacheStore, cache_key

pytestmark = pytest.mark.timeout(60)


def entries_read(backend: CountingBackend) -> int:
    return sum(n for path, n in backend.reads.items() if path.endswith(".safetensors"))


def keys(count: int) -> list[str]:
    return [cache_key(kind="test", index=i) for i in range(count)]


def fresh(root: Path) -> tuple[CacheStore, CountingBackend]:
    backend = CountingBackend(root)
    return CacheStore(backend), backend


def test_a_complete_cache_is_checked_without_opening_an_entry(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    wanted = keys(6)
    for key in wanted[:4]:
        store.write(key, {"x": torch.ones(3)})
    assert store.record_written() == 4
    assert len(load_manifest(store.backend)) == 4

    store, backend = fresh(tmp_path)
    assert store.valid(wanted).tolist() == [True] * 4 + [False] * 2
    assert entries_read(backend) == 0


def test_entries_unknown_to_the_manifest_are_verified_once_then_trusted(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    wanted = keys(3)
    for key in wanted:
        store.write(key, {"x": torch.ones(3)})  # written by a version without manifests: nothing recorded
    (tmp_path / store.path_for(wanted[2])).write_bytes(b"garbage")
    store, backend = fresh(tmp_path)
    assert store.valid(wanted).tolist() == [True, True, False] and entries_read(backend) == 3
    store, backend = fresh(tmp_path)
    assert store.valid(wanted).tolist() == [True, True, False] and entries_read(backend) == 1  # the bad one


def test_changed_and_removed_entries_are_noticed(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    wanted = keys(3)
    for key in wanted:
        store.write(key, {"x": torch.ones(3)})
    store.record_written()
    truncated = tmp_path / store.path_for(wanted[0])
    truncated.write_bytes(truncated.read_bytes()[:20])
    (tmp_path / store.path_for(wanted[1])).unlink()
    store, backend = fresh(tmp_path)
    assert store.valid(wanted).tolist() == [False, False, True]
    assert entries_read(backend) == 1  # only the truncated one: its size changed
    assert len(load_manifest(store.backend)) == 1  # the removed entry left the manifest


def test_a_damaged_entry_found_when_read_leaves_the_manifest(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    [key] = keys(1)
    store.write(key, {"x": torch.ones(3)})
    store.record_written()
    path = tmp_path / store.path_for(key)
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[8:12] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fresh(tmp_path)[0].valid([key]).tolist() == [True]  # size and stamp unchanged: trusted
    with pytest.raises(ValueError, match="is missing or damaged"):
        store.read(key)
    assert fresh(tmp_path)[0].valid([key]).tolist() == [False]


def test_a_damaged_manifest_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, _ = fresh(tmp_path)
    wanted = keys(2)
    for key in wanted:
        store.write(key, {"x": torch.ones(3)})
    store.record_written()
    (tmp_path / MANIFEST_FILE).write_bytes(b"not a manifest")
    store, backend = fresh(tmp_path)
    assert store.valid(wanted).tolist() == [True, True] and entries_read(backend) == 2
    assert "cache manifest is damaged" in caplog.text
    assert fresh(tmp_path)[0].valid(wanted).tolist() == [True, True]



@pytest.mark.parametrize("model", ["black-forest-labs/FLUX.1-dev", "/models/é \"quoted\"", Path("/models/vae")])
def test_the_keys_made_per_image_equal_the_cache_key_of_their_parts(model: object) -> None:
    from types import SimpleNamespace

    from simpletuner.core.datasets.buckets import Placement
    from simpletuner.core.training.caching import latent_keys, text_keys

    placement = Placement(width=192, height=128, resized=(200, 133), crop_box=(4, 2, 196, 130))
    sample = SimpleNamespace(placement=placement, content_hash="ab" * 32)
    assert latent_keys(model)(sample) == cache_key(kind="latents", image="ab" * 32, model=model, size=[192, 128],
                                                   resized=[200, 133], crop=[4, 2, 196, 130])
    settings = {"max_tokens": 77, "template": "é {}", "nested": {"b": 1, "a": [1, 2]}}
    assert text_keys(model, "flux", settings)("cd" * 32) == cache_key(kind="text", caption_sha256="cd" * 32,
                                                                      model=model, family="flux", settings=settings)


def test_the_key_columns_equal_the_keys_made_per_sample() -> None:
    import numpy as np

    from simpletuner.core.config.datasets import DatasetEntry
    from simpletuner.core.datasets.buckets import ResolutionSettings
    from simpletuner.core.datasets.index import ImageTable, PathColumn
    from simpletuner.core.datasets.scan import build_scanned
    from simpletuner.core.training.caching import latent_key_column, latent_keys, text_key_column, text_keys
    from simpletuner.core.training.data import hex_key
    from simpletuner.plugins.data_backends.local import LocalDataBackend

    count = 300
    rng = np.random.default_rng(1)
    table = ImageTable.empty(count)
    table.paths = PathColumn.from_list([f"{i:04d}.png" for i in range(count)])
    table.width[:] = rng.choice([64, 96, 128], count)
    table.height[:] = rng.choice([64, 96, 128], count)
    table.readable[:] = True
    table.digest[:] = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    table.digest[7, -3:] = 0  # a digest ending in zero bytes keeps them in its key
    table.caption_digest[:] = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    table.caption_digest[10:20] = table.caption_digest[3]  # repeated captions share a key
    settings = ResolutionSettings(resolution=64, resolution_type="pixel", minimum_image_size=32, alignment=16,
                                  crop=True, crop_style="random", crop_aspect="preserve")
    scanned = build_scanned(DatasetEntry(id="d", instance_data_dir="x"), LocalDataBackend("."), settings, table, 3)
    model = "/models/é \"vae\""
    column = latent_key_column(scanned, model)
    per_sample = latent_keys(model)
    assert [hex_key(column, i) for i in range(count)] == [per_sample(s) for s in scanned.samples]
    assert scanned.content_hash(7).endswith("000000")

    key = text_keys(model, "flux", {"max_tokens": 77})
    texts = text_key_column(table.caption_digest[scanned.rows], key)
    assert [hex_key(texts, i) for i in range(count)] == [key(scanned.caption_digest(i)) for i in range(count)]
    assert len(np.unique(texts)) == count - 10
