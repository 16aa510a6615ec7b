"""SimpleTuner's ``huggingface`` sub-object of a ``huggingface`` dataset entry: its column keys and the declarative
row filters of its ``filter_func``, checked when the entry is read (its ``composite_image_config`` is in
:mod:`~simpletuner.plugins.data_backends.huggingface_composite`). Light to import.

A filter is data, never code: ``filter_func`` is an object of the keys below, each a test of a row's columns. No
value of it is evaluated or imported, so a datasets file cannot run a program through it.

    >>> rule = parse_filter({"collection": ["photo"], "min_width": 512,
    ...                      "quality_thresholds": {"aesthetic_score": 5.0}}, "huggingface.filter_func")
    >>> rule.keep({"collection": "photo", "width": 640, "height": 480, "quality_assessment": {"aesthetic_score": 5.5}})
    True
    >>> rule.keep({"collection": "art", "width": 640, "height": 480, "quality_assessment": {"aesthetic_score": 9}})
    False
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.plugins.data_backends.huggingface_rows import field

#: ``filter_func`` keys and what each tests.
FILTER_KEYS: dict[str, str] = {
    "collection": "the row's collection column is one of these values (a string or a list of strings)",
    "quality_thresholds": "each named score of the row's quality column is at least this number",
    "quality_column": "the column (or nested a.b field) holding the scores; quality_assessment",
    "min_width": "the row's width column is at least this many pixels",
    "min_height": "the row's height column is at least this many pixels",
}

#: Keys of the sub-object that name the same columns as the entry's own keys of these names.
COLUMN_KEYS = ("image_column", "caption_column", "fallback_caption_column", "width_column", "height_column")

#: Keys SimpleTuner reads that change nothing here (speed, where its own caches go, file names): accepted.
NO_EFFECT_KEYS = ("file_extension", "cache_dir", "num_proc", "streaming", "auto_load")

#: Keys that ask for something not trained here: refused with the way forward.
REFUSED_KEYS: dict[str, str] = {
    "bbox_column": "bounding-box (grounding) conditioning is not trained here; remove bbox_column",
    "video_column": "video datasets are not trained here; remove video_column",
    "num_frames_column": "video datasets are not trained here; remove num_frames_column",
    "fps_column": "video datasets are not trained here; remove fps_column",
    "audio_caption_fields": "audio datasets are not trained here; remove audio_caption_fields",
    "lyrics_column": "audio datasets are not trained here; remove lyrics_column",
}

SUB_OBJECT_KEYS = (*COLUMN_KEYS, "description_column", "filter_func", "composite_image_config", *NO_EFFECT_KEYS,
                   *REFUSED_KEYS)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataBackendError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _column_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataBackendError(f"{where}: expected a column name, got {value!r}")
    return value.strip()


@attrs.frozen
class RowFilter:
    """Which rows train: every test set must pass. Columns read: ``collection``, the quality column and the width
    and height columns (the entry's ``width_column``/``height_column``, else ``width``/``height``)."""

    collections: tuple[str, ...] | None = None
    thresholds: tuple[tuple[str, float], ...] = ()
    quality_column: str = "quality_assessment"
    min_width: float | None = None
    min_height: float | None = None
    width_column: str = "width"
    height_column: str = "height"

    def reads(self) -> dict[str, str]:
        """The columns the filter reads, each with the ``filter_func`` key that needs it."""
        needed: dict[str, str] = {}
        if self.collections is not None:
            needed["collection"] = "collection"
        if self.thresholds:
            needed[self.quality_column] = "quality_thresholds"
        if self.min_width is not None:
            needed[self.width_column] = "min_width"
        if self.min_height is not None:
            needed[self.height_column] = "min_height"
        return needed

    def keep(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` (its columns by name) passes every test; a missing value fails the test that reads it."""
        if self.collections is not None and field(row, "collection") not in self.collections:
            return False
        if self.thresholds:
            scores = _scores(field(row, self.quality_column))
            if not scores:  # as in SimpleTuner: a row without an assessment is not known to be good enough
                return False
            if any(_score(scores.get(metric)) < threshold for metric, threshold in self.thresholds):
                return False
        for minimum, column in ((self.min_width, self.width_column), (self.min_height, self.height_column)):
            if minimum is not None and _score(field(row, column)) < minimum:
                return False
        return True


def _scores(value: Any) -> Mapping[str, Any]:
    """A quality value as scores by name: a struct, or a JSON object stored as text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, Mapping) else {}


def _score(value: Any) -> float:
    """A score or size as a number; missing or non-numeric values count as 0 (SimpleTuner's default)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(value)


def parse_filter(raw: Any, where: str, width_column: str | None = None,
                 height_column: str | None = None) -> RowFilter:
    """``filter_func`` as a :class:`RowFilter`; :class:`DataBackendError` naming an unknown key (with the known
    ones) or a value of the wrong kind."""
    if not isinstance(raw, Mapping):
        raise DataBackendError(f"{where}: expected an object of filters ({', '.join(FILTER_KEYS)}), got "
                               f"{type(raw).__name__}; a filter is declared, never given as code")
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise DataBackendError(f"{where}: unknown filter {', '.join(map(repr, unknown))}; the filters are "
                               f"{', '.join(FILTER_KEYS)}")
    collections = raw.get("collection")
    if collections is not None:
        collections = [collections] if isinstance(collections, str) else collections
        if not isinstance(collections, list) or not collections or not all(isinstance(c, str) for c in collections):
            raise DataBackendError(f"{where}.collection: expected a collection name or a list of them, got "
                                   f"{raw['collection']!r}")
    thresholds = raw.get("quality_thresholds")
    if thresholds is not None and (not isinstance(thresholds, Mapping) or not thresholds):
        raise DataBackendError(f"{where}.quality_thresholds: expected an object of score names and minimum values, "
                               f"such as {{\"aesthetic_score\": 5.0}}, got {thresholds!r}")
    minimums = {}
    for key in ("min_width", "min_height"):
        if raw.get(key) is not None:
            minimums[key] = _number(raw[key], f"{where}.{key}")
            if minimums[key] < 0:
                raise DataBackendError(f"{where}.{key}: must be at least 0, got {raw[key]!r}")
    return RowFilter(
        collections=tuple(collections) if collections is not None else None,
        thresholds=tuple((str(name), _number(value, f"{where}.quality_thresholds.{name}"))
                         for name, value in (thresholds or {}).items()),
        quality_column=_column_name(raw.get("quality_column", "quality_assessment"), f"{where}.quality_column"),
        min_width=minimums.get("min_width"), min_height=minimums.get("min_height"),
        width_column=width_column or "width", height_column=height_column or "height")


def check_sub_object(raw: Any, where: str = "huggingface") -> dict[str, Any]:
    """The sub-object's keys checked: unknown keys and refused ones are errors naming them; returns it as a dict."""
    if not isinstance(raw, Mapping):
        raise DataBackendError(f"{where}: expected an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SUB_OBJECT_KEYS))
    if unknown:
        raise DataBackendError(f"{where}: unknown key {', '.join(map(repr, unknown))}; its keys are "
                               f"{', '.join(SUB_OBJECT_KEYS)}")
    for key, reason in REFUSED_KEYS.items():
        value = raw.get(key)
        if value not in (None, "", []):
            raise DataBackendError(f"{where}.{key}: {reason}")
    return dict(raw)
