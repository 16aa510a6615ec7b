"""Aspect buckets: the training size of each image from its size, the resolution settings and the crop settings.

No image is ever upscaled past what ``minimum_image_size`` allows: an image below it is rejected by :func:`too_small`
(and reported by the dataset scan), never silently enlarged.
"""

from __future__ import annotations

import math
import random

import attrs

#: Aspect ratios (width / height) offered by ``crop_aspect: closest``.
CLOSEST_ASPECTS = (1 / 2, 9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9, 2.0)


@attrs.frozen
class ResolutionSettings:
    """How one dataset sizes its images (the dataset's values, or the config's where the dataset sets none)."""

    resolution: float
    resolution_type: str  # pixel | area | pixel_area
    minimum_image_size: float
    alignment: int
    crop: bool = False
    crop_style: str = "center"  # center | random | corner
    crop_aspect: str = "square"  # square | preserve | closest

    def target_area(self) -> float:
        """Pixels of a bucket: resolution² for pixel and pixel_area, megapixels × 10⁶ for area."""
        if self.resolution_type == "area":
            return self.resolution * 1_000_000
        return float(self.resolution) ** 2


@attrs.frozen
class Placement:
    """Where an image goes: its bucket size and the crop box (left, top, right, bottom) in the resized image."""

    width: int
    height: int
    resized: tuple[int, int]
    crop_box: tuple[int, int, int, int]

    @property
    def bucket(self) -> str:
        """The bucket's name, ``WIDTHxHEIGHT``."""
        return f"{self.width}x{self.height}"


def too_small(width: int, height: int, settings: ResolutionSettings) -> bool:
    """Whether an image is below ``minimum_image_size`` (short edge for pixel, area otherwise)."""
    minimum = settings.minimum_image_size
    if settings.resolution_type == "pixel":
        return min(width, height) < minimum
    if settings.resolution_type == "area":
        return width * height < minimum * 1_000_000
    return width * height < minimum**2


def _align(value: float, alignment: int) -> int:
    return max(alignment, int(round(value / alignment)) * alignment)


def bucket_size(width: int, height: int, settings: ResolutionSettings) -> tuple[int, int]:
    """The bucket of an image of ``width``×``height``, each edge a multiple of the alignment."""
    aspect = width / height
    if settings.crop and settings.crop_aspect == "square":
        aspect = 1.0
    elif settings.crop and settings.crop_aspect == "closest":
        aspect = min(CLOSEST_ASPECTS, key=lambda a: abs(math.log(a / aspect)))
    if settings.resolution_type == "pixel":
        short = float(settings.resolution)
        w, h = (short * aspect, short) if aspect >= 1 else (short, short / aspect)
    else:
        area = settings.target_area()
        w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
    return _align(w, settings.alignment), _align(h, settings.alignment)


def place(width: int, height: int, settings: ResolutionSettings, seed: int = 0) -> Placement:
    """The bucket and crop of an image: resized to cover the bucket (keeping its aspect), then cropped.

    Without ``crop`` the bucket matches the image's own aspect, so the crop only trims the rounding to the
    alignment. ``seed`` picks the box of ``crop_style: random`` (fixed per image so caches stay valid).
    """
    bw, bh = bucket_size(width, height, settings)
    scale = max(bw / width, bh / height)
    rw, rh = max(bw, round(width * scale)), max(bh, round(height * scale))
    spare_w, spare_h = rw - bw, rh - bh
    style = settings.crop_style if settings.crop else "center"
    if style == "corner":
        left, top = 0, 0
    elif style == "random":
        rng = random.Random(seed)
        left, top = rng.randint(0, spare_w), rng.randint(0, spare_h)
    else:
        left, top = spare_w // 2, spare_h // 2
    return Placement(width=bw, height=bh, resized=(rw, rh), crop_box=(left, top, left + bw, top + bh))
