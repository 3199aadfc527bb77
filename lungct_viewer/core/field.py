"""A fast lung-field mask that decides which patches are worth running through the network.

Everything here works on a model-space HU slice (see :mod:`.preprocessing`). The rule:

1. body = largest connected region above -500 HU, holes filled (:func:`.lung.body_box`);
2. lungs = air (< -400 HU) inside the body, components of at least ``MIN_LUNG_AREA_PX``;
3. a patch is *in the field* when its central 30 x 30 px core contains a lung pixel
   after dilating the lungs by ``LUNG_MARGIN_PX`` (juxtapleural nodules stay in).

Patches outside the field are reported as skipped, not hidden. This is a per-slice rule, so
that the network can start on the current slice at once; the 3-D lung region in which
candidates are sought is :mod:`.lung`'s.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import constants as C
from .lung import AIR_HU, body_box
from .patches import grid_shape

MIN_LUNG_AREA_PX = 150  # ~75 mm^2 at 0.7 mm/px
LUNG_MARGIN_PX = 4


def _bbox_slices(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _lungs_in_body_box(hu_model: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """The lung mask inside the body's bounding box, and that box (None without a body).

    Everything outside the body's bounding box is background reaching the border, so filling
    holes inside the box equals filling them in the whole slice; lungs lie inside the body."""
    found = body_box(hu_model)
    if found is None:
        return None
    body, box = found
    lungs = body & (hu_model[box] < AIR_HU)
    lab, n = ndimage.label(lungs)
    if n == 0:
        return lungs, box
    sizes = np.bincount(lab.ravel())
    keep = sizes >= MIN_LUNG_AREA_PX
    keep[0] = False
    return keep[lab], box


def lung_mask(hu_model: np.ndarray) -> np.ndarray:
    """Boolean lung mask of a model-space HU slice (see module docstring)."""
    out = np.zeros(hu_model.shape, dtype=bool)
    found = _lungs_in_body_box(hu_model)
    if found is not None:
        out[found[1]] = found[0]
    return out


def field_grid(hu_model: np.ndarray) -> np.ndarray:
    """``(gh, gw)`` bool: patches whose central core touches the (dilated) lung field.

    Equal to dilating the lungs ``LUNG_MARGIN_PX`` times with the 4-neighbour cross
    (``ndimage.binary_dilation(lungs, iterations=LUNG_MARGIN_PX)``) and testing each core for a
    dilated pixel, but computed without the dilation: a dilated pixel lies in a core exactly
    when a lung pixel lies within city-block distance ``LUNG_MARGIN_PX`` of the core, that is
    in one of the rectangles "core grown by ``k`` rows and ``LUNG_MARGIN_PX - k`` columns"."""
    gh, gw = grid_shape(*hu_model.shape)
    out = np.zeros((max(gh, 0), max(gw, 0)), dtype=bool)
    if gh == 0:
        return out
    found = _lungs_in_body_box(hu_model)
    if found is None or not found[0].any():
        return out
    lungs, (rs, cs) = found
    lr, lc = _bbox_slices(lungs)
    lungs = lungs[lr, lc]
    oy, ox = rs.start + lr.start, cs.start + lc.start  # slice coordinates of lungs[0, 0]
    h, w = lungs.shape
    ii = np.zeros((h + 1, w + 1), dtype=np.int32)
    ii[1:, 1:] = np.cumsum(np.cumsum(lungs, axis=0, dtype=np.int32), axis=1)
    a = (C.PATCH_SIZE_PX - C.ROI_CORE_PX) // 2
    y0 = np.arange(gh) * C.PATCH_STRIDE_PX + a - oy
    x0 = np.arange(gw) * C.PATCH_STRIDE_PX + a - ox
    s = C.ROI_CORE_PX
    for k in range(LUNG_MARGIN_PX + 1):
        r = LUNG_MARGIN_PX - k
        ya, yb = np.clip(y0 - k, 0, h), np.clip(y0 + s + k, 0, h)
        xa, xb = np.clip(x0 - r, 0, w), np.clip(x0 + s + r, 0, w)
        count = ii[yb][:, xb] - ii[ya][:, xb] - ii[yb][:, xa] + ii[ya][:, xa]
        out |= count > 0
    return out
