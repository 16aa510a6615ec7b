"""What a ``huggingface`` dataset serves: the rows that train (after the filters and ``max_num_samples``), the file
names of their images and captions, and where the bytes come from — parquet shards read shard by shard (how the Hub
stores datasets, see :mod:`~simpletuner.plugins.data_backends.huggingface_shards`), or the whole split through
``datasets`` for other formats.

Imports ``datasets`` and ``huggingface_hub``: only the backend's methods import this module.
"""

from __future__ import annotations

import bisect
import json
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.errors import DataBackendError
from simpletuner.core.hub_tokens import Token
from simpletuner.plugins.data_backends.huggingface_files import RowFiles
from simpletuner.plugins.data_backends.huggingface_load import (
    check_columns,
    explain,
    kept_rows,
    local_copy,
    offline,
    open_split,
    subset,
)
from simpletuner.plugins.data_backends.huggingface_options import HuggingFaceOptions
from simpletuner.plugins.data_backends.huggingface_rows import (
    caption_of,
    extension,
    extension_of_name,
    image_bytes,
)
from simpletuner.plugins.data_backends.huggingface_shards import ShardedRows, shard_files


@attrs.frozen
class Catalogue:
    """The served files and how to read them."""

    #: served path -> (row of the split, ``image`` or ``caption``), with the caption of each row that has one
    files: RowFiles
    #: the encoded image of a row (None: the row has none)
    image: Callable[[int], bytes | None]
    #: ``stamp(row, kind)``: a change stamp of a row's image or caption, 0 when unknown
    stamp: Callable[[int, str], int]
    #: what reads the rows: a :class:`ShardedRows`, or the selected rows as a ``datasets.Dataset``
    source: Any = None
    #: ``size(row)``: a row's (width, height) from the width and height columns when the options name both (None
    #: when unknown)
    size: Callable[[int], tuple[int, int] | None] = lambda row: None


def open_catalogue(options: HuggingFaceOptions, where: str, token: Token) -> Catalogue:
    """The rows to serve; :class:`DataBackendError` saying in one line why the dataset cannot be read."""
    try:
        shards = shard_files(options, token, offline())
        rows = ShardedRows(shards, token) if shards is not None else None
    except DataBackendError as exc:
        raise DataBackendError(f"{where}: {exc}") from None
    except Exception as exc:
        raise DataBackendError(explain(exc, options, where)) from None
    catalogue = _arrow_catalogue(options, where, token) if rows is None else _sharded_catalogue(rows, options, where)
    split = options.composite()
    if split is None:
        return catalogue
    # one picture of each composite image trains: the served image is that picture, as PNG; it is a part of the
    # stored image, so the size columns do not give its size
    read = catalogue.image
    return attrs.evolve(catalogue, files=catalogue.files.with_extension("png"),
                        image=lambda row: split.apply(read(row)), size=lambda row: None)


def check_image_column(features: Any, options: HuggingFaceOptions, where: str) -> bool:
    """Refuse an image column that holds no images; True for an ``Image`` column (a struct of bytes and a file
    name), False for a column of encoded bytes."""
    import datasets

    feature = features[options.image_column]
    if isinstance(feature, datasets.Image):
        return True
    if getattr(feature, "dtype", None) in ("binary", "large_binary"):
        return False
    raise DataBackendError(f"{where}: column {options.image_column!r} holds {feature}, not images; set "
                           "image_column to a column of images")


