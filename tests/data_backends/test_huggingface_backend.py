"""The huggingface data backend on local parquet datasets (written the way the Hub stores them) and a loopback Hub
stand-in: rows as images and captions, caption column shapes, the max_num_samples pick, and one-line errors for a
missing column, an unknown dataset, an unreachable Hub and an offline machine without a copy."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import png, rows, use_datasets_cache, write_parquet
from hub_server import fake_hub

from simpletuner.core.errors import DataBackendError
from simpletuner.plugins.data_backends.huggingface import HuggingFaceDataBackend

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache of the ``datasets`` library (it converts every dataset it opens into it)."""
    cache = tmp_path / "hf-datasets-cache"
    use_datasets_cache(monkeypatch, cache)
    return cache


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A six-row dataset folder."""
    folder = tmp_path / "pets"
    write_parquet(folder, rows(6))
    return folder


def backend(dataset: Path | str, **options: Any) -> HuggingFaceDataBackend:
    return HuggingFaceDataBackend.from_options("", {"dataset_name": str(dataset), **options})  # type: ignore[return-value]


def test_rows_are_images_and_captions(dataset: Path) -> None:
    from PIL import Image

    hf = backend(dataset, caption_column="text")
    images = hf.list(extensions={"png", "jpg"})
    assert images == [f"row-{i:08d}.png" for i in range(6)]
    assert "row-00000002.txt" not in hf.list() and not hf.exists("row-00000002.txt")  # an empty caption is no caption
    assert hf.read("row-00000004.txt") == b"a square number 4"
    with Image.open(io.BytesIO(hf.read("row-00000001.png"))) as image:
        assert image.size == (128, 144)
    with pytest.raises(FileNotFoundError):
        hf.read("row-00000009.png")
    with pytest.raises(DataBackendError, match="read-only"):
        hf.write("row-00000000.txt", b"x")


@pytest.mark.parametrize(("options", "row", "caption"), [
    ({"caption_column": "meta.alt"}, 0, "nested caption 0"),
    ({"caption_column": ["text", "meta.alt"]}, 2, "nested caption 2"),  # the first non-empty column
    ({"caption_column": ["text", "meta.alt"]}, 1, "a square number 1"),
    ({"caption_column": "tags"}, 2, "tag caption 2"),  # a list's non-empty strings, one caption a line
    ({"caption_column": "tags"}, 3, "tag caption 3\nanother tag caption 3"),
    ({"caption_column": "text", "fallback_caption_column": "meta.alt"}, 5, "nested caption 5"),
])
def test_caption_column_shapes(dataset: Path, options: dict[str, Any], row: int, caption: str) -> None:
    assert backend(dataset, **options).read(f"row-{row:08d}.txt").decode() == caption


def test_a_column_of_lists_gives_each_image_its_captions(dataset: Path) -> None:
    from simpletuner.core.config.datasets import DatasetEntry
    from simpletuner.core.datasets.buckets import ResolutionSettings
    from simpletuner.core.datasets.scan import scan_dataset

    settings = ResolutionSettings(resolution=128, resolution_type="pixel", minimum_image_size=64, alignment=16)
    for split, counts in ((False, [1, 2, 1, 2, 1, 2]), (True, [1] * 6)):
        entry = DatasetEntry(id="tags", type="huggingface", caption_strategy="huggingface",
                             disable_multiline_split=split)
        scanned = scan_dataset(entry, backend(dataset, caption_column="tags"), settings)
        assert [scanned.caption_count(i) for i in range(6)] == counts
    assert scanned.caption(3) == "tag caption 3\nanother tag caption 3"


def test_max_num_samples_picks_the_same_rows_every_time(dataset: Path) -> None:
    first = backend(dataset, max_num_samples=3).list(extensions={"png"})
    assert len(first) == 3
    assert backend(dataset, max_num_samples=3).list(extensions={"png"}) == first
    assert backend(dataset, max_num_samples=50).list(extensions={"png"}) == [f"row-{i:08d}.png" for i in range(6)]


def test_a_single_parquet_file_is_a_dataset(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "one", rows(2))
    assert backend(path).list(extensions={"png"}) == ["row-00000000.png", "row-00000001.png"]


def test_a_missing_column_names_the_columns_there_are(dataset: Path) -> None:
    for options, missing in (({"caption_column": "caption"}, "caption"), ({"image_column": "img"}, "img"),
                             ({"caption_column": "meta.title"}, "meta.title")):
        with pytest.raises(DataBackendError) as caught:
            backend(dataset, **options).check()
        message = str(caught.value)
        assert f"no column {missing!r}" in message and "image, text, meta, tags, width, height" in message
        assert "\n" not in message


def test_a_column_that_is_not_images_is_refused(dataset: Path) -> None:
    with pytest.raises(DataBackendError, match="column 'text' holds .*not images"):
        backend(dataset, image_column="text").list()


def test_an_unknown_split_is_one_line(dataset: Path) -> None:
    with pytest.raises(DataBackendError, match="fix split") as caught:
        backend(dataset, split="validation").check()
    assert "\n" not in str(caught.value)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_an_unknown_hub_dataset_is_named(monkeypatch: pytest.MonkeyPatch, online: None) -> None:
    from huggingface_hub import constants

    with fake_hub() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.base_url)
        with pytest.raises(DataBackendError, match="no dataset 'nobody/no-such-dataset'.*fix dataset_name"):
            backend("nobody/no-such-dataset").check()
        assert any(path.startswith("/api/datasets/nobody/no-such-dataset") for _, path in hub.requests)


def test_an_unreachable_hub_is_one_line(monkeypatch: pytest.MonkeyPatch, online: None) -> None:
    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    with pytest.raises(DataBackendError, match=f"cannot reach the Hub at {closed}.*HF_HUB_OFFLINE=1") as caught:
        backend("owner/pets").check()
    assert "\n" not in str(caught.value)


def test_offline_without_a_downloaded_copy_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataBackendError, match="HF_HUB_OFFLINE is set and the dataset was not downloaded"):
        backend("owner/never-downloaded").check()


def _parquet(tmp_path: Path, items: list[dict[str, Any]], name: str) -> dict[str, bytes]:
    """The files of a Hub dataset repository holding ``items``."""
    path = write_parquet(tmp_path / name, items)
    return {"data/train-00000-of-00001.parquet": path.read_bytes()}


def test_a_hub_dataset_by_repo_id_and_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub_datasets import dataset_hub, use_hub

    items = rows(3)
    with dataset_hub() as hub:
        use_hub(monkeypatch, hub.base_url, tmp_path / "hub-cache")
        first = hub.publish("owner/pets", _parquet(tmp_path, items, "v1"))
        items[1]["text"] = "the second version"
        second = hub.publish("owner/pets", _parquet(tmp_path, items, "v2"))

        backend("owner/pets").check()
        latest = backend("owner/pets")
        assert latest.list(extensions={"png"}) == ["row-00000000.png", "row-00000001.png", "row-00000002.png"]
        assert latest.read("row-00000001.txt") == b"the second version"
        assert backend("owner/pets", revision=first).read("row-00000001.txt") == b"a square number 1"
        assert backend("owner/pets", revision=second).read("row-00000000.png") == latest.read("row-00000000.png")
        with pytest.raises(DataBackendError, match="no revision 'v9'; fix revision"):
            backend("owner/pets", revision="v9").check()


def test_a_downloaded_hub_dataset_is_used_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from hub_datasets import dataset_hub, use_hub
    from huggingface_hub import constants

    with dataset_hub() as hub:
        use_hub(monkeypatch, hub.base_url, tmp_path / "hub-cache")
        hub.publish("owner/pets", _parquet(tmp_path, rows(3), "v1"))
        reader = backend("owner/pets")
        online = reader.list()
        for path in online:  # as a scan does: the shard is downloaded when its images are read
            reader.read(path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    offline = backend("owner/pets")
    offline.check()  # offline, the check opens the downloaded copy instead of asking the Hub
    assert offline.list() == online
    assert offline.read("row-00000000.txt") == b"a square number 0"


def test_another_format_is_loaded_whole_and_its_image_files_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "folder-dataset" / "train"
    folder.mkdir(parents=True)
    pictures = {"a.png": png(64, 64, (10, 20, 30)), "b.png": png(64, 80, (200, 20, 30))}
    for name, data in pictures.items():
        (folder / name).write_bytes(data)
    (folder / "metadata.jsonl").write_text("".join(
        f'{{"file_name": "{name}", "text": "picture {name[0]}"}}\n' for name in pictures))
    hf = backend(tmp_path / "folder-dataset", caption_column="text")
    assert hf.list() == ["row-00000000.png", "row-00000000.txt", "row-00000001.png", "row-00000001.txt"]
    assert {hf.read("row-00000000.png"), hf.read("row-00000001.png")} == set(pictures.values())
    assert hf.read("row-00000001.txt") in (b"picture a", b"picture b")


def test_a_row_naming_a_file_elsewhere_never_makes_it_read(tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    outside = tmp_path / "private" / "secret.png"
    outside.parent.mkdir()
    outside.write_bytes(png(64, 64, (1, 2, 3)))
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    table = pa.Table.from_pylist([{"image": {"bytes": None, "path": str(outside)}, "text": "a stolen picture"}],
                                 schema=features.arrow_schema)
    dataset = tmp_path / "hostile" / "data" / "train-00000-of-00001.parquet"
    dataset.parent.mkdir(parents=True)
    pq.write_table(table, dataset)
    hf = backend(tmp_path / "hostile")
    assert hf.list(extensions={"png"}) == ["row-00000000.png"]
    with pytest.raises(FileNotFoundError, match="has no image"):
        hf.read("row-00000000.png")
