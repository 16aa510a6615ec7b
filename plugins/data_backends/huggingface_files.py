"""The files a Hugging Face dataset's served rows appear as, held as arrays rather than an entry per file.

Row 12 is served as ``row-00000012.png`` (its image, under the extension of its encoding) and, when it has a caption,
``row-00000012.txt``. A dataset of a million rows is held in about 10 bytes a row plus its captions' text, where a
dict of paths took a few hundred bytes a file. Light to import.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence

from simpletuner.plugins.data_backends.huggingface_rows import ROW_DIGITS, row_file

#: The image extensions a served row may have (what :func:`~.huggingface_rows.extension` gives).
EXTENSIONS = ("png", "jpg", "webp")


class RowFiles(Mapping[str, tuple[int, str]]):
    """Served path → (row of the split, ``image`` or ``caption``), for the rows ``rows`` (ascending).

    ``extension_of(row)`` is a row's image extension, ``caption_of(row)`` its caption ("" for none). Iteration is
    in path order (which is row order).

        >>> files = RowFiles([3, 12], lambda row: "jpg" if row == 3 else "png", lambda row: "a cat" * (row == 12))
        >>> list(files), files["row-00000012.txt"], files.captions[12]
        (['row-00000003.jpg', 'row-00000012.png', 'row-00000012.txt'], (12, 'caption'), 'a cat')
        >>> "row-00000003.png" in files, "row-3.jpg" in files
        (False, False)
    """

    def __init__(self, rows: Sequence[int], extension_of: Callable[[int], str], caption_of: Callable[[int], str]
                 ) -> None:
        self._rows = array("q", rows)
        if any(a >= b for a, b in zip(self._rows, self._rows[1:], strict=False)):
            raise ValueError("rows must be ascending")
        self._extensions = bytes(EXTENSIONS.index(extension_of(row)) for row in self._rows)
        texts = [caption_of(row) for row in self._rows]
        self.captions = RowCaptions(self._rows, texts)

    def with_extension(self, extension: str) -> RowFiles:
        """The same rows and captions with every image served under ``extension``."""
        copy = object.__new__(RowFiles)
        copy._rows, copy.captions = self._rows, self.captions
        copy._extensions = bytes([EXTENSIONS.index(extension)]) * len(self._rows)
        return copy

    def locate(self, path: str) -> tuple[int, str] | None:
        """(row, ``image`` or ``caption``) of a served path; None for any other path."""
        stem, dot, extension = path.rpartition(".")
        digits = stem[4:]
        if not (dot and stem.startswith("row-") and len(digits) >= ROW_DIGITS and digits.isascii()
                and digits.isdigit()):
            return None
        row = int(digits)
        position = bisect.bisect_left(self._rows, row)
        if position == len(self._rows) or self._rows[position] != row or row_file(row, extension) != path:
            return None
        if extension == "txt":
            return (row, "caption") if self.captions.has(position) else None
        return (row, "image") if EXTENSIONS[self._extensions[position]] == extension else None

    def __getitem__(self, path: str) -> tuple[int, str]:
        found = self.locate(path)
        if found is None:
            raise KeyError(path)
        return found

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.locate(path) is not None

    def __iter__(self) -> Iterator[str]:
        for position, row in enumerate(self._rows):
            yield row_file(row, EXTENSIONS[self._extensions[position]])
            if self.captions.has(position):
                yield row_file(row, "txt")

    def __len__(self) -> int:
        return len(self._rows) + len(self.captions)


class RowCaptions(Mapping[int, str]):
    """Row → caption, for the rows that have one; the texts in a list aligned with the rows."""

    def __init__(self, rows: array, texts: list[str]) -> None:
        self._rows = rows
        self._texts = texts
        self._count = sum(1 for text in texts if text)

    def has(self, position: int) -> bool:
        """Whether the row at ``position`` of the rows has a caption."""
        return bool(self._texts[position])

    def __getitem__(self, row: int) -> str:
        position = bisect.bisect_left(self._rows, row)
        if position == len(self._rows) or self._rows[position] != row or not self._texts[position]:
            raise KeyError(row)
        return self._texts[position]

    def __iter__(self) -> Iterator[int]:
        return (row for row, text in zip(self._rows, self._texts, strict=True) if text)

    def __len__(self) -> int:
        return self._count
