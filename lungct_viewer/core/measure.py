"""Measurements a reader makes on a slice: a length in mm, HU statistics of a circle (Qt-free).

Points are native pixel coordinates ``(row, col)`` (fractional allowed) of one slice;
``pixel_spacing_mm`` is ``(row spacing, column spacing)`` as in :class:`~.study.CTVolume`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def segment_length_mm(p0: tuple[float, float], p1: tuple[float, float], pixel_spacing_mm: tuple[float, float]) -> float:
    """Length in mm of the segment from ``p0`` to ``p1`` (both ``(row, col)``) on one slice."""
    dy, dx = pixel_spacing_mm
    return math.hypot((p1[0] - p0[0]) * dy, (p1[1] - p0[1]) * dx)


@dataclass(frozen=True)
class HUStats:
    """HU statistics of the pixels inside a drawn region of one slice."""

    n_pixels: int
    mean: float
    sd: float
    min: float
    max: float
    area_mm2: float

    def text(self) -> str:
        """``mean -650 HU, SD 120, min -900, max 40, area 78.5 mm²`` (or why there is none)."""
        if self.n_pixels == 0:
            return "no pixel inside the circle"
        return (
            f"mean {self.mean:.0f} HU, SD {self.sd:.0f}, min {self.min:.0f}, max {self.max:.0f}, "
            f"area {self.area_mm2:.1f} mm\u00b2"
        )


def circle_mask(shape: tuple[int, int], centre: tuple[float, float], radius_px: float) -> np.ndarray:
    """``(H, W)`` bool: pixels whose centre lies within ``radius_px`` of ``centre`` ``(row, col)``.

    Pixel ``(r, c)`` has its centre at ``(r + 0.5, c + 0.5)`` in the coordinates a view draws
    in (the image's top-left corner is ``(0, 0)``).
    """
    h, w = shape
    cy, cx = centre
    r = max(float(radius_px), 0.0)
    y0, y1 = max(int(math.floor(cy - r)), 0), min(int(math.ceil(cy + r)) + 1, h)
    x0, x1 = max(int(math.floor(cx - r)), 0), min(int(math.ceil(cx + r)) + 1, w)
    mask = np.zeros((h, w), dtype=bool)
    if y0 >= y1 or x0 >= x1:
        return mask
    yy, xx = np.mgrid[y0:y1, x0:x1]
    mask[y0:y1, x0:x1] = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r
    return mask


def region_stats(hu: np.ndarray, mask: np.ndarray, pixel_spacing_mm: tuple[float, float]) -> HUStats:
    """HU statistics of ``hu`` (one slice) over the pixels of ``mask``."""
    values = np.asarray(hu)[mask].astype(np.float64)
    area = float(values.size * pixel_spacing_mm[0] * pixel_spacing_mm[1])
    if values.size == 0:
        return HUStats(0, math.nan, math.nan, math.nan, math.nan, 0.0)
    return HUStats(
        int(values.size), float(values.mean()), float(values.std()), float(values.min()), float(values.max()), area
    )


def circle_stats(
    hu: np.ndarray, centre: tuple[float, float], radius_px: float, pixel_spacing_mm: tuple[float, float]
) -> HUStats:
    """HU statistics of the circle of ``radius_px`` around ``centre`` ``(row, col)`` on ``hu``."""
    return region_stats(hu, circle_mask(hu.shape, centre, radius_px), pixel_spacing_mm)
