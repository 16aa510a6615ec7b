"""The datasets file: entries parsed and validated, every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from simpletuner.core.config import parse_datasets
from simpletuner.core.config.datasets import default_text_embeds
from simpletuner.core.errors import ConfigError


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "pets"
    folder.mkdir()
    return folder


def parse(raw, root: Path, backends=None):  # type: ignore[no-untyped-def]
    known = backends or {"local": {}}
    return parse_datasets(raw, backend_option_types=known.get, resolve_path=lambda p: root / p, source="datasets.json")


def good_entries() -> list[dict]:
    return [
        {"id": "pets", "type": "local", "instance_data_dir": "pets", "caption_strategy": "textfile",
         "resolution": "1024", "resolution_type": "pixel_area", "crop": "true", "crop_style": "random",
         "crop_aspect": "closest", "repeats": 2, "probability": 0.5, "cache_dir_vae": "cache/vae"},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"},
    ]


def test_a_simpletuner_datasets_file_parses(images: Path) -> None:
    entries, warnings = parse(good_entries() + [{"id": "old", "instance_data_dir": "pets", "disabled": True,
                                                  "vae_cache_clear_each_epoch": False}], images.parent)
    pets = entries[0]
    assert (pets.resolution, pets.crop, pets.crop_style, pets.crop_aspect, pets.repeats) == (
        1024.0, True, "random", "closest", 2)
    assert default_text_embeds(entries).id == "text"
    assert warnings == ["$[2] (id 'old').vae_cache_clear_each_epoch: a SimpleTuner option that has no effect here; "
                        "remove it to silence this warning"]


def test_simpletuners_aws_type_means_the_s3_backend(images: Path) -> None:
    raw = good_entries()
    raw[0].update(type="aws", aws_bucket_name="bucket")
    entries, _ = parse(raw, images.parent, backends={"local": {}, "s3": {"aws_bucket_name": str}})
    assert entries[0].type == "s3" and entries[0].backend_options == {"aws_bucket_name": "bucket"}


def test_backend_specific_keys_are_kept(images: Path) -> None:
    raw = good_entries()
    raw[0]["type"] = "s3"
    raw[0]["aws_bucket_name"] = "bucket"
    entries, _ = parse(raw, images.parent, backends={"local": {}, "s3": {"aws_bucket_name": str}})
    assert entries[0].backend_options == {"aws_bucket_name": "bucket"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r.append(dict(r[0])), "dataset id 'pets' is used twice; ids must be unique"),
        (lambda r: r.pop(1), "no text_embeds dataset: add an entry with dataset_type 'text_embeds' (and default: "
                             "true) to hold the text-embedding cache"),
        (lambda r: r[0].update(instance_data_dir="missing"), "is not an existing folder"),
        (lambda r: r[0].update(caption_strategy="instanceprompt"),
         "dataset 'pets': caption_strategy 'instanceprompt' needs instance_prompt"),
        (lambda r: r[0].update(text_embeds="nope"), "dataset 'pets': text_embeds 'nope' is not an enabled "
                                                    "text_embeds dataset"),
        (lambda r: r[0].update(disabled=True), "no enabled image dataset"),
        (lambda r: r.append({"id": "t2", "dataset_type": "text_embeds", "default": True}),
         "need exactly one with default: true, found 2"),
        (lambda r: r[0].update(crop_style="middle"), "$[0] (id 'pets').crop_style: 'middle' is not one of center, "
                                                     "random, corner"),
        (lambda r: r[0].update(repeats="many"), "$[0] (id 'pets').repeats: expected int, got 'many'"),
        (lambda r: r[0].update(probability=2), "$[0] (id 'pets').probability: must be at most 1, got 2.0"),
        (lambda r: r[0].update(caption_stratgy="textfile"),
         "$[0] (id 'pets').caption_stratgy: unknown key (did you mean 'caption_strategy'?)"),
        (lambda r: r[0].update(type="ftp"), "$[0] (id 'pets').type: unknown data backend 'ftp'"),
        (lambda r: r[0].pop("id"), "$[0]: missing 'id'"),
        (lambda r: r.append("pets"), "$[2]: expected an object, got str"),
    ],
)
def test_problems_are_clear(images: Path, change, problem: str) -> None:  # type: ignore[no-untyped-def]
    raw = good_entries()
    change(raw)
    with pytest.raises(ConfigError) as info:
        parse(raw, images.parent)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_not_a_list() -> None:
    with pytest.raises(ConfigError, match=r"\$: expected a list of dataset objects"):
        parse({"id": "x"}, Path("."))


def test_all_problems_at_once(images: Path) -> None:
    raw = good_entries()
    raw[0]["repeats"] = "x"
    raw[1]["resolution_type"] = "megapixel"
    with pytest.raises(ConfigError) as info:
        parse(raw, images.parent)
    assert len(info.value.problems) == 2


def test_simpletuners_instance_prompt_keys_act_and_need_the_prompt(images: Path) -> None:
    from simpletuner.core.config import Layer, build_schema
    from simpletuner.core.plugins import Registry

    raw = good_entries()
    raw[0].update(only_instance_prompt=True, instance_prompt="a photo of sks dog", prepend_instance_prompt="true",
                  disable_multiline_split="false")
    entries, warnings = parse(raw, images.parent)
    pets = entries[0]
    assert (pets.caption_strategy, pets.prepend_instance_prompt, pets.disable_multiline_split) == (
        "instanceprompt", True, False)
    assert warnings == []
    for key in ("only_instance_prompt", "prepend_instance_prompt"):
        raw = good_entries()
        raw[0][key] = True
        with pytest.raises(ConfigError) as caught:
            parse(raw, images.parent)
        assert any(f"dataset 'pets': {key} needs instance_prompt" in p for p in caught.value.problems), caught.value

    # in a config they would act on every dataset: the way forward names the dataset keys
    with pytest.raises(ConfigError) as refused:
        build_schema(Registry()).load([Layer("env:t", {"prepend_instance_prompt": True, "instance_prompt": "sks"})],
                                      own_source="env:t")
    assert "set prepend_instance_prompt and instance_prompt on each dataset" in refused.value.problems[0]


def test_a_backend_implementing_an_entry_option_receives_it(images: Path) -> None:
    raw = good_entries()
    raw[0].update(max_num_samples="50", minimum_aspect_ratio=0.5, maximum_aspect_ratio="2")
    entries, _ = parse(raw, images.parent)
    assert (entries[0].max_num_samples, entries[0].minimum_aspect_ratio, entries[0].maximum_aspect_ratio) == (
        50, 0.5, 2.0)
    raw[0].update(type="hub", max_num_samples=50)
    entries, _ = parse(raw, images.parent, backends={"local": {}, "hub": {"max_num_samples": int}})
    assert entries[0].max_num_samples is None and entries[0].backend_options == {"max_num_samples": 50}
    raw = good_entries()
    raw[0]["max_num_samples"] = 0
    with pytest.raises(ConfigError, match="max_num_samples"):
        parse(raw, images.parent)
