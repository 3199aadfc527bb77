"""Slice geometry in DICOM patient coordinates (LPS, mm), shared by the loader and the volume.

One definition of each quantity, used by :mod:`.dicom` (ordering slices while scanning and
loading) and by :class:`~.study.CTVolume`:

* the **slice normal** is ``row_cosines x column_cosines`` of ImageOrientationPatient,
  normalised (:func:`slice_normal`);
* a slice's **position along the normal** is its ImagePositionPatient projected on the normal
  (:func:`projected_positions`); slices are ordered head to feet, i.e. by decreasing position;
* the **slice spacing** of a series is the median distance between neighbouring positions,
  ignoring duplicates (:func:`slice_spacing`);
* a series is **axial** when its normal lies within about 37 degrees of the body (z) axis
  (:func:`is_axial`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A series is axial when ``|normal_z|`` is at least this (about 37 degrees from the z axis).
AXIAL_MIN_NORMAL_Z = 0.8
#: Two slices closer than this along the normal (mm) are at the same position (duplicates).
DUPLICATE_TOLERANCE_MM = 0.01
#: Row or column cosines shorter than this, or a cross product smaller, are unusable.
_MIN_NORM = 1e-3


def slice_normal(orientation: Sequence[float] | np.ndarray) -> np.ndarray | None:
    """Unit normal ``row x col`` of an ImageOrientationPatient (6 values), or None.

    None when the value is not 6 finite numbers or the two cosines are (nearly) zero or
    parallel, i.e. when it defines no plane.
    """
    try:
        o = np.asarray(orientation, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if o.shape != (6,) or not np.all(np.isfinite(o)):
        return None
    row, col = o[:3], o[3:]
    if np.linalg.norm(row) < _MIN_NORM or np.linalg.norm(col) < _MIN_NORM:
        return None
    n = np.cross(row, col)
    norm = float(np.linalg.norm(n))
    if norm < _MIN_NORM:
        return None
    return n / norm


def projected_positions(positions: np.ndarray | Sequence[Sequence[float]], normal: np.ndarray) -> np.ndarray:
    """Positions (n, 3) in mm projected on ``normal``: each slice's place along the normal."""
    return np.asarray(positions, dtype=np.float64).reshape(-1, 3) @ np.asarray(normal, dtype=np.float64)


def slice_spacing(projected: np.ndarray | Sequence[float]) -> float | None:
    """Median distance (mm) between neighbouring slice positions, ignoring duplicates.

    ``projected`` must be ordered (either direction). None for fewer than two distinct
    positions.
    """
    p = np.asarray(projected, dtype=np.float64).reshape(-1)
    if p.size < 2:
        return None
    gaps = np.abs(np.diff(p))
    gaps = gaps[gaps > DUPLICATE_TOLERANCE_MM]
    return float(np.median(gaps)) if gaps.size else None


def is_axial(normal: np.ndarray) -> bool:
    """True when the slice normal is close to the body (z) axis."""
    return abs(float(normal[2])) >= AXIAL_MIN_NORMAL_Z
