"""The lung region of a CT series: where a lung nodule can lie (Qt-free).

Built once per series from HU, on a grid subsampled in-plane by :data:`SUBSAMPLE`:

1. the body, per slice: the largest connected region above :data:`BODY_HU`, holes filled;
2. air inside the body (below :data:`AIR_HU`), labelled in 3-D; the lungs are the air
   components holding at least :data:`MIN_LUNG_SHARE` of the largest one's volume. Bowel
   gas, the stomach bubble and the air between the patient's back and the table are separate,
   much smaller components and drop out; the trachea and main bronchi stay (they join the
   lungs);
3. per slice, air pieces that are small and hold no lung tissue (mean below
   :data:`AIRWAY_HU`: the trachea and main bronchi) are left out, and each lung's outline is
   closed with a disc of :data:`CLOSE_MM` and its holes filled, each side of the midline on its
   own: vessels, nodules surrounded by lung and nodules against the pleura up to about 20 mm
   lie inside the region; the mediastinum between the lungs, the airways and the diaphragm's
   dome (a hole larger than :data:`MAX_HOLE_MM2`, or tissue that continues below the slice
   outside the lungs) do not.

Coordinates: ``(slice, row, col)`` voxel indices of the :class:`~.study.CTVolume`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: In-plane subsampling of the region grid (native pixels per region pixel).
SUBSAMPLE = 2
BODY_HU = -500.0
AIR_HU = -400.0
#: An air component is lung when it holds at least this share of the largest one's voxels.
MIN_LUNG_SHARE = 0.2
#: Radius (mm) of the disc that closes each lung's outline on every slice.
CLOSE_MM = 10.0
#: Lung pieces smaller than this (mm^2 on a slice) are kept as they are, not closed.
MIN_CLOSE_AREA_MM2 = 100.0
#: An air piece of a slice is an airway (trachea, main bronchus), not lung, when it is at most
#: this large (mm^2) and its mean density is below AIRWAY_HU (lung tissue is denser).
MAX_AIRWAY_MM2 = 1000.0
AIRWAY_HU = -950.0
#: Holes in a lung's outline larger than this (mm^2, a 44 mm disc) are not filled: on the
#: lowest slices the lung rings the dome of the diaphragm, and the liver is not lung.
MAX_HOLE_MM2 = 1500.0


@dataclass(frozen=True)
class LungRegion:
    """The lung region on a grid subsampled by ``factor`` in-plane (see module docstring)."""

    mask: np.ndarray  # (n, ceil(rows / f), ceil(cols / f)) bool
    factor: int
    native_shape: tuple[int, int, int]
    #: per slice, the native column halfway between the two lungs (the body's midline);
    #: NaN on slices without lung
    midline_col: np.ndarray | None = None

    def crop(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        """The region on native voxels ``box`` (slices with explicit, in-range bounds)."""
        zs, ys, xs = box
        f = self.factor
        rows = np.arange(ys.start, ys.stop) // f
        cols = np.arange(xs.start, xs.stop) // f
        return self.mask[zs][:, rows][:, :, cols]

    def contains(self, z: int, row: float, col: float) -> bool:
        """True when native voxel ``(z, row, col)`` lies in the region."""
        f = self.factor
        return bool(self.mask[int(z), int(row) // f, int(col) // f])

    @property
    def volume_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def fill_holes(mask: np.ndarray, max_hole_px: float | None = None) -> np.ndarray:
    """Binary hole filling of a 2-D mask through labelling; with ``max_hole_px`` only holes of
    at most that many pixels are filled."""
    lab, n = ndimage.label(~mask)
    if n == 0:
        return mask
    border = np.unique(np.concatenate([lab[0].ravel(), lab[-1].ravel(), lab[:, 0].ravel(), lab[:, -1].ravel()]))
    keep_open = np.zeros(n + 1, dtype=bool)
    keep_open[border] = True
    if max_hole_px is not None:
        keep_open |= np.bincount(lab.ravel(), minlength=n + 1) > max_hole_px
    keep_open[0] = True
    return mask | ~keep_open[lab]


def body_box(hu: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """The body on a 2-D HU slice, within its bounding box: ``(mask, box)``, the largest
    connected region above :data:`BODY_HU` with its holes filled (``None``: no body).

    Everything outside the box is background that reaches the border, so filling holes
    inside the box equals filling them in the whole slice."""
    lab, n = ndimage.label(hu > BODY_HU)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    k = int(np.argmax(sizes))
    box = ndimage.find_objects(lab, max_label=k)[k - 1]
    return fill_holes(lab[box] == k), box


def _body(hu: np.ndarray) -> np.ndarray:
    out = np.zeros(hu.shape, dtype=bool)
    found = body_box(hu)
    if found is not None:
        out[found[1]] = found[0]
    return out


def _close_piece(piece: np.ndarray, spacing: tuple[float, float], radius_mm: float) -> np.ndarray:
    """Morphological closing (disc of ``radius_mm``) of one lung piece, holes up to
    :data:`MAX_HOLE_MM2` filled."""
    pad = int(np.ceil(radius_mm / min(spacing))) + 2
    p = np.pad(piece, pad)
    grown = ndimage.distance_transform_edt(~p, sampling=spacing) <= radius_mm
    closed = ndimage.distance_transform_edt(grown, sampling=spacing) > radius_mm
    closed &= ~_large_holes(p, spacing)
    return fill_holes(closed | p, MAX_HOLE_MM2 / (spacing[0] * spacing[1]))[pad:-pad, pad:-pad]


def _large_holes(piece: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Holes of a piece larger than :data:`MAX_HOLE_MM2` (the closing must not fill them)."""
    lab, n = ndimage.label(~piece)
    if n == 0:
        return np.zeros_like(piece)
    sizes = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64) * spacing[0] * spacing[1]
    border = np.unique(np.concatenate([lab[0].ravel(), lab[-1].ravel(), lab[:, 0].ravel(), lab[:, -1].ravel()]))
    big = sizes > MAX_HOLE_MM2
    big[border] = False
    big[0] = False
    return big[lab]


