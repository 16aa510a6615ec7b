"""Caption files of several lines, as SimpleTuner reads them: each non-empty line is a caption of its own, every one
is encoded before training, each visit of the image trains with one picked from the run's seed and the sample's
place (the same after a restart), ``disable_multiline_split`` keeps the text whole, and
``prepend_instance_prompt`` puts the instance prompt before every caption."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from training_helpers import CountingBackend, events_of

from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.datasets.buckets import ResolutionSettings
from simpletuner.core.datasets.cache_store import CacheStore
from simpletuner.core.datasets.index import ImageTable
from simpletuner.core.datasets.scan import IndexFile, ScannedDataset, index_path, scan_dataset
from simpletuner.core.training.caching import missing_texts, text_keys
from simpletuner.core.training.data import DatasetCaches, caption_choice, caption_keys
from simpletuner.core.training.loader import SAMPLE_LOG_ENV
from simpletuner.core.workspace import Workspace
from simpletuner.plugins.data_backends.local import LocalDataBackend

pytestmark = pytest.mark.timeout(120)

SETTINGS = ResolutionSettings(resolution=64, resolution_type="pixel", minimum_image_size=32, alignment=16)
TEXT_KEY = text_keys("text-model", "flux", {})
CAPTIONS = {"one.png": "a red square", "three.png": "a red fox\n\n   a fox in snow  \r\na fox, winter, photo\n",
            "two.png": "first caption\nsecond caption"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for name, caption in CAPTIONS.items():
        Image.new("RGB", (64, 64), (len(caption), 40, 90)).save(images / name)
        (images / name).with_suffix(".txt").write_bytes(caption.encode())
    return images


def scan(folder: Path, index: IndexFile | None = None, **entry: Any) -> ScannedDataset:
    return scan_dataset(DatasetEntry(id="lines", instance_data_dir=str(folder), **entry), CountingBackend(folder),
                        SETTINGS, index=index)


def caches_of(dataset: ScannedDataset, tmp_path: Path) -> DatasetCaches:
    keys, variants = caption_keys(dataset, TEXT_KEY)
    return DatasetCaches(dataset, CacheStore(LocalDataBackend(tmp_path / "vae")), keys,
                         CacheStore(LocalDataBackend(tmp_path / "text")), keys, variants)


def test_every_line_is_a_caption_to_encode(folder: Path, tmp_path: Path) -> None:
    dataset = scan(folder)
    assert [dataset.path(i) for i in range(3)] == ["one.png", "three.png", "two.png"]
    assert [dataset.caption_count(i) for i in range(3)] == [1, 3, 2]
    caches = caches_of(dataset, tmp_path)
    jobs = missing_texts([caches]).jobs
    assert sorted(job.caption for job in jobs) == sorted(["a red square", "a red fox", "a fox in snow",
                                                          "a fox, winter, photo", "first caption", "second caption"])
    assert len({job.key for job in jobs}) == 6
    # each caption's key is the one training reads for that line
    by_caption = {job.caption: job.key for job in jobs}
    assert caches.text_key(1, 2) == by_caption["a fox, winter, photo"]
    assert caches.text_key(2, 0) == by_caption["first caption"] and caches.text_key(0, 0) == by_caption["a red square"]
    assert dataset.caption(1) == CAPTIONS["three.png"].strip()  # the whole text, as the dataset viewer shows it


def test_disable_multiline_split_keeps_each_text_whole(folder: Path, tmp_path: Path) -> None:
    dataset = scan(folder, disable_multiline_split=True)
    assert [dataset.caption_count(i) for i in range(3)] == [1, 1, 1]
    jobs = missing_texts([caches_of(dataset, tmp_path)]).jobs
    assert sorted(job.caption for job in jobs) == sorted(text.strip() for text in CAPTIONS.values())


def test_prepend_instance_prompt_goes_before_every_caption(folder: Path, tmp_path: Path) -> None:
    plain = caches_of(scan(folder), tmp_path)
    prefixed = caches_of(scan(folder, instance_prompt="sks", prepend_instance_prompt=True), tmp_path)
    jobs = missing_texts([prefixed]).jobs
    assert sorted(job.caption for job in jobs) == sorted(
        ["sks a red square", "sks a red fox", "sks a fox in snow", "sks a fox, winter, photo", "sks first caption",
         "sks second caption"])
    # keyed apart from the same captions without the prefix, and from another prefix's
    assert not set(prefixed.text_keys.tolist()) & set(plain.text_keys.tolist())
    other = caches_of(scan(folder, instance_prompt="zzz", prepend_instance_prompt=True), tmp_path)
    assert not set(prefixed.variants.keys.tolist()) & set(other.variants.keys.tolist())
    whole = scan(folder, instance_prompt="sks", prepend_instance_prompt=True, disable_multiline_split=True)
    assert whole.caption(2) == "sks first caption\nsecond caption"
    assert whole.caption_digest(2) == whole.caption_digests()[2].tobytes().hex() != scan(folder).caption_digest(2)


TAGS = {"dog.png": "dog, running, park, sunny day", "cats.png": "cat, sleeping, sofa\nkitten, window, sun, morning",
        "short.png": "just one tag"}
SHUFFLE = {"enable": True, "count": 2, "seed": 42, "split_on": "comma", "position_start": 1}


@pytest.fixture
def tagged(tmp_path: Path) -> Path:
    images = tmp_path / "tagged"
    images.mkdir()
    for name, caption in TAGS.items():
        Image.new("RGB", (64, 64), (len(caption), 90, 40)).save(images / name)
        (images / name).with_suffix(".txt").write_text(caption)
    return images


def shuffled(folder: Path, **settings: Any) -> ScannedDataset:
    from simpletuner.core.config.caption_shuffle import structure_caption_shuffle

    return scan(folder, caption_shuffle=structure_caption_shuffle({**SHUFFLE, **settings}, object))


def texts_of(dataset: ScannedDataset, index: int) -> list[str]:
    return [dataset.caption(index, choice) for choice in range(dataset.caption_count(index))]


def test_caption_shuffle_trains_shuffled_copies_of_every_caption(tagged: Path, tmp_path: Path) -> None:
    dataset = shuffled(tagged)
    assert [dataset.path(i) for i in range(3)] == ["cats.png", "dog.png", "short.png"]
    assert [dataset.caption_count(i) for i in range(3)] == [6, 3, 3]  # (lines) × (the original and 2 copies)
    caches = caches_of(dataset, tmp_path)
    texts = [dataset.caption(0, choice) for choice in range(6)]
    assert texts[0] == "cat, sleeping, sofa" and texts[3] == "kitten, window, sun, morning"
    for original, copies in ((texts[0], texts[1:3]), (texts[3], texts[4:6])):
        for copy in copies:  # the first tag keeps its place, the others move
            assert copy != original and copy.split(", ")[0] == original.split(", ")[0]
            assert sorted(copy.split(", ")) == sorted(original.split(", "))
    assert {dataset.caption(2, choice) for choice in range(3)} == {"just one tag"}  # nothing to shuffle
    jobs = missing_texts([caches]).jobs
    assert len(jobs) == 12 and sorted(job.caption for job in jobs if "sofa" in job.caption) == sorted(texts[:3])
    every_key = {caches.text_key(i, c) for i in range(3) for c in range(dataset.caption_count(i))}
    assert {job.key for job in jobs} == every_key

    # the originals keep the keys they have without caption_shuffle: turning it on encodes only the copies
    plain = caches_of(scan(tagged), tmp_path)
    plain_keys = {plain.text_key(i, c) for i in range(3) for c in range(plain.dataset.caption_count(i))}
    assert plain_keys == {caches.text_key(i, c) for i in range(3) for c in range(0, dataset.caption_count(i), 3)}
    # another seed shuffles otherwise: new copies, the same originals
    reseeded = caches_of(shuffled(tagged, seed=7), tmp_path)
    assert reseeded.text_key(1, 0) == caches.text_key(1, 0) and reseeded.text_key(1, 1) != caches.text_key(1, 1)
    assert shuffled(tagged).caption(1, 2) == dataset.caption(1, 2)  # the same copies in every run

    without = shuffled(tagged, include_original=False, count=2)
    assert [without.caption_count(i) for i in range(3)] == [4, 2, 2]
    copies = [without.caption(1, choice) for choice in range(2)]
    assert copies == texts_of(dataset, 1)[1:] and TAGS["dog.png"] not in copies  # the copies, without the original


def test_the_pick_is_uniform_and_depends_only_on_the_seed_and_the_place() -> None:
    picks = Counter(caption_choice(7, epoch, position=3, dataset=0, index=5, count=3) for epoch in range(3000))
    assert set(picks) == {0, 1, 2} and min(picks.values()) > 900
    again = [caption_choice(7, epoch, 3, 0, 5, 3) for epoch in range(50)]
    assert again == [caption_choice(7, epoch, 3, 0, 5, 3) for epoch in range(50)]
    assert again != [caption_choice(8, epoch, 3, 0, 5, 3) for epoch in range(50)]
    assert {caption_choice(7, epoch, 3, 0, 5, 1) for epoch in range(50)} == {0}


def test_an_index_without_line_counts_rereads_captions_not_images(folder: Path, tmp_path: Path) -> None:
    index = IndexFile(LocalDataBackend(tmp_path / "index"), index_path(DatasetEntry(id="lines", instance_data_dir="x")))
    scan(folder, index)
    stored = tmp_path / "index" / index.path
    with np.load(stored, allow_pickle=False) as arrays:
        older = {name: arrays[name] for name in arrays.files if name != "caption_lines"}
    buffer = io.BytesIO()
    np.savez(buffer, **older)  # as an index stored before captions' lines were counted
    stored.write_bytes(buffer.getvalue())

    again = scan(folder, index)
    assert again.refreshed is not None
    assert again.refreshed.read_images == 0 and again.refreshed.read_captions == 3
    assert [again.caption_count(i) for i in range(3)] == [1, 3, 2]
    third = scan(folder, index)  # the counts were stored
    assert third.refreshed is not None and third.refreshed.read_captions == 0 and not third.refreshed.changed
    assert "caption_lines" in ImageTable.COLUMNS


def test_a_caption_file_edited_during_the_run_is_named(folder: Path) -> None:
    dataset = scan(folder)
    (folder / "three.txt").write_text("just one line now")
    with pytest.raises(Exception, match=r"caption file of three\.png changed during the run"):
        dataset.caption(1, 2)


def _sample_lines(log: Path, steps: int | None = None) -> dict[str, set[str]]:
    """The captions each image trained with, by path: the first ``steps`` rows (batch size 1) are the trained
    steps; the reader may have read a few batches more."""
    lines: dict[str, set[str]] = {}
    for row in log.read_text().splitlines()[:steps]:
        _, _, _, path, line = row.split("\t")
        lines.setdefault(path, set()).add(line)
    return lines


def _text_encoded(output_dir: Path) -> int:
    events = events_of(output_dir)
    start = max(i for i, e in enumerate(events) if e["event"] == "datasets_scanned")
    return next(e["encoded"] for e in events[start:] if e["event"] == "cache_ready" and e["kind"] == "text")


@pytest.mark.timeout(300)
def test_a_run_trains_each_image_with_its_lines_in_turn(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                       workspace: Workspace, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    name = make_env("lines", images=2, train_batch_size=1, max_train_steps=12)
    data_dir = workspace.datasets_dir / name
    (data_dir / "demo-000.txt").write_text("a red circle\na circle, red, flat\nred round shape\n")
    log = tmp_path / "samples"
    monkeypatch.setenv(SAMPLE_LOG_ENV, str(log))

    first = run_env(name)
    assert _text_encoded(first.run_dir) == 5  # three lines, the other image's caption, the empty caption
    lines = _sample_lines(Path(f"{log}.0"), steps=12)
    assert lines["demo-001.png"] == {"0"}
    assert len(lines["demo-000.png"]) > 1 and lines["demo-000.png"] <= {"0", "1", "2"}

    Path(f"{log}.0").unlink()
    second = run_env(name)  # a restart picks the same captions and finds every one of them cached
    assert second.encoder_calls["text"] == 0
    assert _sample_lines(Path(f"{log}.0"), steps=12) == lines

    datasets_file = workspace.configs_dir / name / "multidatabackend.json"
    entries = json.loads(datasets_file.read_text())
    entries[0].update(disable_multiline_split=True, prepend_instance_prompt=True, instance_prompt="sks")
    datasets_file.write_text(json.dumps(entries))
    Path(f"{log}.0").unlink()
    whole = run_env(name)
    assert _text_encoded(whole.run_dir) == 2  # "sks" and the whole three-line text; "sks" and the other caption
    assert set().union(*_sample_lines(Path(f"{log}.0")).values()) == {"0"}


@pytest.mark.timeout(300)
def test_a_run_with_caption_shuffle_encodes_and_trains_the_copies(make_env: Callable[..., str],
                                                                  run_env: Callable[..., Any], workspace: Workspace,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    name = make_env("shuffle", images=2, train_batch_size=1, max_train_steps=12)
    data_dir = workspace.datasets_dir / name
    for number, caption in enumerate(("circle, red, flat, plain", "square, blue, outlined")):
        (data_dir / f"demo-{number:03d}.txt").write_text(caption)
    datasets_file = workspace.configs_dir / name / "multidatabackend.json"
    entries = json.loads(datasets_file.read_text())
    entries[0]["caption_shuffle"] = {"enable": True, "count": 2, "position_start": 1}
    datasets_file.write_text(json.dumps(entries))
    log = tmp_path / "samples"
    monkeypatch.setenv(SAMPLE_LOG_ENV, str(log))

    result = run_env(name)
    assert _text_encoded(result.run_dir) == 7  # each caption and its 2 copies, the empty caption
    picked = _sample_lines(Path(f"{log}.0"))
    assert all(len(choices) > 1 and choices <= {"0", "1", "2"} for choices in picked.values()), picked
