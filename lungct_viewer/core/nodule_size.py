"""A nodule's size on one slice, measured as radiologists measure it (Qt-free).

* **Long axis**: the longest in-plane diameter of the cross-section (its largest Feret
  diameter), mm.
* **Short axis**: the cross-section's largest extent perpendicular to the long axis, mm.
* **Mean diameter**: the average of the two, the size the Fleischner Society guidelines
  (2017) and Lung-RADS use for solid nodules (their 6 mm and 8 mm steps). It is the
  ``diameter_mm`` of lesions and reference outlines, so the call's size rule
  (:data:`~.constants.DEFAULT_CALL_MIN_DIAMETER_MM`) means what the guidelines mean.

Distances are taken between pixel centres and one pixel is added (its width in that
direction), as calipers laid edge to edge measure: an object 7 pixels across measures 7
pixels, whatever its orientation, and a single pixel measures one pixel both ways (measuring
the pixels' squares corner to corner instead makes a small object longer along its diagonals
than across its rows). A 3-D object's size is that of its largest cross-section by area,
where radiologists measure it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError


@dataclass(frozen=True)
class Axes:
    """Long and short axis of a cross-section, mm."""

    long_mm: float
    short_mm: float

    @property
    def mean_mm(self) -> float:
        """The mean diameter: the average of the long and the short axis."""
        return 0.5 * (self.long_mm + self.short_mm)


def _border_centres(mask: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Centres (mm, ``(y, x)``) of the object's border pixels (their hull is the object's)."""
    m = np.asarray(mask, dtype=bool)
    inner = np.zeros_like(m)
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    rows, cols = np.nonzero(m & ~inner)
    return np.stack([rows * spacing[0], cols * spacing[1]], axis=1).astype(np.float64)


def _pixel_width(u: np.ndarray, spacing: tuple[float, float]) -> float:
    """A pixel's width (mm) along unit direction ``u = (y, x)``: one pixel spacing on square
    pixels, whatever the direction."""
    return float(np.hypot(u[0] * spacing[0], u[1] * spacing[1]))


def slice_axes(mask: np.ndarray, spacing: tuple[float, float]) -> Axes:
    """Long and short axis of a 2-D object (``mask`` True on the object; ``spacing`` the
    row and column spacing, mm). An empty mask measures 0."""
    pts = _border_centres(mask, spacing)
    if len(pts) == 0:
        return Axes(0.0, 0.0)
    if len(pts) >= 3:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:  # collinear centres (a row of pixels): every point is on the hull
            pass
    d = pts[:, None, :] - pts[None, :, :]
    dist2 = (d**2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(dist2)), dist2.shape)
    length = float(np.sqrt(dist2[i, j]))
    u = (pts[j] - pts[i]) / length if length > 0 else np.array([0.0, 1.0])
    v = np.array([-u[1], u[0]])
    across = pts @ v
    along_mm = length + _pixel_width(u, spacing)
    across_mm = float(across.max() - across.min()) + _pixel_width(v, spacing)
    # the extent across never exceeds the longest chord, but on pixels that are not square (or
    # in rounding, where the two tie) the added pixel widths can: the short axis is the shorter
    return Axes(max(along_mm, across_mm), min(along_mm, across_mm))


def largest_section_axes(masks: Iterable[np.ndarray], spacing: tuple[float, float]) -> Axes:
    """The axes of the largest cross-section by area (a 3-D object's size); ``masks`` are its
    cross-sections on one grid."""
    largest = max(masks, key=lambda m: int(np.count_nonzero(m)), default=None)
    return Axes(0.0, 0.0) if largest is None else slice_axes(largest, spacing)
