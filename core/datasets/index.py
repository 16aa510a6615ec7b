"""The persisted index of a dataset: per image file, what a scan learned about it, so a restart reads nothing twice.

Per image the index holds its path, size and change stamp (modification time, or what its backend reports; see
:class:`~simpletuner.core.interfaces.data_backend.FileListing`), the same two of its caption file, its width and
height (read from the file's header, never decoded), the SHA-256 of its bytes (what latent cache keys are made of),
the SHA-256 of its caption, how many non-empty lines the caption has (each line can be a caption of its own:
:func:`split_caption`) and whether it could be read at all. A restart lists the dataset with sizes and stamps
(one ``stat`` per file, or an object listing), compares and reads only what is new or changed: added, edited or
renamed images (a rename is a removal plus an addition; its caches survive, being keyed by content) and changed
captions; removed files leave the index. Buckets follow from the stored sizes and the resolution settings, so a
changed setting re-buckets without reading any image.

The index is columnar (NumPy arrays, the paths in one byte string) so that a million images take about 200 bytes
each in memory, and it is stored as one ``.npz`` file read without pickle; a damaged or foreign file is ignored
(the dataset is scanned again) rather than trusted.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np

from simpletuner.core.interfaces import DataBackend
from simpletuner.core.interfaces.data_backend import FileListing

logger = logging.getLogger(__name__)

#: Bumped whenever the meaning of a column changes; an index of another version is scanned again.
INDEX_VERSION = 1
#: ``caption_size`` of an image whose caption file is missing.
NO_CAPTION_FILE = -2
#: Images read per task of the first scan's thread pool.
CHUNK = 64

#: Called as ``progress(done, total)`` while files are read.
ScanProgress = Callable[[int, int], None]


def _digest_rows(count: int) -> np.ndarray:
    return np.zeros((count, 32), dtype=np.uint8)


class PathColumn:
    """Relative paths, in order, stored as one UTF-8 string separated by NUL (which no file name holds).

    >>> column = PathColumn.from_list(["a.png", "b/c.png"])
    >>> len(column), column[1], column.tolist()
    (2, 'b/c.png', ['a.png', 'b/c.png'])
    """

    __slots__ = ("blob", "starts", "ends")

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        if not blob:
            self.starts = self.ends = np.zeros(0, dtype=np.int64)
            return
        separators = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0)
        self.starts = np.concatenate(([0], separators + 1)).astype(np.int64)
        self.ends = np.concatenate((separators, [len(blob)])).astype(np.int64)

    @classmethod
    def from_list(cls, paths: Sequence[str]) -> PathColumn:
        """A column of ``paths`` (an empty list gives an empty column)."""
        return cls("\0".join(paths).encode("utf-8", "surrogateescape") if paths else b"")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> str:
        return self.blob[self.starts[index] : self.ends[index]].decode("utf-8", "surrogateescape")

    def tolist(self) -> list[str]:
        """Every path, as a list."""
        return self.blob.decode("utf-8", "surrogateescape").split("\0") if self.blob else []

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return len(self.blob) + self.starts.nbytes + self.ends.nbytes


@attrs.define(eq=False)
class ImageTable:
    """What is known about each image file of a dataset, one row per file, sorted by path."""

    paths: PathColumn
    size: np.ndarray  # int64 bytes
    stamp: np.ndarray  # int64 change stamp; 0 = unknown
    caption_size: np.ndarray  # int64; NO_CAPTION_FILE when missing; 0 for captions not kept in files
    caption_stamp: np.ndarray  # int64
    width: np.ndarray  # int32
    height: np.ndarray  # int32
    digest: np.ndarray  # (n, 32) uint8: SHA-256 of the image bytes
    caption_digest: np.ndarray  # (n, 32) uint8: SHA-256 of the caption text
    readable: np.ndarray  # bool: the header could be read and the file is intact
    # int32: captions in the caption text (len(split_caption(text))); 0 = not counted (an index stored before
    # lines were counted, whose captions are read again)
    caption_lines: np.ndarray

    COLUMNS = ("size", "stamp", "caption_size", "caption_stamp", "width", "height", "digest", "caption_digest",
               "readable", "caption_lines")
    DTYPES = {"size": np.int64, "stamp": np.int64, "caption_size": np.int64, "caption_stamp": np.int64,
              "width": np.int32, "height": np.int32, "digest": np.uint8, "caption_digest": np.uint8,
              "readable": np.bool_, "caption_lines": np.int32}
    #: columns an index stored by an earlier version may lack, and what they are then taken to hold
    ADDED_COLUMNS = {"caption_lines": 0}

    @classmethod
    def empty(cls, count: int = 0) -> ImageTable:
        """A table of ``count`` blank rows (paths unset)."""
        return cls(PathColumn(b""), *[np.zeros((count, 32) if n.endswith("digest") else count, dtype=cls.DTYPES[n])
                                      for n in cls.COLUMNS])

    def __len__(self) -> int:
        return len(self.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the table."""
        return self.paths.nbytes + sum(getattr(self, n).nbytes for n in self.COLUMNS)

    def has_caption(self) -> np.ndarray:
        """Whether each image has a caption."""
        return self.caption_size != NO_CAPTION_FILE


