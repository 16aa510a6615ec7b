"""Dataset uploads: files streamed to disk and ZIP archives extracted safely.

Every upload lands in a hidden staging file (or folder) beside its destination and is moved into place only
when it passed every check, so a refused or interrupted upload leaves nothing behind. A ZIP is refused as a whole
when any entry has an absolute path, a ``..`` component, a link or device type, a type that is neither an image nor
a caption file, when it names a file twice, when the archive exceeds the file-size, total-size, file-count or
compression-ratio limits, or when any destination is taken or lies behind a symbolic link in the folder (see
:mod:`~simpletuner.ui.workflow.placement`).
Sizes are counted while bytes are read, never taken from headers alone.
"""

from __future__ import annotations

import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import attrs

from simpletuner.core.archives import DAMAGED_ARCHIVE, open_member
from simpletuner.core.errors import SimpleTunerError
from simpletuner.ui.workflow.placement import PlacementError, blocked, place

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
CAPTION_SUFFIXES = frozenset({".txt", ".jsonl", ".csv"})
ALLOWED_SUFFIXES = IMAGE_SUFFIXES | CAPTION_SUFFIXES
CHUNK = 1024 * 1024
_FILE_NAME = re.compile(r"^[\w][\w .()+,=@-]{0,199}$")
#: Archive members skipped silently: metadata that macOS's archiver adds.
_SKIPPED_PREFIXES = ("__MACOSX/",)

Read = Callable[[int], bytes]


class UploadError(SimpleTunerError):
    """An upload refused; ``status`` is the HTTP status that fits (400, 413 or 415)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class UploadLimits:
    """What one upload may hold."""

    max_file_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 4 * 1024 * 1024 * 1024
    max_files: int = 20_000
    #: Largest uncompressed/compressed ratio of an archive entry over ``ratio_floor_bytes`` (zip bombs reach 1000+).
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1024 * 1024


def check_file_name(name: str) -> str:
    """A plain file name of an allowed type; raises :class:`UploadError` naming the problem."""
    if not _FILE_NAME.match(name) or name in (".", ".."):
        raise UploadError(f"file name {name!r} is not allowed: use letters, digits, spaces and . _ - ( ) + , = @, "
                          "without folders")
    check_type(name)
    return name


def check_type(name: str) -> None:
    """Refuse a file that is neither an image nor a caption file (by suffix)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES and suffix != ".zip":
        allowed = ", ".join(sorted(ALLOWED_SUFFIXES | {".zip"}))
        raise UploadError(f"{name!r} has an unsupported type; upload images or captions ({allowed})", 415)


_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
}


