"""A fast lung-field mask that decides which patches are worth running through the network.

Everything here works on a model-space HU slice (see :mod:`.preprocessing`). The rule:

1. body = largest connected region above -500 HU, holes filled;
2. lungs = air (< -400 HU) inside the body, components of at least ``MIN_LUNG_AREA_PX``;
3. a patch is *in the field* when its central 30 x 30 px core contains a lung pixel
   after dilating the lungs by ``LUNG_MARGIN_PX`` (juxtapleural nodules stay in).

Patches outside the field are reported as skipped, not hidden.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import constants as C
from .patches import grid_shape

BODY_HU = -500.0
LUNG_HU = -400.0
MIN_LUNG_AREA_PX = 150  # ~75 mm^2 at 0.7 mm/px
LUNG_MARGIN_PX = 4


def lung_mask(hu_model: np.ndarray) -> np.ndarray:
    """Boolean lung mask of a model-space HU slice (see module docstring)."""
    body = hu_model > BODY_HU
    lab, n = ndimage.label(body)
    if n == 0:
        return np.zeros(hu_model.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)))
    lungs = body & (hu_model < LUNG_HU)
    lab, n = ndimage.label(lungs)
    if n == 0:
        return lungs
    sizes = np.bincount(lab.ravel())
    keep = sizes >= MIN_LUNG_AREA_PX
    keep[0] = False
    return keep[lab]


def field_grid(hu_model: np.ndarray) -> np.ndarray:
    """``(gh, gw)`` bool: patches whose central core touches the (dilated) lung field."""
    gh, gw = grid_shape(*hu_model.shape)
    if gh == 0:
        return np.zeros((0, 0), dtype=bool)
    lungs = lung_mask(hu_model)
    if not lungs.any():
        return np.zeros((gh, gw), dtype=bool)
    lungs = ndimage.binary_dilation(lungs, iterations=LUNG_MARGIN_PX)
    ii = np.zeros((lungs.shape[0] + 1, lungs.shape[1] + 1), dtype=np.int32)
    ii[1:, 1:] = np.cumsum(np.cumsum(lungs, axis=0, dtype=np.int32), axis=1)
    a = (C.PATCH_SIZE_PX - C.ROI_CORE_PX) // 2
    y0 = np.arange(gh) * C.PATCH_STRIDE_PX + a
    x0 = np.arange(gw) * C.PATCH_STRIDE_PX + a
    Y, X = np.meshgrid(y0, x0, indexing="ij")
    s = C.ROI_CORE_PX
    core = ii[Y + s, X + s] - ii[Y, X + s] - ii[Y + s, X] + ii[Y, X]
    return core > 0
