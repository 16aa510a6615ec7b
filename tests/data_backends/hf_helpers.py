"""Helpers of the huggingface-backend tests: small image datasets written as parquet files, the way the Hub stores
datasets (a uniquely named module: test folders share one import namespace)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """An encoded PNG of one colour."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def rows(count: int, size: int = 128) -> list[dict[str, Any]]:
    """Rows with an image, a plain caption, a nested caption, a list of captions (two in odd rows) and the image's
    size; every third row has an empty plain caption."""
    return [{
        "image": {"bytes": png(size, size + 16 * (i % 2), (40 * i % 256, 90, 160)), "path": None},
        "text": "" if i % 3 == 2 else f"a square number {i}",
        "meta": {"alt": f"nested caption {i}"},
        "tags": ["", f"tag caption {i}"] + ([f"another tag caption {i}"] if i % 2 else []),
        "width": size,
        "height": size + 16 * (i % 2),
    } for i in range(count)]


def write_parquet(folder: Path, items: list[dict[str, Any]], name: str = "train-00000-of-00001.parquet") -> Path:
    """Write rows as a Hub-style dataset folder (``data/<name>``, the image column typed as images)."""
    import datasets

    features = datasets.Features({
        "image": datasets.Image(),
        "text": datasets.Value("string"),
        "meta": {"alt": datasets.Value("string")},
        "tags": datasets.Sequence(datasets.Value("string")),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
    })
    path = folder / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(items, features=features).to_parquet(str(path))
    return path


def use_datasets_cache(monkeypatch: Any, folder: Path) -> dict[str, str]:
    """Point the ``datasets`` library's cache (it converts every dataset it opens into it) at a test folder, in this
    process and for child processes; returns the environment for the latter."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", folder)
    return {"HF_DATASETS_CACHE": str(folder)}
