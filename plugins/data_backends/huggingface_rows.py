"""Reading the values of a Hugging Face dataset's rows as the ``huggingface`` backend serves them: nested fields,
captions, encoded images, and the file names rows are served under. Light to import."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simpletuner.plugins.data_backends.huggingface_options import HuggingFaceOptions

#: Digits of the row number in served file names: zero-padded, so that path order is row order (a scan reads its
#: files in path order, and rows stored together are read together).
ROW_DIGITS = 8

_MAGIC = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"RIFF", "webp"))
_NAMED = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}


def row_file(row: int, extension: str) -> str:
    """The file name row ``row`` of the split is served under: ``row-00000012.png``, its caption
    ``row-00000012.txt``."""
    return f"row-{row:0{ROW_DIGITS}d}.{extension}"


def field(row: Mapping[str, Any], path: str) -> Any:
    """A row's value at a column name or a nested ``a.b`` path; None where it has none."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def text(value: Any) -> str:
    """A caption value as text: strings stripped, the first non-empty string of a list, "" for anything else."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple):
        return next((t for t in map(text, value) if t), "")
    return ""


def captions_text(value: Any) -> str:
    """A caption column's value as a caption text: a list's non-empty strings one per line (each line is a caption
    of its own unless the dataset sets ``disable_multiline_split``), anything else as :func:`text`."""
    if isinstance(value, list | tuple):
        return "\n".join(t for t in map(text, value) if t)
    return text(value)


def caption_of(row: Mapping[str, Any], options: HuggingFaceOptions) -> str:
    """The first non-empty caption column of a row (a column of lists gives all of its captions:
    :func:`captions_text`), else its fallback caption column, else its description column, else ""."""
    for column in (*options.caption_column, options.fallback_caption_column):
        caption = captions_text(field(row, column)) if column else ""
        if caption:
            return caption
    return description(field(row, options.description_column)) if options.description_column else ""


def description(value: Any) -> str:
    """A description value as a caption: text as it is, an object's ``main_subject``, ``description`` and
    ``text`` joined (as SimpleTuner reads a description column)."""
    if isinstance(value, Mapping):
        return " ".join(t for t in (text(value.get(k)) for k in ("main_subject", "description", "text")) if t)
    return text(value)


def image_bytes(value: Any, roots: tuple[Path, ...] = ()) -> bytes | None:
    """The encoded image of a row: a bytes column, or an ``Image`` column read undecoded. An image given by file
    name (an image-folder dataset) is read only inside ``roots``: a row cannot make the server read its files."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return bytes(value["bytes"])
        name = value.get("path")
        if name and roots:
            path = Path(name).resolve()
            if path.is_file() and any(path.is_relative_to(root.resolve()) for root in roots):
                return path.read_bytes()
    return None


def extension(data: bytes) -> str:
    """The file extension of encoded image bytes (png, jpg, webp); png when unknown, so the scan reports it."""
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), "png")


def extension_of_name(value: Any) -> str:
    """The file extension an image column's stored file name says (png when it says none we serve)."""
    name = value.get("path") if isinstance(value, Mapping) else None
    suffix = name.rsplit(".", 1)[-1].lower() if isinstance(name, str) and "." in name else ""
    return _NAMED.get(suffix, "png")