@attrs.frozen
class ScanContext:
    """What the stored facts depend on besides the files: a change makes the whole index stale."""

    location: str  # where the images are
    caption_strategy: str
    instance_prompt: str
    #: trust the sizes the backend knows without reading (:meth:`DataBackend.image_sizes`): images are read later
    sizes_from_backend: bool = False

    def key(self) -> bytes:
        """A digest of the context."""
        text = f"{INDEX_VERSION}\0{self.location}\0{self.caption_strategy}\0{self.instance_prompt}"
        if self.sizes_from_backend:  # appended only then: indexes made without it keep their key
            text += "\0sizes from the backend"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def caption_file(path: str) -> str:
    """The caption file of an image: the same path with ``.txt`` for its extension."""
    stem, dot, _ = path.rpartition(".")
    return (stem if dot and "/" not in path[len(stem):] else path) + ".txt"


def derived_caption(strategy: str, instance_prompt: str, path: str) -> str | None:
    """The caption of strategies that need no file (``filename``, ``instanceprompt``); None for the others."""
    if strategy == "instanceprompt":
        return instance_prompt
    if strategy == "filename":
        name = path.rsplit("/", 1)[-1]
        stem = name.rpartition(".")[0] or name
        return stem.replace("_", " ").replace("-", " ").strip()
    return None


def read_caption(backend: DataBackend, path: str) -> str | None:
    """The text of an image's caption file; None when it is missing."""
    try:
        data = backend.read(caption_file(path))
    except FileNotFoundError:
        return None
    return data.decode("utf-8", errors="replace").strip()


def caption_digest(caption: str) -> bytes:
    """The SHA-256 of a caption's text (what text-embedding cache keys are made of)."""
    return hashlib.sha256(caption.encode("utf-8")).digest()


def split_caption(caption: str) -> list[str]:
    """The captions of a caption text: each non-empty line, stripped (a text without one is its own only caption).

    >>> split_caption("a red fox\\n\\n  a fox in snow \\n"), split_caption("")
    (['a red fox', 'a fox in snow'], [''])
    """
    return [line for line in map(str.strip, caption.splitlines()) if line] or [caption]


def caption_line_digest(digest: bytes, line: int) -> bytes:
    """The digest that stands for line ``line`` of the caption text whose SHA-256 is ``digest``: made from the
    text's digest, so a caption's lines are keyed without reading the text again."""
    return hashlib.sha256(b"caption line %d\0" % line + digest).digest()


def _image_facts(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of intact image bytes; None when unreadable. Nothing is decoded: PNG chunks
    are checked (``verify``), the size comes from the header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            image.verify()  # truncated and corrupt files are caught here without decoding the pixels
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError):
        return None
    return int(size[0]), int(size[1])


def _read_rows(table: ImageTable, rows: np.ndarray, backend: DataBackend, context: ScanContext, captions_only: bool,
               paths: list[str]) -> None:
    """Fill ``rows`` of ``table`` by reading their files (captions only, when ``captions_only``); with
    ``context.sizes_from_backend``, images whose size the backend knows and whose listing has a change stamp are not
    read: their content digest is made from that stamp."""
    known: Sequence[tuple[int, int] | None] = [None] * len(rows)
    if context.sizes_from_backend and not captions_only:
        known = backend.image_sizes([paths[row] for row in rows])
    for row, size in zip(rows, known, strict=True):
        path = paths[row]
        if size is not None and table.stamp[row] != 0:
            table.readable[row] = True
            table.width[row], table.height[row] = size
            stamped = f"stamped\0{path}\0{int(table.stamp[row])}".encode("utf-8", "surrogateescape")
            table.digest[row] = np.frombuffer(hashlib.sha256(stamped).digest(), dtype=np.uint8)
        elif not captions_only:
            try:
                data = backend.read(path)
            except (FileNotFoundError, OSError, ValueError):
                data = b""
            facts = _image_facts(data) if data else None
            table.readable[row] = facts is not None
            table.width[row], table.height[row] = facts or (0, 0)
            table.digest[row] = np.frombuffer(hashlib.sha256(data).digest(), dtype=np.uint8)
        caption = derived_caption(context.caption_strategy, context.instance_prompt, path)
        lines = 1  # a caption made from the path or the instance prompt is one caption
        if caption is None:
            if table.caption_size[row] == NO_CAPTION_FILE:
                continue
            caption = read_caption(backend, path)
            if caption is None:  # removed since the listing
                table.caption_size[row] = NO_CAPTION_FILE
                continue
            lines = len(split_caption(caption))
        table.caption_digest[row] = np.frombuffer(caption_digest(caption), dtype=np.uint8)
        table.caption_lines[row] = lines


