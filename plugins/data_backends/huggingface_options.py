"""Options of the ``huggingface`` data backend (SimpleTuner's key names); light to import.

A dataset entry with ``"type": "huggingface"`` trains on the rows of a dataset on the Hugging Face Hub (or one
already on this machine): each row's image column is an image, its caption column the caption.
"""

from __future__ import annotations

from typing import Any

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.core.options import PATH, option
from simpletuner.plugins.data_backends.huggingface_composite import CompositeSplit, parse_composite
from simpletuner.plugins.data_backends.huggingface_filters import COLUMN_KEYS, RowFilter, check_sub_object, parse_filter


@attrs.define(kw_only=True)
class HuggingFaceOptions:
    """Which dataset, which rows and which columns."""

    dataset_name: str | None = option(
        None, help="A dataset on the Hub (owner/name), or a folder or parquet file of one on this machine "
        "(required for type huggingface).", section="dataset", label="Hugging Face dataset", trust=PATH)
    split: str = option("train", help="The split to train on.", section="dataset", label="Split")
    revision: str | None = option(
        None, help="A branch, tag or commit of the dataset on the Hub; the default branch if unset.",
        section="dataset", label="Revision")
    image_column: str = option("image", help="The column holding each row's image.", section="dataset",
                               label="Image column")
    caption_column: list[str] = option(
        help="The caption column: a name, a nested field as a.b, or a list of them (the first non-empty one is "
        "the caption).", section="dataset", label="Caption column", factory=lambda: ["text"])
    fallback_caption_column: str | None = option(
        None, help="The column whose value is the caption of rows with an empty caption column.",
        section="dataset", label="Fallback caption column")
    width_column: str | None = option(
        None, help="A column of image widths, read by the min_width filter (training sizes are read from the "
        "images themselves).",
        section="dataset", label="Width column")
    height_column: str | None = option(
        None, help="A column of image heights, read by the min_height filter (training sizes are read from the "
        "images themselves).",
        section="dataset", label="Height column")
    description_column: str | None = option(
        None, help="A column whose value captions rows left without one by the caption and fallback columns (an "
        "object's main_subject, description and text joined).", section="dataset", label="Description column")
    max_num_samples: int | None = option(
        None, help="Train on this many rows, the same ones on every run (a seeded pick among the rows the filters "
        "keep); every row if unset.", section="dataset", minimum=1, label="Most rows")
    huggingface: dict[str, Any] | None = option(
        None, help="SimpleTuner's huggingface object: the column keys above, and filter_func, an object of row "
        "filters: collection (values of the collection column), quality_thresholds (minimum scores in "
        "quality_column, quality_assessment), min_width and min_height (of the width and height columns); and "
        "composite_image_config (enabled, image_count, select_index): train on one of the pictures side by side in "
        "each image.",
        section="dataset", label="Hugging Face settings")

    def __attrs_post_init__(self) -> None:
        for name in ("dataset_name", "revision", "fallback_caption_column", "width_column", "height_column",
                     "description_column"):
            if getattr(self, name) == "":  # an emptied form field means "not set"
                setattr(self, name, None)
        if isinstance(self.caption_column, str):  # set from Python rather than parsed from a datasets file
            self.caption_column = [self.caption_column]
        if self.huggingface:
            self._merge_sub_object(check_sub_object(self.huggingface))
        if not self.caption_column:
            raise DataBackendError("huggingface: caption_column is empty; name the column holding the captions")
        if self.max_num_samples is not None and self.max_num_samples < 1:
            raise DataBackendError(f"huggingface: max_num_samples must be at least 1, got {self.max_num_samples}")

    def _merge_sub_object(self, sub: dict[str, Any]) -> None:
        """Take the sub-object's column keys (SimpleTuner reads them there); one given both ways must agree."""
        defaults = {f.name: f.default for f in attrs.fields(type(self))}
        for key in (*COLUMN_KEYS, "description_column"):
            if sub.get(key) in (None, ""):
                continue
            value = [sub[key]] if key == "caption_column" and isinstance(sub[key], str) else sub[key]
            if key == "caption_column" and not (isinstance(value, list) and value
                                                and all(isinstance(v, str) and v for v in value)):
                raise DataBackendError(f"huggingface.caption_column: expected a column name or a list of them, got "
                                       f"{sub[key]!r}")
            if key != "caption_column" and not isinstance(value, str):
                raise DataBackendError(f"huggingface.{key}: expected a column name, got {value!r}")
            default = defaults[key].factory() if hasattr(defaults[key], "factory") else defaults[key]
            current = getattr(self, key)
            if current != default and current != value:
                raise DataBackendError(f"{key} is {current!r} and huggingface.{key} is {sub[key]!r}; keep one of them")
            setattr(self, key, value)
        self.row_filter()  # a bad filter is reported when the entry is read, not when rows are first needed
        self.composite()

    def composite(self) -> CompositeSplit | None:
        """Which picture of a composite image trains (``huggingface.composite_image_config``), or None."""
        return parse_composite((self.huggingface or {}).get("composite_image_config"),
                               "huggingface.composite_image_config")

    def row_filter(self) -> RowFilter | None:
        """The rows ``huggingface.filter_func`` keeps, or None when it sets no filter."""
        raw = (self.huggingface or {}).get("filter_func")
        if raw in (None, {}):
            return None
        return parse_filter(raw, "huggingface.filter_func", self.width_column, self.height_column)

    def columns(self) -> list[str]:
        """The top-level columns these options read (a nested ``a.b`` reads ``a``)."""
        rule = self.row_filter()
        named = [self.image_column, *self.caption_column, self.fallback_caption_column, self.width_column,
                 self.height_column, self.description_column, *(rule.reads() if rule else ())]
        return list(dict.fromkeys(c.split(".", 1)[0] for c in named if c))