def _sharded_catalogue(rows: ShardedRows, options: HuggingFaceOptions, where: str) -> Catalogue:
    """Filters and captions from the small columns, a shard at a time; images left where they are."""
    try:
        features = rows.features()
        check_columns(features, options, where)
        named_images = check_image_column(features, options, where)
        rule = options.row_filter()
        size_columns = (options.width_column, options.height_column)
        columns = [c for c in (*options.caption_column, options.fallback_caption_column, options.description_column,
                               *(rule.reads() if rule else ()), *size_columns) if c]
        wanted = list(dict.fromkeys(c.split(".", 1)[0] for c in columns))
        if named_images:
            wanted.append(f"{options.image_column}.path")  # the file name only, never the bytes
        kept: list[int] = []
        captions: dict[int, str] = {}
        extensions: dict[int, str] = {}
        sizes = array("i")  # width and height of each row in turn (0 where unknown): 8 bytes a row
        for row, values in rows.iter_columns(wanted):
            if rule is not None and not rule.keep(values):
                continue
            kept.append(row)
            if size_columns[0] and size_columns[1]:
                sizes.extend(_size_of(values, *size_columns) or (0, 0))
            caption = caption_of(values, options)
            if caption:
                captions[row] = caption
            if named_images:
                extensions[row] = extension_of_name(values.get(options.image_column))
    except DataBackendError:
        raise
    except Exception as exc:
        raise DataBackendError(explain(exc, options, where)) from None
    chosen = [kept[i] for i in subset(len(kept), options.max_num_samples)]
    # a row's stamp also covers the options that make its file: other columns give other images and captions
    reads = {"image": json.dumps([options.image_column]),
             "caption": json.dumps([options.caption_column, options.fallback_caption_column,
                                    options.description_column])}
    files = RowFiles(chosen, lambda row: extensions.get(row, "png"), lambda row: captions.get(row, ""))
    return Catalogue(files=files, image=lambda row: image_bytes(rows.image_cell(row, options.image_column)),
                     stamp=lambda row, kind: rows.stamp(row, f"{kind}\0{reads[kind]}"), source=rows,
                     size=lambda row: _stored_size(sizes, kept, row))


def _stored_size(sizes: array, kept: list[int], row: int) -> tuple[int, int] | None:
    """Row ``row``'s size in ``sizes`` (a width and a height for each row of ``kept``, in its order)."""
    position = bisect.bisect_left(kept, row)
    if 2 * position >= len(sizes) or kept[position] != row or not sizes[2 * position]:
        return None
    return sizes[2 * position], sizes[2 * position + 1]


def _size_of(values: dict[str, Any], width_column: str | None, height_column: str | None) -> tuple[int, int] | None:
    """A row's (width, height) from its size columns; None when either is not named or not a plausible whole
    number of pixels (the image is then read for its size)."""
    if not width_column or not height_column:
        return None
    width, height = values.get(width_column), values.get(height_column)
    if width is None or height is None or isinstance(width, bool) or isinstance(height, bool):
        return None
    try:
        size = (int(width), int(height))
    except (TypeError, ValueError):
        return None
    plausible = all(0 < side < 1 << 20 for side in size)  # a million pixels a side is no image's
    return size if plausible and size == (width, height) else None


def _arrow_catalogue(options: HuggingFaceOptions, where: str, token: Token) -> Catalogue:
    """A dataset in another format (image folders, JSON lines, ...), loaded whole through ``datasets``."""
    import datasets

    try:
        split = open_split(options, token)
    except Exception as exc:
        raise DataBackendError(explain(exc, options, where)) from None
    check_columns(split.features, options, where)
    if check_image_column(split.features, options, where):
        split = split.cast_column(options.image_column, datasets.Image(decode=False))
    kept = kept_rows(split, options)
    chosen = [kept[i] for i in subset(len(kept), options.max_num_samples)]
    selected = split.select(chosen)
    # an image column may name a file instead of holding bytes: read only files of the dataset and the caches
    local = local_copy(options.dataset_name or "")
    roots = tuple(Path(p) for p in (local, datasets.config.HF_DATASETS_CACHE, _hub_cache()) if p)
    position = {row: i for i, row in enumerate(chosen)}
    captions: dict[int, str] = {}
    extensions: dict[int, str] = {}
    for row, values in zip(chosen, selected, strict=True):
        caption = caption_of(values, options)
        if caption:
            captions[row] = caption
        extensions[row] = extension(image_bytes(values[options.image_column], roots) or b"")
    return Catalogue(files=RowFiles(chosen, extensions.__getitem__, lambda row: captions.get(row, "")),
                     image=lambda row: image_bytes(selected[position[row]][options.image_column], roots),
                     stamp=lambda row, kind: 0, source=selected)


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def check_dataset(options: HuggingFaceOptions, where: str, timeout: float, token: Token) -> Catalogue | None:
    """A Hub dataset's existence and revision (one request; returns None); a local or offline one is opened and
    returned."""
    if local_copy(options.dataset_name or "") is None and not offline():
        from huggingface_hub import HfApi

        try:
            HfApi().dataset_info(options.dataset_name or "", revision=options.revision, timeout=timeout, token=token)
        except Exception as exc:
            raise DataBackendError(explain(exc, options, where)) from None
        return None
    return open_catalogue(options, where, token)