@attrs.frozen
class Refresh:
    """The outcome of bringing an index up to date: the table and what had to be read."""

    table: ImageTable
    read_images: int
    read_captions: int
    removed: int
    seconds: float

    @property
    def changed(self) -> bool:
        """Whether anything differs from the stored index."""
        return bool(self.read_images or self.read_captions or self.removed)


def refresh(backend: DataBackend, context: ScanContext, old: ImageTable | None, extensions: frozenset[str], *,
            threads: int = 4, progress: ScanProgress | None = None) -> Refresh:
    """List the dataset with sizes and stamps and bring ``old`` (None: nothing known) up to date, reading only new
    and changed files, in ``threads`` parallel threads."""
    started = time.perf_counter()
    file_captions = derived_caption(context.caption_strategy, context.instance_prompt, "x.png") is None
    listing = backend.list_stamped(extensions=extensions | {"txt"} if file_captions else extensions)
    images, captions = _split(listing, extensions)
    paths = images.paths
    count = len(paths)
    table = ImageTable.empty(count)
    table.paths = PathColumn.from_list(paths)
    table.size[:] = images.sizes
    table.stamp[:] = images.stamps
    if file_captions:
        found = _caption_rows(paths, captions.paths)
        present = found >= 0
        at = np.maximum(found, 0)
        table.caption_size[:] = np.where(present, captions.sizes[at] if len(captions) else 0, NO_CAPTION_FILE)
        table.caption_stamp[:] = np.where(present, captions.stamps[at] if len(captions) else 0, 0)

    old_rows = _match(old, table)
    known = old_rows >= 0
    source = np.maximum(old_rows, 0)
    if old is not None and len(old):
        same_image = known & (table.stamp != 0) & (old.stamp[source] == table.stamp) & (old.size[source] == table.size)
        if file_captions:
            unchanged_file = (table.caption_stamp != 0) & (old.caption_stamp[source] == table.caption_stamp)
            counted = old.caption_lines[source] > 0
            same_caption = known & (old.caption_size[source] == table.caption_size) & (
                (table.caption_size == NO_CAPTION_FILE) | (unchanged_file & counted))
        else:  # derived from the path and the context, which are the same
            same_caption = known
        for name in ("width", "height", "digest", "readable"):
            getattr(table, name)[same_image] = getattr(old, name)[source[same_image]]
        for name in ("caption_digest", "caption_lines"):
            getattr(table, name)[same_caption] = getattr(old, name)[source[same_caption]]
    else:
        same_image = np.zeros(count, dtype=bool)
        same_caption = np.zeros(count, dtype=bool)
    if not file_captions:  # a caption made from the path or the instance prompt is one caption
        table.caption_lines[:] = 1
    image_rows = np.flatnonzero(~same_image)
    caption_rows = np.flatnonzero(same_image & ~same_caption & table.has_caption())
    removed = len(old) - int(np.count_nonzero(known)) if old is not None else 0
    _read_all(table, image_rows, caption_rows, backend, context, paths, threads, progress)
    return Refresh(table=table, read_images=len(image_rows), read_captions=len(caption_rows), removed=removed,
                   seconds=time.perf_counter() - started)


@attrs.frozen(eq=False)
class _Files:
    """Part of a listing: paths, with sizes and stamps as arrays."""

    paths: list[str]
    sizes: np.ndarray  # int64
    stamps: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.paths)