def check_content(name: str, head: bytes) -> None:
    """Refuse an image whose first bytes do not match its suffix (a renamed executable, an HTML page, ...)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".webp":
        ok = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    elif suffix in _MAGIC:
        ok = head.startswith(_MAGIC[suffix])
    elif suffix in CAPTION_SUFFIXES:
        ok = b"\x00" not in head
    else:
        ok = True
    if not ok:
        raise UploadError(f"{name!r} is not a {suffix[1:]} file (its content does not match its name)", 415)


def stream_to_file(read: Read, target: Path, limit: int, what: str) -> int:
    """Copy a stream into ``target`` in chunks; stops with 413 as soon as more than ``limit`` bytes arrive."""
    written = 0
    with open(target, "wb") as sink:
        while True:
            chunk = read(CHUNK)
            if not chunk:
                return written
            written += len(chunk)
            if written > limit:
                raise UploadError(f"{what} is larger than the limit of {limit} bytes", 413)
            sink.write(chunk)


def receive(read: Read, folder: Path, name: str, limits: UploadLimits) -> list[str]:
    """Store one uploaded file (or extract one ZIP) into ``folder``; returns the names written, relative to it.

    Nothing is left behind when the upload is refused or the stream breaks.
    """
    check_file_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    is_zip = name.lower().endswith(".zip")
    staging = Path(tempfile.mkstemp(prefix=".upload-", dir=folder)[1])
    try:
        limit = limits.max_total_bytes if is_zip else limits.max_file_bytes
        stream_to_file(read, staging, limit, name)
        if is_zip:
            return extract_zip(staging, folder, limits)
        with open(staging, "rb") as handle:
            check_content(name, handle.read(16))
        _place_all({name: staging}, folder)
        return [name]
    finally:
        staging.unlink(missing_ok=True)


def _check_member(member: zipfile.ZipInfo, limits: UploadLimits) -> PurePosixPath:
    name = member.filename
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise UploadError(f"archive entry {name!r} has an absolute path; refusing the archive")
    if ".." in path.parts or any(part in ("", ".") for part in name.rstrip("/").split("/")):
        raise UploadError(f"archive entry {name!r} leaves its folder ('..' or empty parts); refusing the archive")
    mode = member.external_attr >> 16
    # Archivers that record no file type leave the type bits 0; anything else must be a plain file or folder.
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UploadError(f"archive entry {name!r} is a link or device file; refusing the archive")
    if member.is_dir():
        return path
    if PurePosixPath(name).suffix.lower() not in ALLOWED_SUFFIXES:
        raise UploadError(f"archive entry {name!r} is neither an image nor a caption file; allowed: "
                          f"{', '.join(sorted(ALLOWED_SUFFIXES))}", 415)
    if member.file_size > limits.max_file_bytes:
        raise UploadError(f"archive entry {name!r} is {member.file_size} bytes; at most {limits.max_file_bytes} "
                          "are allowed per file", 413)
    if member.file_size > limits.ratio_floor_bytes and \
            member.file_size > limits.max_ratio * max(member.compress_size, 1):
        raise UploadError(f"archive entry {name!r} expands {member.file_size // max(member.compress_size, 1)}-fold; "
                          f"more than {limits.max_ratio:g}-fold looks like a zip bomb, refusing the archive", 413)
    return path


def extract_zip(archive_path: Path, folder: Path, limits: UploadLimits) -> list[str]:
    """Check every entry of a ZIP, extract it into a staging folder, then move the files into ``folder``."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except DAMAGED_ARCHIVE as exc:
        raise UploadError(f"the upload is not a readable ZIP archive: {exc}", 415) from None
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=folder))
    try:
        with archive:
            members = [m for m in archive.infolist() if not m.filename.startswith(_SKIPPED_PREFIXES)]
            files = [(m, _check_member(m, limits)) for m in members]
            files = [(m, p) for m, p in files if not m.is_dir()]
            if not files:
                raise UploadError("the archive holds no files")
            if len(files) > limits.max_files:
                raise UploadError(f"the archive holds {len(files)} files; at most {limits.max_files} are allowed", 413)
            declared = sum(m.file_size for m, _ in files)
            if declared > limits.max_total_bytes:
                raise UploadError(f"the archive expands to {declared} bytes; at most {limits.max_total_bytes} are "
                                  "allowed", 413)
            _check_layout([p for _, p in files])
            names = _extract_members(archive, files, staging, limits)
        _place_all({name: staging / name for name in names}, folder)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_layout(paths: list[PurePosixPath]) -> None:
    """Refuse an archive naming one file twice, or a file where another entry needs a folder."""
    seen: set[PurePosixPath] = set()
    for path in paths:
        if path in seen:
            raise UploadError(f"archive entry {path.as_posix()!r} appears twice; refusing the archive")
        seen.add(path)
    folders = {parent for path in paths for parent in path.parents}
    clash = next((path for path in paths if path in folders), None)
    if clash is not None:
        raise UploadError(f"archive entry {clash.as_posix()!r} is a file, but other entries put files inside it; "
                          "refusing the archive")


def _place_all(sources: dict[str, Path], folder: Path) -> None:
    """Move checked files into ``folder`` (``sources``: relative name → staged file). Every destination is looked at
    before the first is written, so a blocked one refuses the whole upload; none is written through or over a link."""
    problems = [problem for name in sources if (problem := blocked(folder, name.split("/")))]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UploadError(f"{problems[0]}{more}; upload into a new folder or remove what is in the way", 409)
    try:
        for name, source in sources.items():
            place(source, folder, name.split("/"))
    except PlacementError as exc:
        raise UploadError(f"{exc}; upload into a new folder or remove what is in the way", 409) from None


def _extract_members(archive: zipfile.ZipFile, files: list[tuple[zipfile.ZipInfo, PurePosixPath]], staging: Path,
                     limits: UploadLimits) -> list[str]:
    total = 0
    names = []
    for member, path in files:
        target = staging.joinpath(*path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member(archive, member, UploadError) as read:
            # Headers can lie: the bytes actually produced are counted against the same limits.
            budget = min(limits.max_file_bytes, limits.max_total_bytes - total)
            total += stream_to_file(read, target, budget, f"archive entry {member.filename!r}")
        with open(target, "rb") as handle:
            check_content(member.filename, handle.read(16))
        names.append(path.as_posix())
    return names
