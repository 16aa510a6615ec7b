"""Turning an image file into the pixel tensor of its bucket: resize to cover, crop, scale to [-1, 1]."""

from __future__ import annotations

import io
from typing import Any

from simpletuner.core.datasets.buckets import Placement
from simpletuner.core.interfaces import DataBackend


def load_pixels(backend: DataBackend, path: str, placement: Placement) -> Any:
    """A ``3×H×W`` float32 tensor in [-1, 1] of the image at ``path``, resized and cropped to its bucket."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(io.BytesIO(backend.read(path))) as image:
        rgb = image.convert("RGB")
    if rgb.size != placement.resized:
        rgb = rgb.resize(placement.resized, Image.Resampling.LANCZOS)
    rgb = rgb.crop(placement.crop_box)
    array = np.asarray(rgb, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float()
    return tensor / 127.5 - 1.0