def _split(listing: FileListing, extensions: frozenset[str]) -> tuple[_Files, _Files]:
    """The listing's images and its caption files (by extension, whatever its case)."""
    paths = listing.paths
    kinds = [p.rpartition(".")[2].lower() for p in paths]
    sizes = np.asarray(listing.sizes, dtype=np.int64)
    stamps = np.asarray(listing.stamps, dtype=np.int64)

    def part(mask: list[bool]) -> _Files:
        pick = np.array(mask, dtype=bool)
        return _Files(list(itertools.compress(paths, mask)), sizes[pick] if len(pick) else sizes,
                      stamps[pick] if len(pick) else stamps)

    return part(list(map(extensions.__contains__, kinds))), part(list(map("txt".__eq__, kinds)))


def _caption_rows(images: list[str], captions: list[str]) -> np.ndarray:
    """For each image, the row of its caption file (:func:`caption_file`) in ``captions``; -1 when it has none."""
    stems = {path[:-4]: row for row, path in enumerate(captions) if path.endswith(".txt")}
    image_stems = [path.rpartition(".")[0] for path in images]  # every image path has its extension
    return np.fromiter(map(stems.get, image_stems, itertools.repeat(-1)), dtype=np.int64, count=len(images))


def _match(old: ImageTable | None, table: ImageTable) -> np.ndarray:
    """For each row of ``table``, its row in ``old`` (-1 when new)."""
    count = len(table)
    if old is None or not len(old):
        return np.full(count, -1, dtype=np.int64)
    if old.paths.blob == table.paths.blob:
        return np.arange(count, dtype=np.int64)
    where = {p: i for i, p in enumerate(old.paths.tolist())}
    return np.array([where.get(p, -1) for p in table.paths.tolist()], dtype=np.int64)


def _read_all(table: ImageTable, image_rows: np.ndarray, caption_rows: np.ndarray, backend: DataBackend,
              context: ScanContext, paths: list[str], threads: int, progress: ScanProgress | None) -> None:
    """Read the changed rows in parallel chunks, reporting progress from this thread."""
    tasks = [(image_rows[i : i + CHUNK], False) for i in range(0, len(image_rows), CHUNK)]
    tasks += [(caption_rows[i : i + CHUNK], True) for i in range(0, len(caption_rows), CHUNK)]
    total = len(image_rows) + len(caption_rows)
    if not tasks:
        return
    done = 0
    if progress:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [(pool.submit(_read_rows, table, rows, backend, context, captions_only, paths), len(rows))
                   for rows, captions_only in tasks]
        for future, size in futures:
            future.result()
            done += size
            if progress:
                progress(done, total)


# --- persistence -------------------------------------------------------------------------------------------------


def save_index(backend: DataBackend, path: str, context: ScanContext, table: ImageTable) -> None:
    """Write the index atomically to ``path`` of ``backend``."""
    buffer = io.BytesIO()
    columns = {name: getattr(table, name) for name in ImageTable.COLUMNS}
    np.savez(buffer, version=np.array([INDEX_VERSION], dtype=np.int64),
             context=np.frombuffer(context.key(), dtype=np.uint8),
             paths=np.frombuffer(table.paths.blob, dtype=np.uint8), **columns)
    backend.write(path, buffer.getvalue())


def load_index(backend: DataBackend, path: str, context: ScanContext) -> ImageTable | None:
    """The stored index for ``context``; None when there is none, it is damaged, or it was made for another
    context (another folder, caption strategy or index version)."""
    try:
        data = backend.read(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("dataset index %s unreadable (%s); scanning again", path, exc)
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        return _table_from(arrays, context)
    except (ValueError, KeyError, OSError, EOFError, TypeError, zipfile.BadZipFile) as exc:
        logger.warning("dataset index %s is damaged (%s); scanning again", path, exc)
        return None


def _table_from(arrays: dict[str, Any], context: ScanContext) -> ImageTable | None:
    if int(arrays["version"][0]) != INDEX_VERSION or arrays["context"].tobytes() != context.key():
        return None
    paths = PathColumn(arrays["paths"].tobytes())
    count = len(paths)
    columns: dict[str, np.ndarray] = {}
    for name in ImageTable.COLUMNS:
        if name not in arrays and name in ImageTable.ADDED_COLUMNS:
            columns[name] = np.full(count, ImageTable.ADDED_COLUMNS[name], dtype=ImageTable.DTYPES[name])
            continue
        column = arrays[name]
        shape = (count, 32) if name.endswith("digest") else (count,)
        if column.shape != shape or column.dtype != ImageTable.DTYPES[name]:
            raise ValueError(f"column {name} has shape {column.shape} and type {column.dtype}")
        columns[name] = np.array(column)  # writable, detached from the file
    return ImageTable(paths, **columns)
