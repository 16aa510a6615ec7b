"""The datasets file (``multidatabackend*.json``): a list of dataset entries, parsed and validated like configs.

Example of a valid file::

    [
      {"id": "pets", "type": "local", "instance_data_dir": "datasets/pets", "caption_strategy": "textfile",
       "resolution": 1024, "resolution_type": "pixel_area", "cache_dir_vae": "cache/vae/pets"},
      {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true,
       "cache_dir": "cache/text"}
    ]
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.caption_shuffle import CaptionShuffle, structure_caption_shuffle
from simpletuner.core.config.converter import ValueTypeError, make_converter, structure_value
from simpletuner.core.config.core_options import RESOLUTION_TYPES
from simpletuner.core.config.legacy import DATA_BACKEND_ALIASES, DATASET_ALIASES, LEGACY_DATASET_KEYS, NO_EFFECT
from simpletuner.core.config.placeholders import expand_placeholders
from simpletuner.core.config.refusals import REFUSED_DATASET_KEYS, dataset_refusals
from simpletuner.core.errors import ConfigError
from simpletuner.core.options import PATH, bound_problems, option

DATASET_TYPES = ("image", "text_embeds", "image_embeds")
CAPTION_STRATEGIES = ("textfile", "filename", "instanceprompt", "huggingface")


@attrs.define(kw_only=True)
class DatasetEntry:
    """One dataset of the datasets file. Unset resolution settings fall back to the training config's."""

    id: str = option(help="A unique name of this dataset.", section="dataset")
    type: str = option("local", help="The data backend storing it (local, or a plugin's).", section="dataset",
                       choices_from="data_backend")
    dataset_type: str = option("image", help="image (training images) or text_embeds (the text-embedding cache).",
                               section="dataset", choices=DATASET_TYPES)
    instance_data_dir: str | None = option(None, help="Folder of the images.", section="dataset", trust=PATH)
    caption_strategy: str = option(
        "textfile", help="Where captions come from: a .txt beside each image, the file name, instance_prompt, or "
        "(huggingface) a Hugging Face dataset's caption column.",
        section="dataset", choices=CAPTION_STRATEGIES,
    )
    instance_prompt: str | None = option(
        None, help="Caption of every image with caption_strategy instanceprompt (or only_instance_prompt); with "
        "prepend_instance_prompt, the text put before every caption.", section="dataset")
    prepend_instance_prompt: bool = option(
        False, help="Put instance_prompt and a space before every caption (before each of a caption's lines when "
        "they are captions of their own).", section="dataset")
    only_instance_prompt: bool = option(
        False, help="Train every image with instance_prompt as its caption, as caption_strategy instanceprompt does.",
        section="dataset")
    caption_shuffle: CaptionShuffle | None = option(
        None, help="SimpleTuner's caption_shuffle object: each caption also trains as count copies with its tags "
        "shuffled ({\"enable\": true, \"count\": 3, \"split_on\": \"comma\", \"position_start\": 1}).",
        section="dataset")
    disable_multiline_split: bool = option(
        False, help="Keep a caption with several lines as one caption. By default each non-empty line is a caption "
        "of its own, and each time an image is trained one of its captions is picked at random.", section="dataset")
    resolution: float | None = option(None, help="Training resolution of this dataset; the config's if unset.",
                                      section="dataset", minimum=0)
    resolution_type: str | None = option(None, help="pixel, area or pixel_area; the config's if unset.",
                                         section="dataset", choices=RESOLUTION_TYPES)
    minimum_image_size: float | None = option(None, help="Skip smaller images; the resolution if unset.",
                                              section="dataset", minimum=0)
    minimum_aspect_ratio: float | None = option(None, help="Leave out images narrower than this width / height "
                                                "(e.g. 0.5: taller than twice their width).", section="dataset",
                                                minimum=0)
    maximum_aspect_ratio: float | None = option(None, help="Leave out images wider than this width / height "
                                                "(e.g. 2.0).", section="dataset", minimum=0)
    max_num_samples: int | None = option(None, help="Train on at most this many of the dataset's images, the same "
                                         "ones every run.", section="dataset", minimum=1)
    crop: bool = option(False, help="Crop images to their bucket instead of resizing the whole image.",
                        section="dataset")
    crop_style: str = option("center", help="Where crops are taken.", section="dataset",
                             choices=("center", "random", "corner"))
    crop_aspect: str = option("square", help="square crops, the image's own aspect (preserve), or the closest "
                              "bucket's (closest).", section="dataset", choices=("square", "preserve", "closest"))
    repeats: int = option(0, help="Extra passes over this dataset per epoch.", section="dataset", minimum=0)
    is_regularisation_data: bool = option(
        False, help="Regularisation data (prior preservation): its images train toward the base model's own "
        "prediction (the adapter turned off) instead of the image, so what the adapter learns from the other "
        "datasets leaks less into what these images show. LoRA and LyCORIS only.", section="dataset")
    probability: float = option(1.0, help="Relative chance of drawing a batch from this dataset.",
                                section="dataset", minimum=0, maximum=1)
    cache_dir_vae: str | None = option(None, help="Folder of cached latents; inside the output folder if unset.",
                                       section="dataset", trust=PATH)
    text_embeds: str | None = option(None, help="Id of the text_embeds dataset caching this one's captions; "
                                     "the default one if unset.", section="dataset")
    cache_dir: str | None = option(None, help="Folder of a text_embeds dataset's cache.", section="dataset", trust=PATH)
    default: bool = option(False, help="The text_embeds dataset used when an image dataset names none.",
                           section="dataset")
    disabled: bool = option(False, help="Skip this dataset.", section="dataset")
    backend_options: Mapping[str, Any] = attrs.field(factory=dict, metadata={"simpletuner_internal": True})


