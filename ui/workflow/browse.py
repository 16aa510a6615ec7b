"""The datasets folder as the browser sees it: paths confined to it (symlinks resolved), listings and scans."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from simpletuner.core.config.datasets import CAPTION_STRATEGIES
from simpletuner.core.datasets.buckets import ResolutionSettings, too_small
from simpletuner.core.errors import SimpleTunerError
from simpletuner.ui.workflow.uploads import IMAGE_SUFFIXES

MAX_LISTED = 2000
MAX_SCANNED = 20_000
PREVIEW_PAIRS = 6


class OutsideDatasetsError(SimpleTunerError):
    """A path that is not inside the datasets folder."""


def confine(root: Path, relative: str) -> Path:
    """``relative`` (a path inside the datasets folder, '' for the folder itself) as a real path inside ``root``.

    Symlinks are resolved before the check, so a link pointing outside is refused like an outside path.
    """
    if "\x00" in relative:
        raise OutsideDatasetsError("the path holds a NUL character")
    if relative.startswith(("/", "\\")) or (len(relative) > 1 and relative[1] == ":"):
        raise OutsideDatasetsError(f"{relative!r} is absolute; give a path relative to the datasets folder")
    base = root.resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise OutsideDatasetsError(f"{relative!r} is outside the datasets folder {base}; choose a folder inside it")
    return candidate


def relative_name(root: Path, path: Path) -> str:
    """A confined path as the browser names it (POSIX, relative to the datasets folder; '' for the root)."""
    rel = path.relative_to(root.resolve())
    return "" if rel == Path(".") else rel.as_posix()


def is_image(name: str) -> bool:
    """Whether a file name has an image suffix the trainer reads."""
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def list_folder(root: Path, relative: str) -> dict[str, Any]:
    """Sub-folders and files of a folder inside the datasets folder (links leading outside are left out)."""
    folder = confine(root, relative)
    if not folder.is_dir():
        raise SimpleTunerError(f"{relative or 'the datasets folder'} is not a folder")
    folders, files = [], []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name.lower()):
            if entry.name.startswith("."):
                continue
            here = relative_name(root, folder)
            try:
                real = confine(root, f"{here}/{entry.name}" if here else entry.name)
            except OutsideDatasetsError:
                continue
            if real.is_dir():
                folders.append({"name": entry.name, "path": relative_name(root, real),
                                "images": _count_images(real)})
            elif len(files) < MAX_LISTED:
                files.append({"name": entry.name, "size": real.stat().st_size, "image": is_image(entry.name)})
    parent = None if folder == root.resolve() else relative_name(root, folder.parent)
    return {"path": relative_name(root, folder), "parent": parent, "folders": folders, "files": files,
            "root": str(root.resolve())}


def _count_images(folder: Path) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if is_image(e.name))
    except OSError:
        return 0


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def caption_of(path: Path, strategy: str, instance_prompt: str | None) -> str | None:
    """The caption the trainer will use for an image (None: no caption file), like the training scan does."""
    if strategy == "instanceprompt":
        return instance_prompt or ""
    if strategy == "filename":
        return path.stem.replace("_", " ").replace("-", " ").strip()
    text = path.with_suffix(".txt")
    return text.read_text(encoding="utf-8", errors="replace").strip() if text.is_file() else None


def scan_folder(root: Path, relative: str, *, resolution: float, resolution_type: str,
                minimum_image_size: float | None, caption_strategy: str,
                instance_prompt: str | None = None) -> dict[str, Any]:
    """What training would make of a folder: images found, those below the minimum size (skipped, never
    upscaled), those without a caption, and a preview of a few image–caption pairs."""
    if caption_strategy not in CAPTION_STRATEGIES:
        raise SimpleTunerError(f"caption_strategy must be one of {', '.join(CAPTION_STRATEGIES)}")
    folder = confine(root, relative)
    if not folder.is_dir():
        raise SimpleTunerError(f"{relative or 'the datasets folder'} is not a folder")
    settings = ResolutionSettings(resolution=resolution, resolution_type=resolution_type,
                                  minimum_image_size=resolution if minimum_image_size is None else minimum_image_size,
                                  alignment=8)
    images = sorted(p for p in folder.rglob("*") if is_image(p.name) and p.is_file())[:MAX_SCANNED]
    too_small_names, uncaptioned, unreadable, preview = [], [], [], []
    for path in images:
        size = _image_size(path)
        name = path.relative_to(folder).as_posix()
        if size is None:
            unreadable.append(name)
            continue
        if too_small(size[0], size[1], settings):
            too_small_names.append(name)
            continue
        caption = caption_of(path, caption_strategy, instance_prompt)
        if caption is None:
            uncaptioned.append(name)
        elif len(preview) < PREVIEW_PAIRS:
            preview.append({"image": relative_name(root, path), "caption": caption, "width": size[0],
                            "height": size[1]})
    usable = len(images) - len(too_small_names) - len(uncaptioned) - len(unreadable)
    return {"path": relative_name(root, folder), "images": len(images), "usable": usable,
            "too_small": len(too_small_names), "too_small_examples": too_small_names[:5],
            "no_caption": len(uncaptioned), "no_caption_examples": uncaptioned[:5],
            "unreadable": len(unreadable), "preview": preview}
