"""A Hub dataset stored as parquet shards is read shard by shard: listing it downloads no shard (footers and the small
columns come by range requests), an image's shard is downloaded when one of its images is first read and only then,
few row groups are held in memory, and after a new revision a scan through the dataset's index reads again only the
rows of the shard that changed — the other shards are not downloaded again. Against the loopback dataset Hub."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import png, rows, use_datasets_cache
from hub_datasets import DatasetHub, dataset_hub, use_hub

from simpletuner.plugins.data_backends.huggingface import HuggingFaceDataBackend
from simpletuner.plugins.data_backends.huggingface_shards import ROW_GROUPS_HELD

pytestmark = pytest.mark.timeout(120)

SHARDS = 3
ROWS_PER_SHARD = 6
ROW_GROUP = 2


def shard_bytes(items: list[dict[str, Any]]) -> bytes:
    """One parquet shard as ``datasets`` writes it (the image column typed as images), with small row groups."""
    import datasets
    import pyarrow.parquet as pq

    features = datasets.Features({
        "image": datasets.Image(), "text": datasets.Value("string"), "meta": {"alt": datasets.Value("string")},
        "tags": datasets.Sequence(datasets.Value("string")), "width": datasets.Value("int32"),
        "height": datasets.Value("int32")})
    table = datasets.Dataset.from_list(items, features=features).data.table
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=ROW_GROUP)
    return out.getvalue()


def repository(items: list[dict[str, Any]]) -> dict[str, bytes]:
    """A dataset repository holding ``items`` in ``SHARDS`` shards named as the Hub names them."""
    return {f"data/train-{i:05d}-of-{SHARDS:05d}.parquet":
            shard_bytes(items[i * ROWS_PER_SHARD:(i + 1) * ROWS_PER_SHARD]) for i in range(SHARDS)}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatasetHub]:
    use_datasets_cache(monkeypatch, tmp_path / "hf-datasets-cache")
    with dataset_hub() as served:
        use_hub(monkeypatch, served.base_url, tmp_path / "hub-cache")
        yield served


def full_downloads(hub: DatasetHub) -> list[str]:
    """The parquet files fetched whole (a GET without a range)."""
    return [name for method, name, asked in hub.reads if method == "GET" and asked is None
            and name.endswith(".parquet")]


def backend() -> HuggingFaceDataBackend:
    return HuggingFaceDataBackend.from_options("", {"dataset_name": "owner/big", "caption_column": "text",
                                                    "fallback_caption_column": "meta.alt"})  # type: ignore[return-value]


def test_listing_downloads_no_shard_and_an_image_downloads_only_its_own(hub: DatasetHub, tmp_path: Path) -> None:
    from PIL import Image

    items = rows(SHARDS * ROWS_PER_SHARD, size=32)
    hub.publish("owner/big", repository(items))
    reader = backend()
    images = reader.list(extensions={"png"})
    assert images == [f"row-{i:08d}.png" for i in range(SHARDS * ROWS_PER_SHARD)]
    assert reader.read("row-00000013.txt") == b"a square number 13"
    assert reader.read("row-00000008.txt") == b"nested caption 8"  # the fallback column, read without images
    assert full_downloads(hub) == []
    assert any(asked for _, _, asked in hub.reads)  # footers and small columns came by range requests
    assert not list((tmp_path / "hub-cache").rglob("*.parquet"))

    with Image.open(io.BytesIO(reader.read("row-00000007.png"))) as image:
        assert image.size == (32, 48)
    assert [name.rsplit("/", 1)[-1] for name in full_downloads(hub)] == ["train-00001-of-00003.parquet"]
    for path in images:  # reading every image downloads each shard once, holding few row groups
        assert reader.read(path) == reader.read(path)
    assert sorted(name.rsplit("/", 1)[-1] for name in full_downloads(hub)) == [
        f"train-{i:05d}-of-00003.parquet" for i in range(SHARDS)]
    assert reader.catalogue().source.held_row_groups <= ROW_GROUPS_HELD


def test_a_new_revision_reads_again_only_the_changed_shard(hub: DatasetHub) -> None:
    from simpletuner.core.datasets.index import ScanContext, refresh
    from simpletuner.core.datasets.scan import IMAGE_EXTENSIONS

    items = rows(SHARDS * ROWS_PER_SHARD, size=32)
    hub.publish("owner/big", repository(items))
    first = backend()
    context = ScanContext(location=first.location, caption_strategy="huggingface", instance_prompt="")
    scanned = refresh(first, context, None, IMAGE_EXTENSIONS, threads=2)
    assert scanned.read_images == SHARDS * ROWS_PER_SHARD

    items[ROWS_PER_SHARD + 1]["image"] = {"bytes": png(32, 32, (255, 0, 0)), "path": None}  # a row of shard 1
    hub.publish("owner/big", repository(items))
    hub.reads.clear()
    again = refresh(backend(), context, scanned.table, IMAGE_EXTENSIONS, threads=2)
    assert again.read_images == ROWS_PER_SHARD  # the changed shard's rows, not the others
    assert [name.rsplit("/", 1)[-1] for name in full_downloads(hub)] == ["train-00001-of-00003.parquet"]
    changed = again.table.paths.tolist().index(f"row-{ROWS_PER_SHARD + 1:08d}.png")
    assert again.table.digest[changed].tobytes() != scanned.table.digest[changed].tobytes()
    assert again.table.digest[0].tobytes() == scanned.table.digest[0].tobytes()


def test_offline_a_copy_missing_shards_is_refused_and_a_complete_one_is_read(hub: DatasetHub,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from huggingface_hub import constants

    from simpletuner.core.errors import DataBackendError

    hub.publish("owner/big", repository(rows(SHARDS * ROWS_PER_SHARD, size=32)))
    online = backend()
    online.read("row-00000000.png")  # only the first shard is downloaded
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataBackendError, match="HF_HUB_OFFLINE is set and only part of the dataset "
                                              "was downloaded before; run once online"):
        backend().check()

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    for path in online.list(extensions={"png"}):
        online.read(path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    offline = backend()
    offline.check()
    assert offline.list() == online.list()
    assert offline.read("row-00000017.png") == online.read("row-00000017.png")


def test_other_caption_columns_read_the_captions_again(hub: DatasetHub) -> None:
    from simpletuner.core.datasets.index import ScanContext, refresh
    from simpletuner.core.datasets.scan import IMAGE_EXTENSIONS

    hub.publish("owner/big", repository(rows(SHARDS * ROWS_PER_SHARD, size=32)))
    first = backend()
    context = ScanContext(location=first.location, caption_strategy="huggingface", instance_prompt="")
    scanned = refresh(first, context, None, IMAGE_EXTENSIONS, threads=2)
    nested = HuggingFaceDataBackend.from_options("", {"dataset_name": "owner/big", "caption_column": "meta.alt"})
    again = refresh(nested, context, scanned.table, IMAGE_EXTENSIONS, threads=2)
    # the images are known, every caption is read again: its embedding must be the new caption's
    assert (again.read_images, again.read_captions) == (0, SHARDS * ROWS_PER_SHARD)
    assert again.table.caption_digest[0].tobytes() != scanned.table.caption_digest[0].tobytes()


def test_with_size_columns_a_scan_for_latents_encoded_while_training_downloads_no_shard(hub: DatasetHub) -> None:
    """``vae_cache_ondemand`` scans with the sizes of the width and height columns: no image is read, so no shard
    is downloaded before training reads its rows; a new revision changes the keys of the changed shard's rows."""
    from simpletuner.core.datasets.index import ScanContext, refresh
    from simpletuner.core.datasets.scan import IMAGE_EXTENSIONS

    items = rows(SHARDS * ROWS_PER_SHARD, size=32)
    items[4]["width"] = None  # a row without its size is read as before
    hub.publish("owner/big", repository(items))

    def sized() -> HuggingFaceDataBackend:
        return HuggingFaceDataBackend.from_options("", {  # type: ignore[return-value]
            "dataset_name": "owner/big", "caption_column": "text", "fallback_caption_column": "meta.alt",
            "width_column": "width", "height_column": "height"})

    reader = sized()
    context = ScanContext(location=reader.location, caption_strategy="huggingface", instance_prompt="",
                          sizes_from_backend=True)
    scanned = refresh(reader, context, None, IMAGE_EXTENSIONS, threads=2)
    paths = scanned.table.paths.tolist()
    sizes = [(int(scanned.table.width[i]), int(scanned.table.height[i])) for i in range(len(paths))]
    assert sizes == [(32, 32 + 16 * (i % 2)) for i in range(SHARDS * ROWS_PER_SHARD)]
    assert scanned.table.readable.all()
    # only the shard of the row without a size was fetched, to read that one image
    assert [name.rsplit("/", 1)[-1] for name in full_downloads(hub)] == ["train-00000-of-00003.parquet"]
    assert ScanContext(location=reader.location, caption_strategy="huggingface", instance_prompt="").key() \
        != context.key()  # an index made one way is not used the other way

    items[ROWS_PER_SHARD + 1]["image"] = {"bytes": png(32, 48, (255, 0, 0)), "path": None}
    hub.publish("owner/big", repository(items))
    hub.reads.clear()
    again = refresh(sized(), context, scanned.table, IMAGE_EXTENSIONS, threads=2)
    assert full_downloads(hub) == []
    changed = [i for i in range(len(paths))
               if again.table.digest[i].tobytes() != scanned.table.digest[i].tobytes()]
    assert changed == list(range(ROWS_PER_SHARD, 2 * ROWS_PER_SHARD))  # keyed by the shard's stamp


@pytest.mark.parametrize(("width", "height", "size"), [
    (512, 768, (512, 768)), (512.0, 768, (512, 768)), (512.5, 768, None), (0, 768, None), (-512, 768, None),
    (True, 768, None), ("512", 768, None), (None, 768, None), (1 << 20, 768, None), (1 << 40, 768, None)])
def test_only_plausible_whole_pixel_counts_size_a_row(width: Any, height: Any, size: Any) -> None:
    from simpletuner.plugins.data_backends.huggingface_catalogue import _size_of

    assert _size_of({"w": width, "h": height}, "w", "h") == size
    assert _size_of({"w": width, "h": height}, None, "h") is None
