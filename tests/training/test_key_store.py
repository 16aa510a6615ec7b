"""Latent keys kept beside a dataset's index: read back while their inputs are the same, made again when an image,
a placement or the VAE changes, and never trusted when damaged."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import simpletuner.core.training.key_store as key_store
from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.datasets.buckets import ResolutionSettings
from simpletuner.core.datasets.index import ImageTable, PathColumn
from simpletuner.core.datasets.scan import IndexFile, ScannedDataset, build_scanned
from simpletuner.core.training.caching import latent_key_column
from simpletuner.plugins.data_backends.local import LocalDataBackend

pytestmark = pytest.mark.timeout(60)

ENTRY = DatasetEntry(id="photos", instance_data_dir="unused")


def dataset(resolution: int = 64, count: int = 50, edited: int | None = None) -> ScannedDataset:
    rng = np.random.default_rng(0)
    table = ImageTable.empty(count)
    table.paths = PathColumn.from_list([f"{i:03d}.png" for i in range(count)])
    table.width[:] = rng.choice([64, 128], count)
    table.height[:] = rng.choice([64, 96], count)
    table.readable[:] = True
    table.digest[:] = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    if edited is not None:
        table.digest[edited, 0] ^= 1
    settings = ResolutionSettings(resolution=resolution, resolution_type="pixel", minimum_image_size=32, alignment=16)
    return build_scanned(ENTRY, LocalDataBackend("."), settings, table, seed=0)


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times keys were made (not read back)."""
    calls: list[int] = []

    def counting(scanned: ScannedDataset, model: object) -> np.ndarray:
        calls.append(len(scanned.rows))
        return latent_key_column(scanned, model)

    monkeypatch.setattr(key_store, "latent_key_column", counting)
    return calls


def test_keys_are_read_back_until_an_input_changes(tmp_path: Path, made: list[int]) -> None:
    index = IndexFile(LocalDataBackend(tmp_path), "dataset-index/photos.npz")
    first = key_store.latent_keys_of(dataset(), "vae-a", index)
    assert made == [50] and (tmp_path / "dataset-index" / "photos.latent-keys.npz").is_file()
    again = key_store.latent_keys_of(dataset(), "vae-a", index)
    assert made == [50] and np.array_equal(again, first) and again.dtype == np.dtype("S32")

    for changed, model in ((dataset(edited=3), "vae-a"), (dataset(resolution=128), "vae-a"), (dataset(), "vae-b")):
        keys = key_store.latent_keys_of(changed, model, index)
        assert np.array_equal(keys, latent_key_column(changed, model)) and not np.array_equal(keys, first)
    assert made == [50, 50, 50, 50]
    edited = key_store.latent_keys_of(dataset(edited=3), "vae-a", index)
    assert np.flatnonzero(edited != first).tolist() == [3]  # only the edited image's key changes


def test_a_damaged_file_is_made_again_and_a_reader_stores_nothing(tmp_path: Path, made: list[int],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    index = IndexFile(LocalDataBackend(tmp_path), "photos.npz")
    expected = key_store.latent_keys_of(dataset(), "vae", index)
    (tmp_path / "photos.latent-keys.npz").write_bytes(b"PK\x03\x04 damaged")
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(key_store.latent_keys_of(dataset(), "vae", index), expected)
    assert "damaged" in caplog.text and len(made) == 2

    reader = IndexFile(LocalDataBackend(tmp_path / "elsewhere"), "photos.npz", writable=False)
    assert np.array_equal(key_store.latent_keys_of(dataset(), "vae", reader), expected)
    assert not (tmp_path / "elsewhere").exists() and len(made) == 3
