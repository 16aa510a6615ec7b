"""The dataset index: a restart reads only what changed (added, edited or renamed images, changed captions), removed
files leave it, a changed resolution re-buckets without reading an image, a damaged index is rebuilt, and the
per-image bookkeeping stays small."""

from __future__ import annotations

import doctest
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from training_helpers import CountingBackend as CountingFolder

import simpletuner.core.datasets.index as index_module
from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.datasets.buckets import ResolutionSettings
from simpletuner.core.datasets.index import NO_CAPTION_FILE, ImageTable, PathColumn
from simpletuner.core.datasets.scan import IndexFile, ScannedDataset, build_scanned, index_path, scan_dataset
from simpletuner.plugins.data_backends.local import LocalDataBackend

pytestmark = pytest.mark.timeout(120)


class CountingBackend(CountingFolder):
    """Counts the image and caption files read."""

    def images_read(self) -> list[str]:
        return sorted(p for p in self.reads if not p.endswith(".txt"))


def settings(resolution: int = 64) -> ResolutionSettings:
    return ResolutionSettings(resolution=resolution, resolution_type="pixel", minimum_image_size=32, alignment=16)


def write_image(path: Path, size: tuple[int, int], colour: tuple[int, int, int] = (200, 20, 20),
                caption: str | None = "a red square") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption)


