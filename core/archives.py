"""Reading ZIP archives that come from someone else: every way a damaged archive fails, as one tuple to catch, and
entry readers that turn damage into an error naming the entry."""

from __future__ import annotations

import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: What opening a damaged archive or reading one of its entries raises, depending on where the damage is and which
#: decompressor meets it: a bad CRC or header (BadZipFile), a broken deflate, bzip2 or LZMA stream (zlib.error,
#: OSError, LZMAError), a truncated entry (EOFError), an unsupported method (NotImplementedError), an encrypted entry
#: (RuntimeError) or impossible header values (ValueError).
DAMAGED_ARCHIVE = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError,
                   RuntimeError, ValueError)


@contextmanager
def open_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo,
                damaged: Callable[[str], Exception]) -> Iterator[Callable[[int], bytes]]:
    """A ``read(size)`` function of one entry; damage met while opening or reading it raises ``damaged(message)``,
    the message naming the entry. The CRC is checked as the last bytes are read, so a caller that reads to the end
    has either every byte intact or that error."""
    try:
        source = archive.open(member)
    except DAMAGED_ARCHIVE as exc:
        raise damaged(f"archive entry {member.filename!r} cannot be read ({exc})") from None

    def read(size: int) -> bytes:
        try:
            return source.read(size)
        except DAMAGED_ARCHIVE as exc:
            raise damaged(f"archive entry {member.filename!r} is damaged ({exc})") from None

    with source:
        yield read
