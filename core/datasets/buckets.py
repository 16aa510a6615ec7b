"""Aspect buckets: the training size of each image from its size, the resolution settings and the crop settings.

No image is ever upscaled past what ``minimum_image_size`` allows: an image below it is rejected by :func:`too_small`
(and reported by the dataset scan), never silently enlarged.
"""

from __future__ import annotations

import math
import random
import sys
from typing import Any

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


def too_small(width: Any, height: Any, settings: ResolutionSettings) -> Any:
    """Whether an image is below ``minimum_image_size`` (short edge for pixel, area otherwise); over NumPy arrays of
    widths and heights, one answer per image."""
    import numpy as np

    w, h = np.asarray(width, dtype=np.float64), np.asarray(height, dtype=np.float64)
    minimum = settings.minimum_image_size
    if settings.resolution_type == "pixel":
        return np.minimum(w, h) < minimum
    if settings.resolution_type == "area":
        return w * h < minimum * 1_000_000
    return w * h < minimum**2


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


@attrs.frozen(eq=False)
class Placements:
    """The placement of many images, one row each: bucket (an index into ``names``), resized size and crop origin.

    Arrays rather than :class:`Placement` objects, so a million images cost 20 bytes each.
    """

    names: tuple[str, ...]  # bucket names
    bucket: Any  # int32 (n,)
    resized: Any  # int32 (n, 2): width, height
    origin: Any  # int32 (n, 2): crop left, top

    def __len__(self) -> int:
        return len(self.bucket)

    def bucket_size(self, index: int) -> tuple[int, int]:
        """(width, height) of the bucket of row ``index``."""
        width, height = self.names[int(self.bucket[index])].split("x")
        return int(width), int(height)

    def placement(self, index: int) -> Placement:
        """Row ``index`` as a :class:`Placement`."""
        width, height = self.bucket_size(index)
        left, top = self.origin[index].tolist()
        return Placement(width=width, height=height, resized=tuple(self.resized[index].tolist()),
                         crop_box=(left, top, left + width, top + height))

    def bucket_names(self) -> list[str]:
        """The bucket name of each row (the same string object for every row of a bucket)."""
        return [self.names[b] for b in self.bucket.tolist()]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return int(self.bucket.nbytes + self.resized.nbytes + self.origin.nbytes)


def place_many(width: Any, height: Any, seeds: Any, settings: ResolutionSettings) -> Placements:
    """:func:`place` for arrays of widths, heights and crop seeds; each distinct size is placed once (except with
    ``crop_style: random``, whose box depends on the seed)."""
    import numpy as np

    count = len(width)
    bucket = np.zeros(count, dtype=np.int32)
    resized = np.zeros((count, 2), dtype=np.int32)
    origin = np.zeros((count, 2), dtype=np.int32)
    names: dict[str, int] = {}
    per_image = settings.crop and settings.crop_style == "random"
    if per_image:
        groups = [(np.array([i]), int(width[i]), int(height[i]), int(seeds[i])) for i in range(count)]
    else:
        sizes = np.asarray(width, dtype=np.int64) << 32 | np.asarray(height, dtype=np.int64)
        unique, inverse = np.unique(sizes, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        groups = [(order[bounds[k] : bounds[k + 1]], int(u >> 32), int(u & 0xFFFFFFFF), 0)
                  for k, u in enumerate(unique.tolist())]
    for rows, w, h, seed in groups:
        p = place(w, h, settings, seed)
        bucket[rows] = names.setdefault(p.bucket, len(names))
        resized[rows] = p.resized
        origin[rows] = p.crop_box[:2]
    return Placements(names=tuple(sys.intern(n) for n in names), bucket=bucket, resized=resized, origin=origin)
