"""The ``huggingface`` sub-object of a huggingface dataset entry (SimpleTuner's keys): its column keys, the row filters
of ``filter_func`` (collection, quality thresholds, minimum sizes) on a local parquet dataset, and errors naming an
unknown or refused key, a filter given as anything but declared values, and a column a filter reads that is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import png, use_datasets_cache

from simpletuner.core.errors import DataBackendError
from simpletuner.plugins.data_backends.huggingface import HuggingFaceDataBackend

pytestmark = pytest.mark.timeout(120)

#: (collection, aesthetic score or None for no assessment, width, height) of each row
ROWS = [("photo", 6.0, 640, 480), ("art", 7.0, 640, 480), ("photo", 4.0, 640, 480), ("photo", 5.5, 320, 480),
        ("photo", None, 640, 480), ("artwork", 5.0, 512, 512), ("photo", 8.0, 640, 300), ("photo", 5.0, 800, 600)]


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_datasets_cache(monkeypatch, tmp_path / "hf-datasets-cache")


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    """A dataset whose rows carry a collection, a quality assessment (a struct, as Subjects200K stores it, and the
    same as JSON text) and their sizes; images are small, the size columns say what the filters read."""
    import datasets

    features = datasets.Features({
        "image": datasets.Image(), "caption": datasets.Value("string"), "collection": datasets.Value("string"),
        "quality_assessment": {"aesthetic_score": datasets.Value("float32"),
                               "technical": datasets.Value("float32")},
        "scores_json": datasets.Value("string"),
        "description": {"main_subject": datasets.Value("string"), "description": datasets.Value("string")},
        "original_width": datasets.Value("int32"), "original_height": datasets.Value("int32"),
    })
    items: list[dict[str, Any]] = []
    for i, (collection, score, width, height) in enumerate(ROWS):
        assessment = None if score is None else {"aesthetic_score": score, "technical": 0.9}
        items.append({"image": {"bytes": png(32, 32, (i * 20, 10, 10)), "path": None},
                      "caption": "" if i == 7 else f"caption {i}", "collection": collection,
                      "quality_assessment": assessment, "scores_json": json.dumps(assessment) if assessment else "",
                      "description": {"main_subject": "a lamp", "description": f"described {i}"},
                      "original_width": width, "original_height": height})
    path = tmp_path / "scored" / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    datasets.Dataset.from_list(items, features=features).to_parquet(str(path))
    return tmp_path / "scored"


def rows_of(dataset: Path, **options: Any) -> list[int]:
    """The row numbers the backend serves as images."""
    backend = HuggingFaceDataBackend.from_options("", {"dataset_name": str(dataset), "caption_column": "caption",
                                                       **options})
    return sorted(int(p.split("-")[1].split(".")[0]) for p in backend.list(extensions={"png"}))


@pytest.mark.parametrize(("filters", "expected"), [
    ({"collection": "photo"}, [0, 2, 3, 4, 6, 7]),
    ({"collection": ["art", "artwork"]}, [1, 5]),
    # a row without an assessment fails; a score equal to its threshold passes
    ({"quality_thresholds": {"aesthetic_score": 5.5}}, [0, 1, 3, 6]),
    ({"quality_thresholds": {"aesthetic_score": 5.0, "technical": 0.95}}, []),
    ({"quality_thresholds": {"aesthetic_score": 5.5}, "quality_column": "scores_json"}, [0, 1, 3, 6]),
    ({"min_width": 512}, [0, 1, 2, 4, 5, 6, 7]),
    ({"min_width": 512, "min_height": 480}, [0, 1, 2, 4, 5, 7]),
    ({"collection": "photo", "quality_thresholds": {"aesthetic_score": 5.0}, "min_height": 400}, [0, 3, 7]),
])
def test_filters_keep_the_rows_that_pass_every_test(scored: Path, filters: dict[str, Any],
                                                    expected: list[int]) -> None:
    hub = {"width_column": "original_width", "height_column": "original_height", "filter_func": filters}
    assert rows_of(scored, huggingface=hub) == expected


def test_size_filters_read_the_entry_s_own_width_and_height_columns(scored: Path) -> None:
    options = {"width_column": "original_width", "height_column": "original_height"}
    assert rows_of(scored, **options, huggingface={"filter_func": {"min_height": 481}}) == [5, 7]


def test_max_num_samples_picks_among_the_kept_rows_the_same_way_every_run(scored: Path) -> None:
    hub = {"filter_func": {"collection": "photo"}}
    first = rows_of(scored, huggingface=hub, max_num_samples=3)
    assert len(first) == 3 and set(first) <= {0, 2, 3, 4, 6, 7}
    assert rows_of(scored, huggingface=hub, max_num_samples=3) == first


def test_the_sub_object_s_column_keys_apply(scored: Path) -> None:
    backend = HuggingFaceDataBackend.from_options("", {"dataset_name": str(scored), "huggingface": {
        "caption_column": "caption", "description_column": "description", "file_extension": "jpg", "num_proc": 4}})
    assert backend.read("row-00000000.txt") == b"caption 0"
    # row 7 has an empty caption: its description object captions it
    assert backend.read("row-00000007.txt") == b"a lamp described 7"


@pytest.mark.parametrize(("options", "message"), [
    ({"huggingface": {"filter_func": {"min_aesthetic": 5}}},
     "huggingface.filter_func: unknown filter 'min_aesthetic'; the filters are collection, quality_thresholds, "
     "quality_column, min_width, min_height"),
    ({"huggingface": {"filter_func": "lambda item: item['score'] > 5"}},
     "huggingface.filter_func: expected an object of filters"),
    ({"huggingface": {"filter_func": {"quality_thresholds": {"aesthetic_score": "high"}}}},
     "huggingface.filter_func.quality_thresholds.aesthetic_score: expected a number, got 'high'"),
    ({"huggingface": {"filter_func": {"min_width": -1}}}, "huggingface.filter_func.min_width: must be at least 0"),
    ({"huggingface": {"filter_func": {"collection": []}}}, "huggingface.filter_func.collection: expected"),
    ({"huggingface": {"caption_colum": "caption"}}, "huggingface: unknown key 'caption_colum'; its keys are "
                                                    "image_column, caption_column"),
    ({"huggingface": {"bbox_column": "boxes"}},
     "huggingface.bbox_column: bounding-box (grounding) conditioning is not trained here"),
    ({"huggingface": {"composite_image_config": {"enabled": True, "image_count": 2, "select_index": 2}}},
     "huggingface.composite_image_config.select_index: 2 is not one of the 2 pictures (0 to 1)"),
    ({"huggingface": {"composite_image_config": {"enabled": True, "image_count": 0}}},
     "huggingface.composite_image_config.image_count: expected a whole number of at least 1, got 0"),
    ({"huggingface": {"composite_image_config": {"enabled": "yes"}}},
     "huggingface.composite_image_config.enabled: expected true or false, got 'yes'"),
    ({"huggingface": {"composite_image_config": {"enabled": True, "split": "rows"}}},
     "huggingface.composite_image_config: unknown key 'split'; its keys are enabled, image_count, select_index"),
    ({"huggingface": {"video_column": "clip"}}, "huggingface.video_column: video datasets are not trained here"),
    ({"caption_column": "caption", "huggingface": {"caption_column": "description.description"}},
     "caption_column is ['caption'] and huggingface.caption_column is 'description.description'; keep one"),
])
def test_bad_sub_objects_are_refused_naming_the_key(scored: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(DataBackendError) as raised:
        HuggingFaceDataBackend.from_options("", {"dataset_name": str(scored), **options})
    assert message in str(raised.value)


def test_a_disabled_composite_config_is_accepted(scored: Path) -> None:
    assert rows_of(scored, huggingface={"composite_image_config": {"enabled": False}}) == list(range(8))


def test_a_filter_reading_a_missing_column_names_it_and_the_columns_there_are(scored: Path) -> None:
    backend = HuggingFaceDataBackend.from_options("", {"dataset_name": str(scored), "caption_column": "caption",
                                                       "huggingface": {"filter_func": {"min_width": 512}}})
    with pytest.raises(DataBackendError, match=r"no column 'width' \(read by huggingface.filter_func.min_width\); "
                                               r"its columns are image, caption, collection"):
        backend.list()


def test_config_check_accepts_filters_and_names_an_unknown_one(workspace: Any, tiny_flux: Path, scored: Path,
                                                               tmp_path: Path, run_cli: Any) -> None:
    from s3_helpers import tiny_config, write_env

    env = {"HF_DATASETS_CACHE": str(tmp_path / "hf-datasets-cache")}  # the one the autouse fixture set here

    def entries(filters: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": "scored", "type": "huggingface", "dataset_name": str(scored), "caption_strategy": "huggingface",
                 "metadata_backend": "huggingface", "cache_dir_vae": "cache/vae/scored",
                 "huggingface": {"caption_column": "caption", "filter_func": filters}},
                {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"}]

    write_env(workspace.configs_dir, "good", tiny_config(tiny_flux, "good"),
              entries({"collection": "photo", "quality_thresholds": {"aesthetic_score": 5.0}}))
    result = run_cli("config", "check", "--env", "good", env=env)
    assert result.returncode == 0, result.stderr

    write_env(workspace.configs_dir, "bad", tiny_config(tiny_flux, "bad"), entries({"min_score": 5}))
    result = run_cli("config", "check", "--env", "bad", env=env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert lines == ["  - dataset 'scored': huggingface.filter_func: unknown filter 'min_score'; the filters are "
                     "collection, quality_thresholds, quality_column, min_width, min_height"], result.stderr


def test_composite_images_train_on_the_selected_picture(tmp_path: Path) -> None:
    import io

    import datasets
    from PIL import Image

    pair = Image.new("RGB", (64, 32), (255, 0, 0))
    pair.paste((0, 0, 255), (32, 0, 64, 32))  # left red, right blue, side by side as Subjects200K stores pairs
    encoded = io.BytesIO()
    pair.save(encoded, format="JPEG", quality=95)
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    path = tmp_path / "pairs" / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    datasets.Dataset.from_list([{"image": {"bytes": encoded.getvalue(), "path": "pair.jpg"}, "caption": "a pair"}],
                               features=features).to_parquet(str(path))

    def served(index: int) -> tuple[str, Any]:
        backend = HuggingFaceDataBackend.from_options("", {
            "dataset_name": str(tmp_path / "pairs"), "caption_column": "caption",
            "huggingface": {"composite_image_config": {"enabled": True, "image_count": 2, "select_index": index}}})
        [name] = backend.list(extensions={"png", "jpg"})
        with Image.open(io.BytesIO(backend.read(name))) as image:
            return backend.location, (image.format, image.size, image.convert("RGB").getpixel((16, 16)))

    left, right = served(0), served(1)
    assert left[0].endswith("(split train, picture 1 of 2)")  # another picture is another set of images to scan
    assert left[1][:2] == right[1][:2] == ("PNG", (32, 32))
    assert left[1][2][0] > 200 > left[1][2][2] and right[1][2][2] > 200 > right[1][2][0]
    plain = HuggingFaceDataBackend.from_options("", {"dataset_name": str(tmp_path / "pairs"),
                                                     "caption_column": "caption"})
    assert plain.list(extensions={"png", "jpg"}) == ["row-00000000.jpg"]  # the stored file name's extension
