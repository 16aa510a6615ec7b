"""Aspect buckets and the dataset scan: sizes per resolution type, crops, skipped images reported by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.datasets.buckets import ResolutionSettings, bucket_size, place, too_small
from simpletuner.core.datasets.scan import DatasetError, scan_dataset
from simpletuner.plugins.data_backends.local import LocalDataBackend


def settings(**kw: object) -> ResolutionSettings:
    values = {"resolution": 512, "resolution_type": "pixel", "minimum_image_size": 512, "alignment": 64}
    values.update(kw)
    return ResolutionSettings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("size", "expected"), [
    ((1024, 1024), (512, 512)),
    ((1536, 1024), (768, 512)),
    ((1024, 1536), (512, 768)),
    ((2048, 1024), (1024, 512)),
    ((1000, 1333), (512, 704)),
])
def test_pixel_buckets_keep_the_short_edge(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert bucket_size(*size, settings()) == expected


def test_area_buckets_hold_about_the_same_pixels() -> None:
    area = settings(resolution=0.25, resolution_type="area", minimum_image_size=0.1)
    pixel_area = settings(resolution=512, resolution_type="pixel_area", minimum_image_size=256)
    for s in (area, pixel_area):
        w, h = bucket_size(2000, 1000, s)
        assert w % 64 == 0 and h % 64 == 0 and w > h
        assert abs(w * h - 512 * 512) / (512 * 512) < 0.15
    assert bucket_size(1000, 1000, area) == (512, 512)


def test_square_and_closest_crops() -> None:
    square = settings(crop=True, crop_aspect="square")
    assert place(1536, 1024, square).bucket == "512x512"
    closest = settings(crop=True, crop_aspect="closest")
    assert place(1600, 1000, closest).bucket == "768x512"  # 1.6 is closest to 3:2
    corner = place(1536, 1024, settings(crop=True, crop_style="corner"))
    assert corner.crop_box[:2] == (0, 0)
    random_a = place(3000, 1000, settings(crop=True, crop_aspect="square", crop_style="random"), seed=1)
    random_b = place(3000, 1000, settings(crop=True, crop_aspect="square", crop_style="random"), seed=1)
    assert random_a == random_b and random_a.crop_box[2] - random_a.crop_box[0] == 512


def test_placements_never_shrink_the_image_below_the_bucket() -> None:
    for size in ((640, 512), (512, 900), (777, 555)):
        p = place(*size, settings(minimum_image_size=500))
        assert p.resized[0] >= p.width and p.resized[1] >= p.height
        left, top, right, bottom = p.crop_box
        assert right - left == p.width and bottom - top == p.height and right <= p.resized[0]


def test_too_small_by_resolution_type() -> None:
    assert too_small(500, 900, settings())
    assert not too_small(512, 900, settings())
    assert too_small(400, 400, settings(resolution_type="area", resolution=0.25, minimum_image_size=0.25))


def _image(path: Path, size: tuple[int, int], caption: str | None = "a thing") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption)


def test_scan_reports_small_corrupt_and_uncaptioned_images(tmp_path: Path) -> None:
    _image(tmp_path / "square.png", (128, 128))
    _image(tmp_path / "wide.jpg", (256, 128))
    _image(tmp_path / "tall.webp", (128, 192))
    _image(tmp_path / "tiny.png", (64, 64))
    _image(tmp_path / "nocaption.png", (128, 128), caption=None)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "broken.txt").write_text("x")
    entry = DatasetEntry(id="d", instance_data_dir=str(tmp_path))
    scanned = scan_dataset(entry, LocalDataBackend(tmp_path), settings(resolution=128, minimum_image_size=128))
    buckets = {s.path: s.placement.bucket for s in scanned.samples}
    assert buckets == {"square.png": "128x128", "wide.jpg": "256x128", "tall.webp": "128x192"}
    reasons = {s.path: s.reason for s in scanned.skipped}
    assert reasons == {"tiny.png": "too small", "broken.png": "unreadable", "nocaption.png": "no caption"}
    summary = " ".join(scanned.skip_summary())
    assert "1 too small (tiny.png)" in summary and "1 unreadable (broken.png)" in summary


def test_captions_by_filename_and_instance_prompt(tmp_path: Path) -> None:
    _image(tmp_path / "a_red-cat.png", (128, 128), caption=None)
    backend = LocalDataBackend(tmp_path)
    s = settings(resolution=128, minimum_image_size=128)
    by_name = scan_dataset(DatasetEntry(id="d", caption_strategy="filename"), backend, s)
    assert by_name.samples[0].caption == "a red cat"
    prompt = DatasetEntry(id="d", caption_strategy="instanceprompt", instance_prompt="sks cat")
    assert scan_dataset(prompt, backend, s).samples[0].caption == "sks cat"


def test_empty_and_unusable_datasets_are_errors(tmp_path: Path) -> None:
    entry = DatasetEntry(id="empty", instance_data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="has no images"):
        scan_dataset(entry, LocalDataBackend(tmp_path), settings())
    _image(tmp_path / "small.png", (32, 32))
    with pytest.raises(DatasetError, match=r"none of its 1 images can train: 1 too small \(small.png\)"):
        scan_dataset(entry, LocalDataBackend(tmp_path), settings())
