"""SimpleTuner's ``composite_image_config`` of a ``huggingface`` dataset: rows whose image holds several pictures
side by side (a grid of ``image_count`` equal columns, as Subjects200K stores its pairs) train on one of them,
``select_index`` (0 is the leftmost). Light to import; Pillow is imported when an image is split.

    >>> split = parse_composite({"enabled": True, "image_count": 2, "select_index": 1}, "composite_image_config")
    >>> (split.count, split.index)
    (2, 1)
    >>> parse_composite({"enabled": False}, "composite_image_config") is None
    True
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import attrs

from simpletuner.core.errors import DataBackendError

COMPOSITE_KEYS = ("enabled", "image_count", "select_index")


@attrs.frozen
class CompositeSplit:
    """Keep picture ``index`` of ``count`` side by side (each ``width // count`` pixels wide)."""

    count: int
    index: int

    def apply(self, data: bytes | None) -> bytes | None:
        """The selected picture of encoded image bytes, as PNG; None when the bytes are not an image."""
        from PIL import Image, UnidentifiedImageError

        if data is None:
            return None
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                part = width // self.count
                if part < 1:
                    return None
                picture = image.crop((self.index * part, 0, (self.index + 1) * part, height))
                out = io.BytesIO()
                picture.save(out, format="PNG")
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            return None
        return out.getvalue()


def _count(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataBackendError(f"{where}: expected a whole number of at least {minimum}, got {value!r}")
    return value


def parse_composite(raw: Any, where: str) -> CompositeSplit | None:
    """``composite_image_config`` as a :class:`CompositeSplit`, None when not enabled; :class:`DataBackendError`
    naming an unknown key or a bad value."""
    if raw in (None, {}):
        return None
    if not isinstance(raw, Mapping):
        raise DataBackendError(f"{where}: expected an object of {', '.join(COMPOSITE_KEYS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(COMPOSITE_KEYS))
    if unknown:
        raise DataBackendError(f"{where}: unknown key {', '.join(map(repr, unknown))}; its keys are "
                               f"{', '.join(COMPOSITE_KEYS)}")
    if not isinstance(raw.get("enabled", False), bool):
        raise DataBackendError(f"{where}.enabled: expected true or false, got {raw['enabled']!r}")
    if not raw.get("enabled", False):
        return None
    count = _count(raw.get("image_count", 1), f"{where}.image_count", 1)
    index = _count(raw.get("select_index", 0), f"{where}.select_index", 0)
    if index >= count:
        raise DataBackendError(f"{where}.select_index: {index} is not one of the {count} pictures (0 to {count - 1})")
    return CompositeSplit(count=count, index=index)
