"""Options of the ``huggingface`` data backend (SimpleTuner's key names); light to import.

A dataset entry with ``"type": "huggingface"`` trains on the rows of a dataset on the Hugging Face Hub (or one
already on this machine): each row's image column is an image, its caption column the caption.
"""

from __future__ import annotations

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.core.options import PATH, option


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
        None, help="A column of image widths; checked to exist (sizes are read from the images themselves).",
        section="dataset", label="Width column")
    height_column: str | None = option(
        None, help="A column of image heights; checked to exist (sizes are read from the images themselves).",
        section="dataset", label="Height column")
    max_num_samples: int | None = option(
        None, help="Train on this many rows, the same ones on every run (a seeded pick); every row if unset.",
        section="dataset", minimum=1, label="Most rows")

    def __attrs_post_init__(self) -> None:
        for name in ("dataset_name", "revision", "fallback_caption_column", "width_column", "height_column"):
            if getattr(self, name) == "":  # an emptied form field means "not set"
                setattr(self, name, None)
        if isinstance(self.caption_column, str):  # set from Python rather than parsed from a datasets file
            self.caption_column = [self.caption_column]
        if not self.caption_column:
            raise DataBackendError("huggingface: caption_column is empty; name the column holding the captions")
        if self.max_num_samples is not None and self.max_num_samples < 1:
            raise DataBackendError(f"huggingface: max_num_samples must be at least 1, got {self.max_num_samples}")

    def columns(self) -> list[str]:
        """The top-level columns these options read (a nested ``a.b`` reads ``a``)."""
        named = [self.image_column, *self.caption_column, self.fallback_caption_column, self.width_column,
                 self.height_column]
        return list(dict.fromkeys(c.split(".", 1)[0] for c in named if c))