_ENTRY_FIELDS = {f.name for f in attrs.fields(DatasetEntry) if not f.metadata.get("simpletuner_internal")}
_ENTRY_TYPES = typing.get_type_hints(DatasetEntry)


def entry_keys_of_trust(trust: str) -> frozenset[str]:
    """Keys of dataset entries declared with the given trust class (see :mod:`simpletuner.core.options`)."""
    return frozenset(key for key in _ENTRY_FIELDS if _field_meta(key).trust == trust)


def _field_meta(name: str) -> Any:
    return attrs.fields_dict(DatasetEntry)[name].metadata["simpletuner"]


def _bounds_problems(where: str, key: str, value: Any) -> list[str]:
    return bound_problems(f"{where}.{key}", _field_meta(key), value)


def parse_datasets(
    raw: Any,
    backend_option_types: Callable[[str], Mapping[str, Any] | None],
    resolve_path: Callable[[str], Path],
    source: str | None = None,
    local_paths: Callable[[str], bool] | None = None,
    placeholders: Mapping[str, str] | None = None,
) -> tuple[list[DatasetEntry], list[str]]:
    """Parse and validate a datasets file's JSON content; returns the entries and warnings.

    Args:
        raw: the decoded JSON.
        backend_option_types: backend name → its option types by key, or None for an unknown backend.
        resolve_path: turns a path from the file into an absolute path (relative paths are workspace-relative).
        source: the file name used in error messages.
        local_paths: backend name → whether its entries' paths are local folders (a spec's ``local_paths``);
            all are when None. An image entry of a remote backend needs no ``instance_data_dir`` (its images
            may sit at the root of its storage).
        placeholders: ``model_family`` and ``output_dir`` for SimpleTuner's placeholders in the entries' values
            (see :mod:`simpletuner.core.config.placeholders`); values are taken as written when None.

    Raises :class:`ConfigError` listing every problem at once.
    """
    converter = make_converter()
    converter.register_structure_hook(CaptionShuffle, structure_caption_shuffle)
    if not isinstance(raw, list):
        raise ConfigError(["$: expected a list of dataset objects"], source=source)
    problems: list[str] = []
    if placeholders is not None:
        raw, problems = expand_placeholders(raw, placeholders)
    warnings: list[str] = []
    entries: list[DatasetEntry] = []
    for index, item in enumerate(raw):
        where = f"$[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object, got {type(item).__name__}")
            continue
        if isinstance(item.get("id"), str):
            where = f"$[{index}] (id {item['id']!r})"
        backend_name = item.get("type", "local")
        if backend_name in DATA_BACKEND_ALIASES and backend_option_types(backend_name) is None:
            backend_name = DATA_BACKEND_ALIASES[backend_name]
            item = {**item, "type": backend_name}
        backend_types = backend_option_types(backend_name) if isinstance(backend_name, str) else None
        if backend_types is None:
            problems.append(f"{where}.type: unknown data backend {backend_name!r}")
            backend_types = {}
        values: dict[str, Any] = {}
        backend_values: dict[str, Any] = {}
        legacy: dict[str, Any] = {}
        for raw_key, value in item.items():
            key = raw_key if raw_key in backend_types else DATASET_ALIASES.get(raw_key, raw_key)
            if key != raw_key and key in item:
                problems.append(f"{where}.{key}: given twice (as {key!r} and {raw_key!r}); keep one")
                continue
            # a backend may implement an entry option itself (huggingface's max_num_samples picks rows before
            # any is served): the backend's then
            if key in backend_types:
                tp, target = backend_types[key], backend_values
            elif key in _ENTRY_FIELDS:
                tp, target = _ENTRY_TYPES[key], values
            elif key in LEGACY_DATASET_KEYS:
                legacy[key] = value
                if key not in REFUSED_DATASET_KEYS:  # a refused key asking for something is an error below
                    warnings.append(f"{where}.{key}: {NO_EFFECT}")
                continue
            else:
                close = difflib.get_close_matches(key, list(_ENTRY_FIELDS | set(backend_types)), n=1, cutoff=0.6)
                problems.append(f"{where}.{key}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))
                continue
            try:
                target[key] = structure_value(converter, value, tp)
            except ValueTypeError as exc:
                problems.append(f"{where}.{key}: {exc}")
                continue
            if target is values:
                problems += _bounds_problems(where, key, target[key])
        problems += dataset_refusals(where, legacy, item.get("resolution"))
        if "id" not in values:
            if "id" not in item:
                problems.append(f"{where}: missing 'id'")
            continue
        if values.get("only_instance_prompt"):  # SimpleTuner's spelling of the instanceprompt strategy
            values["caption_strategy"] = "instanceprompt"
        entries.append(DatasetEntry(**values, backend_options=backend_values))
    if not problems:
        problems += _cross_checks(entries, resolve_path, local_paths or (lambda name: True))
    if problems:
        raise ConfigError(problems, source=source)
    return entries, warnings


def _cross_checks(entries: Sequence[DatasetEntry], resolve_path: Callable[[str], Path],
                  local_paths: Callable[[str], bool]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            problems.append(f"dataset id {entry.id!r} is used twice; ids must be unique")
        seen.add(entry.id)
    enabled = [e for e in entries if not e.disabled]
    images = [e for e in enabled if e.dataset_type == "image"]
    embeds = {e.id: e for e in enabled if e.dataset_type == "text_embeds"}
    if not images:
        problems.append("no enabled image dataset: add an entry with dataset_type 'image' and instance_data_dir")
    for entry in images:
        where = f"dataset {entry.id!r}"
        if not entry.instance_data_dir and local_paths(entry.type):
            problems.append(f"{where}: instance_data_dir is required for image datasets")
        elif entry.instance_data_dir and entry.type == "local" and not resolve_path(entry.instance_data_dir).is_dir():
            problems.append(
                f"{where}: instance_data_dir {str(resolve_path(entry.instance_data_dir))!r} is not an existing folder"
            )
        if entry.caption_strategy == "instanceprompt" and not entry.instance_prompt:
            asked = "only_instance_prompt" if entry.only_instance_prompt else "caption_strategy 'instanceprompt'"
            problems.append(f"{where}: {asked} needs instance_prompt")
        if entry.prepend_instance_prompt and not entry.instance_prompt:
            problems.append(f"{where}: prepend_instance_prompt needs instance_prompt (the text to put before "
                            "every caption)")
        if entry.text_embeds is not None and entry.text_embeds not in embeds:
            problems.append(f"{where}: text_embeds {entry.text_embeds!r} is not an enabled text_embeds dataset")
    if images and not embeds:
        problems.append(
            "no text_embeds dataset: add an entry with dataset_type 'text_embeds' (and default: true) "
            "to hold the text-embedding cache"
        )
    defaults = [e.id for e in embeds.values() if e.default]
    if len(embeds) > 1 and len(defaults) != 1:
        problems.append(
            f"{len(embeds)} text_embeds datasets ({', '.join(embeds)}) need exactly one with default: true, "
            f"found {len(defaults)}"
        )
    return problems


def default_text_embeds(entries: Sequence[DatasetEntry]) -> DatasetEntry | None:
    """The text_embeds dataset used by image datasets that name none."""
    embeds = [e for e in entries if e.dataset_type == "text_embeds" and not e.disabled]
    return next((e for e in embeds if e.default), embeds[0] if len(embeds) == 1 else None)