def lung_region(hu: np.ndarray, pixel_spacing_mm: tuple[float, float], factor: int = SUBSAMPLE) -> LungRegion:
    """The :class:`LungRegion` of a ``(n, rows, cols)`` HU volume."""
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"a volume must be (n, rows, cols), got shape {hu.shape}")
    small = hu[:, ::factor, ::factor]
    spacing = (float(pixel_spacing_mm[0]) * factor, float(pixel_spacing_mm[1]) * factor)
    air = np.zeros(small.shape, dtype=bool)
    for z in range(small.shape[0]):
        air[z] = _body(small[z]) & (small[z] < AIR_HU)
    lab, n = ndimage.label(air)
    region = np.zeros(small.shape, dtype=bool)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        keep = sizes >= MIN_LUNG_SHARE * sizes.max()
        keep[0] = False
        lungs = keep[lab]
        min_px = MIN_CLOSE_AREA_MM2 / (spacing[0] * spacing[1])
        airway_px = MAX_AIRWAY_MM2 / (spacing[0] * spacing[1])
        cols = np.arange(small.shape[2])
        for z in range(small.shape[0]):
            if not lungs[z].any():
                continue
            c = np.flatnonzero(lungs[z].any(axis=0))
            midline = (c[0] + c[-1]) / 2.0
            # each side of the midline on its own: the lungs touch at the junction lines, and
            # closing them together would fill the mediastinum between them
            for side in (cols < midline, cols >= midline):
                pieces, _ = ndimage.label(lungs[z] & side[None, :])
                for k, sl in enumerate(ndimage.find_objects(pieces), start=1):
                    piece = pieces[sl] == k
                    area = piece.sum()
                    if area <= airway_px and small[z][sl][piece].mean() < AIRWAY_HU:
                        continue  # trachea or a main bronchus: air without lung tissue
                    if area < min_px:
                        region[z][sl] |= piece
                        continue
                    grow = int(np.ceil(CLOSE_MM / min(spacing)))
                    big = tuple(
                        slice(max(s.start - grow, 0), min(s.stop + grow, d)) for s, d in zip(sl, small.shape[1:])
                    )
                    sub = pieces[big] == k
                    region[z][big] |= _close_piece(sub, spacing, CLOSE_MM) & side[big[1]][None, :]
        _drop_dome_caps(region, lungs)
    return LungRegion(
        mask=region, factor=factor, native_shape=tuple(int(v) for v in hu.shape), midline_col=_midlines(region, factor)
    )


def _drop_dome_caps(region: np.ndarray, lungs: np.ndarray) -> None:
    """Remove, in place, tissue the region enclosed on a slice that continues below it outside
    the lungs: the top of the diaphragm's dome (liver, spleen) seen through the lung, which
    on its first slices is a small round hole in the lung. Works from the feet up, so a dome
    taken out of one slice is outside the region for the slice above. (Slice index grows
    towards the feet.)"""
    for z in range(region.shape[0] - 2, -1, -1):
        inside = region[z] & ~lungs[z]
        if not inside.any():
            continue
        lab, n = ndimage.label(inside)
        below_out = (~region[z + 1]).astype(np.int64)
        total = np.bincount(lab.ravel(), minlength=n + 1)
        out_below = np.bincount(lab.ravel(), weights=below_out.ravel(), minlength=n + 1)
        cap = out_below >= 0.5 * np.maximum(total, 1)
        cap[0] = False
        if cap.any():
            region[z] &= ~cap[lab]


def _midlines(region: np.ndarray, factor: int) -> np.ndarray:
    """Per slice, the native column midway between the region's leftmost and rightmost
    columns (the lungs flank the mediastinum); NaN where a slice has no region."""
    out = np.full(region.shape[0], np.nan)
    cols = region.any(axis=1)
    for z in range(region.shape[0]):
        c = np.flatnonzero(cols[z])
        if len(c):
            out[z] = (c[0] + c[-1] + 1) * factor / 2.0
    return out
