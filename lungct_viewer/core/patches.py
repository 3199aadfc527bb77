"""Sliding-window patch geometry and the patch labelling rule (shared with training).

Grid cell ``(i, j)`` is the model-space window ``[10 i, 10 i + 50) x [10 j, 10 j + 50)``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import constants as C


def grid_shape(height: int, width: int) -> tuple[int, int]:
    """Number of patch rows and columns for a model-space image (47 x 47 for 512 x 512)."""
    if height < C.PATCH_SIZE_PX or width < C.PATCH_SIZE_PX:
        return (0, 0)
    return (
        (height - C.PATCH_SIZE_PX) // C.PATCH_STRIDE_PX + 1,
        (width - C.PATCH_SIZE_PX) // C.PATCH_STRIDE_PX + 1,
    )


def patch_windows(image: np.ndarray) -> np.ndarray:
    """Read-only view ``(gh, gw, 50, 50)`` of every patch of a 2-D image (no copy)."""
    v = sliding_window_view(image, (C.PATCH_SIZE_PX, C.PATCH_SIZE_PX))
    return v[:: C.PATCH_STRIDE_PX, :: C.PATCH_STRIDE_PX]


def extract_patches(image: np.ndarray) -> np.ndarray:
    """All patches of a 2-D image as a contiguous ``(gh * gw, 50, 50)`` array, row-major."""
    w = patch_windows(image)
    return np.ascontiguousarray(w.reshape(-1, C.PATCH_SIZE_PX, C.PATCH_SIZE_PX))


def patch_box(i: int, j: int) -> tuple[int, int, int, int]:
    """Model-space box ``(y0, x0, y1, x1)`` (end-exclusive) of grid cell ``(i, j)``."""
    y0, x0 = i * C.PATCH_STRIDE_PX, j * C.PATCH_STRIDE_PX
    return y0, x0, y0 + C.PATCH_SIZE_PX, x0 + C.PATCH_SIZE_PX


def coverage_counts(flags: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel count of flagged patches covering each model pixel.

    ``flags`` is a ``(gh, gw)`` boolean/integer grid; the result is ``shape`` int32, each
    pixel holding the number (or sum of weights) of flagged 50 x 50 windows containing it.
    """
    gh, gw = flags.shape
    acc = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int32)
    s, p = C.PATCH_STRIDE_PX, C.PATCH_SIZE_PX
    f = flags.astype(np.int32)
    ii, jj = np.nonzero(f)
    if len(ii):
        w = f[ii, jj]
        y0, x0 = ii * s, jj * s
        np.add.at(acc, (y0, x0), w)
        np.add.at(acc, (y0, x0 + p), -w)
        np.add.at(acc, (y0 + p, x0), -w)
        np.add.at(acc, (y0 + p, x0 + p), w)
    return np.cumsum(np.cumsum(acc, axis=0), axis=1)[: shape[0], : shape[1]]


def label_patch(mask_window: np.ndarray) -> int | None:
    """Label rule for one 50 x 50 boolean mask window.

    Returns 1 (ROI) when the central ``ROI_CORE_PX`` square holds at least
    ``ROI_MIN_CORE_PIXELS`` mask pixels, 0 (Not ROI) when the window holds no mask pixel,
    and ``None`` (ambiguous, not used for training) otherwise.
    """
    m = np.asarray(mask_window, dtype=bool)
    if m.shape != (C.PATCH_SIZE_PX, C.PATCH_SIZE_PX):
        raise ValueError(f"a mask window must be 50 x 50, got {m.shape}")
    a = (C.PATCH_SIZE_PX - C.ROI_CORE_PX) // 2
    core = int(m[a : a + C.ROI_CORE_PX, a : a + C.ROI_CORE_PX].sum())
    if core >= C.ROI_MIN_CORE_PIXELS:
        return 1
    if not m.any():
        return 0
    return None


def label_grid(mask: np.ndarray) -> np.ndarray:
    """Vectorised :func:`label_patch` over a model-space mask: ``(gh, gw)`` int8 grid with
    1 = ROI, 0 = Not ROI, -1 = ambiguous."""
    m = np.asarray(mask, dtype=np.int32)
    gh, gw = grid_shape(*m.shape)
    if gh == 0:
        return np.zeros((0, 0), dtype=np.int8)
    ii = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.int64)
    ii[1:, 1:] = np.cumsum(np.cumsum(m, axis=0), axis=1)

    def box_sum(off: int, size: int) -> np.ndarray:
        y0 = np.arange(gh) * C.PATCH_STRIDE_PX + off
        x0 = np.arange(gw) * C.PATCH_STRIDE_PX + off
        Y0, X0 = np.meshgrid(y0, x0, indexing="ij")
        return ii[Y0 + size, X0 + size] - ii[Y0, X0 + size] - ii[Y0 + size, X0] + ii[Y0, X0]

    a = (C.PATCH_SIZE_PX - C.ROI_CORE_PX) // 2
    core = box_sum(a, C.ROI_CORE_PX)
    whole = box_sum(0, C.PATCH_SIZE_PX)
    out = np.full((gh, gw), -1, dtype=np.int8)
    out[whole == 0] = 0
    out[core >= C.ROI_MIN_CORE_PIXELS] = 1
    return out