def touch_later(path: Path) -> None:
    """Move the modification time on, as an editor saving the file does (coarse clocks may not)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    write_image(folder / "a.png", (64, 64))
    write_image(folder / "b.png", (128, 64), caption="a wide one")
    write_image(folder / "sub" / "c.jpg", (64, 96), caption="a tall one")
    return folder


@pytest.fixture
def cache(tmp_path: Path) -> IndexFile:
    entry = DatasetEntry(id="photos", instance_data_dir="unused")
    return IndexFile(LocalDataBackend(tmp_path / "cache"), index_path(entry))


ENTRY = DatasetEntry(id="photos", instance_data_dir="unused")


def scan(folder: Path, cache: IndexFile, resolution: int = 64, entry: DatasetEntry = ENTRY,
         **kwargs: object) -> tuple[ScannedDataset, CountingBackend]:
    backend = CountingBackend(folder)  # a new backend each time, as after a restart
    return scan_dataset(entry, backend, settings(resolution), index=cache, **kwargs), backend  # type: ignore[arg-type]


def facts(scanned: ScannedDataset) -> dict[str, tuple[str, str, str]]:
    return {s.path: (s.placement.bucket, s.content_hash, s.caption) for s in scanned.samples}


def test_a_restart_reads_no_image_and_finds_the_same_samples(dataset: Path, cache: IndexFile) -> None:
    first, backend = scan(dataset, cache)
    assert backend.images_read() == ["a.png", "b.png", "sub/c.jpg"]
    assert first.refreshed is not None and first.refreshed.read_images == 3
    again, backend = scan(dataset, cache)
    assert backend.images_read() == [] and again.refreshed is not None and not again.refreshed.changed
    assert facts(again) == facts(first)
    assert facts(first)["b.png"][0] == "128x64" and facts(first)["sub/c.jpg"][2] == "a tall one"


def test_added_removed_edited_and_renamed_images_are_noticed(dataset: Path, cache: IndexFile) -> None:
    first, _ = scan(dataset, cache)
    before = facts(first)

    write_image(dataset / "d.png", (64, 64), colour=(0, 0, 255), caption="a blue square")  # added
    (dataset / "b.png").unlink()  # removed (its caption stays behind, unused)
    write_image(dataset / "a.png", (96, 64), colour=(0, 255, 0), caption=None)  # edited in place
    touch_later(dataset / "a.png")
    (dataset / "sub" / "c.jpg").rename(dataset / "sub" / "c2.jpg")  # renamed, with its caption
    (dataset / "sub" / "c.txt").rename(dataset / "sub" / "c2.txt")

    second, backend = scan(dataset, cache)
    assert backend.images_read() == ["a.png", "d.png", "sub/c2.jpg"]
    after = facts(second)
    assert sorted(after) == ["a.png", "d.png", "sub/c2.jpg"]
    assert after["a.png"][0] == "96x64" and after["a.png"][1] != before["a.png"][1]
    assert after["a.png"][2] == "a red square"  # its caption file was not touched
    assert after["sub/c2.jpg"][1] == before["sub/c.jpg"][1]  # same bytes: its cached latents still apply
    assert second.refreshed is not None and second.refreshed.removed == 2  # b.png, and c.jpg under its old name

    third, backend = scan(dataset, cache)
    assert backend.images_read() == [] and facts(third) == after


def test_a_changed_or_removed_caption_is_read_without_reading_the_image(dataset: Path, cache: IndexFile) -> None:
    scan(dataset, cache)
    (dataset / "b.txt").write_text("a wide red one, edited")
    touch_later(dataset / "b.txt")
    (dataset / "sub" / "c.txt").unlink()

    second, backend = scan(dataset, cache)
    assert backend.images_read() == []
    assert second.refreshed is not None and second.refreshed.read_captions == 1
    assert facts(second)["b.png"][2] == "a wide red one, edited"
    assert [(s.path, s.reason) for s in second.skipped] == [("sub/c.jpg", "no caption")]

    (dataset / "sub" / "c.txt").write_text("back again")
    third, backend = scan(dataset, cache)
    assert backend.images_read() == [] and facts(third)["sub/c.jpg"][2] == "back again"


def test_a_changed_resolution_rebuckets_without_reading_an_image(dataset: Path, cache: IndexFile) -> None:
    small, _ = scan(dataset, cache, resolution=64)
    large, backend = scan(dataset, cache, resolution=128)
    assert backend.images_read() == []
    assert facts(small)["b.png"][0] == "128x64" and facts(large)["b.png"][0] == "256x128"
    assert [s.reason for s in scan(dataset, cache, resolution=128)[0].skipped] == []


def test_a_damaged_or_foreign_index_is_scanned_again(dataset: Path, cache: IndexFile,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    first, _ = scan(dataset, cache)
    cache.backend.write(cache.path, b"PK\x03\x04 not an index")
    with caplog.at_level(logging.WARNING):
        again, backend = scan(dataset, cache)
    assert backend.images_read() == ["a.png", "b.png", "sub/c.jpg"] and facts(again) == facts(first)
    assert "is damaged" in caplog.text
    # Made for another caption strategy: every fact is read again, nothing is trusted.
    by_name = DatasetEntry(id="photos", instance_data_dir="unused", caption_strategy="filename")
    renamed, backend = scan(dataset, cache, entry=by_name)
    assert backend.images_read() == ["a.png", "b.png", "sub/c.jpg"] and facts(renamed)["b.png"][2] == "b"


def test_only_the_writing_process_stores_the_index_and_progress_is_reported(dataset: Path, tmp_path: Path) -> None:
    reader = IndexFile(LocalDataBackend(tmp_path / "cache"), "index.npz", writable=False)
    reports: list[tuple[str, int, int]] = []
    scan(dataset, reader, progress=lambda *report: reports.append(report))
    assert not (tmp_path / "cache" / "index.npz").exists()
    assert reports[0] == ("photos", 0, 3) and reports[-1] == ("photos", 3, 3)
    writer = IndexFile(reader.backend, "index.npz")
    scan(dataset, writer)
    assert scan(dataset, reader)[1].images_read() == []  # another process reads what the writer stored


def test_the_bookkeeping_of_a_million_images_stays_under_300_bytes_each() -> None:
    count = 100_000
    table = ImageTable.empty(count)
    table.paths = PathColumn.from_list([f"shard-{i // 1000:04d}/image-{i:07d}.jpg" for i in range(count)])
    rng = np.random.default_rng(0)
    table.width[:] = rng.choice([512, 768, 1024, 1536], count)
    table.height[:] = rng.choice([512, 768, 1024, 1536], count)
    table.readable[:] = True
    table.caption_size[:] = 40
    table.caption_size[::1000] = NO_CAPTION_FILE
    table.digest[:] = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    scanned = build_scanned(ENTRY, LocalDataBackend(Path(".")), settings(512), table, seed=0)
    assert len(scanned.rows) == count - count // 1000
    per_image = scanned.nbytes / count
    assert per_image <= 300, per_image
    assert scanned.sample(5).placement.bucket == scanned.placements.bucket_names()[5]


def test_the_index_modules_examples_run() -> None:
    assert doctest.testmod(index_module).failed == 0


def test_aspect_ratio_bounds_and_max_num_samples_leave_images_out_by_name(dataset: Path, cache: IndexFile) -> None:
    # a.png 64×64 (1.0), b.png 128×64 (2.0), sub/c.jpg 64×96 (0.67)
    bounded = DatasetEntry(id="photos", instance_data_dir="unused", minimum_aspect_ratio=0.8,
                           maximum_aspect_ratio=1.5)
    scanned, _ = scan(dataset, cache, entry=bounded)
    assert [s.path for s in scanned.samples] == ["a.png"]
    assert scanned.skip_counts() == {"outside the aspect ratio range": 2}
    assert scanned.skip_summary() == ["2 outside the aspect ratio range (b.png, sub/c.jpg)"]

    for index in range(7):
        write_image(dataset / f"more-{index}.png", (64, 64), caption=f"square {index}")
    limited = DatasetEntry(id="photos", instance_data_dir="unused", max_num_samples=4)
    first, _ = scan(dataset, cache, entry=limited)
    assert len(first.samples) == 4 and first.skip_counts() == {"over max_num_samples": 6}
    again, _ = scan(dataset, cache, entry=limited)
    assert [s.path for s in again.samples] == [s.path for s in first.samples]  # the same images every run
    write_image(dataset / "added.png", (64, 64), caption="one more")
    grown, _ = scan(dataset, cache, entry=limited)
    # one image more changes the pick by at most one
    assert len({s.path for s in grown.samples} & {s.path for s in first.samples}) >= 3
    other = DatasetEntry(id="other", instance_data_dir="unused", max_num_samples=4)
    assert {s.path for s in scan(dataset, cache, entry=other)[0].samples} != {s.path for s in first.samples}
