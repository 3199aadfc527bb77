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
   lie inside the region; the mediastinum between the lungs, the airways and holes larger
   than :data:`MAX_HOLE_MM2` (the dome of the diaphragm ringed by lung) do not;
4. juxtapleural nodules of 20-40 mm: what a closing with :data:`JUXTA_CLOSE_MM` adds to step 3
   joins the region where the addition is compact in 3-D (at most :data:`JUXTA_MAX_HEIGHT_MM`
   along the slice normal and :data:`JUXTA_MAX_WIDTH_MM` in-plane) and on the costal side
   (:data:`JUXTA_MIN_LATERALITY`). A nodule on the pleura is a bounded dent in the lung; the
   heart and the spine dent the lungs over many centimetres, and the hila lie medially: they
   stay out. The nodule's base, between the closing's arc and the chest wall,
   joins too (:data:`BASE_MM`);
5. the diaphragm's dome: tissue the region enclosed on a slice that continues below it outside
   the region, with no lung air beneath it within :data:`DOME_AIR_BELOW_MM`, is taken out (the
   liver and spleen under the dome; a nodule has lung beneath it).

Coordinates: ``(slice, row, col)`` voxel indices of the :class:`~.study.CTVolume`; spacings
``(slice, row, col)`` in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

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
#: Juxtapleural nodules of 20-40 mm: radius (mm) of the larger closing, and the largest
#: extents (mm) of a 3-D piece it adds that joins the region.
JUXTA_CLOSE_MM = 20.0
JUXTA_MAX_HEIGHT_MM = 40.0
JUXTA_MAX_WIDTH_MM = 60.0
#: ... and the least mean distance from the midline, as a share of the lungs' half-width.
JUXTA_MIN_LATERALITY = 0.5
#: ... and how far (mm) from such a nodule its base on the chest wall may reach.
BASE_MM = 8.0
#: Tissue enclosed by the region is the diaphragm's dome, not a nodule, when no lung air lies
#: beneath it within this distance (mm) along the slice normal.
DOME_AIR_BELOW_MM = 45.0


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


def _close_piece(piece: np.ndarray, spacing: tuple[float, float], radii_mm: Sequence[float]) -> list[np.ndarray]:
    """Morphological closings (discs of each of ``radii_mm``) of one lung piece, holes up to
    :data:`MAX_HOLE_MM2` filled; ``piece`` must have room for the largest disc around it."""
    outside = ndimage.distance_transform_edt(~piece, sampling=spacing)
    large = _large_holes(piece, spacing)
    out = []
    for radius in radii_mm:
        closed = ndimage.distance_transform_edt(outside <= radius, sampling=spacing) > radius
        out.append(fill_holes((closed & ~large) | piece, MAX_HOLE_MM2 / (spacing[0] * spacing[1])))
    return out


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


def lung_region(hu: np.ndarray, spacing_mm: Sequence[float], factor: int = SUBSAMPLE) -> LungRegion:
    """The :class:`LungRegion` of a ``(n, rows, cols)`` HU volume with voxel spacing
    ``(slice, row, col)`` mm."""
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"a volume must be (n, rows, cols), got shape {hu.shape}")
    if len(spacing_mm) != 3:
        raise ValueError(f"spacing must be (slice, row, col) mm, got {spacing_mm}")
    small = hu[:, ::factor, ::factor]
    spacing = (float(spacing_mm[0]), float(spacing_mm[1]) * factor, float(spacing_mm[2]) * factor)
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
        wide = np.zeros_like(region)
        for z in range(small.shape[0]):
            if lungs[z].any():
                _close_slice(small[z], lungs[z], spacing[1:], region[z], wide[z])
        nodules = _juxtapleural(wide & ~region, _laterality(lungs), spacing)
        region |= nodules
        _fill_bases(region, nodules, spacing[1:])
        _drop_dome_caps(region, lungs, spacing[0])
    return LungRegion(
        mask=region, factor=factor, native_shape=tuple(int(v) for v in hu.shape), midline_col=_midlines(region, factor)
    )


def _close_slice(
    hu: np.ndarray, lungs: np.ndarray, spacing: tuple[float, float], region: np.ndarray, wide: np.ndarray
) -> None:
    """Step 3 of the module docstring on one slice, into ``region`` (closed with
    :data:`CLOSE_MM`) and ``wide`` (closed with :data:`JUXTA_CLOSE_MM`), in place."""
    min_px = MIN_CLOSE_AREA_MM2 / (spacing[0] * spacing[1])
    airway_px = MAX_AIRWAY_MM2 / (spacing[0] * spacing[1])
    cols = np.arange(lungs.shape[1])
    c = np.flatnonzero(lungs.any(axis=0))
    midline = (c[0] + c[-1]) / 2.0
    # each side of the midline on its own: the lungs touch at the junction lines, and
    # closing them together would fill the mediastinum between them
    for side in (cols < midline, cols >= midline):
        pieces, _ = ndimage.label(lungs & side[None, :])
        for k, sl in enumerate(ndimage.find_objects(pieces), start=1):
            piece = pieces[sl] == k
            area = piece.sum()
            if area <= airway_px and hu[sl][piece].mean() < AIRWAY_HU:
                continue  # trachea or a main bronchus: air without lung tissue
            if area < min_px:
                region[sl] |= piece
                wide[sl] |= piece
                continue
            # room for the larger disc: the closings stay within the piece's convex hull
            pad = int(np.ceil(JUXTA_CLOSE_MM / min(spacing))) + 2
            sub = np.pad(pieces[sl] == k, pad)
            narrow, broad = _close_piece(sub, spacing, (CLOSE_MM, JUXTA_CLOSE_MM))
            box = [(s.start - pad, s.stop + pad) for s in sl]
            lo = [max(a, 0) for a, _ in box]
            hi = [min(b, d) for (_, b), d in zip(box, lungs.shape)]
            inner = tuple(slice(low - a, h - a) for low, h, (a, _) in zip(lo, hi, box))
            at = tuple(slice(low, h) for low, h in zip(lo, hi))
            region[at] |= narrow[inner] & side[at[1]][None, :]
            wide[at] |= broad[inner] & side[at[1]][None, :]


def _laterality(lungs: np.ndarray) -> np.ndarray:
    """Per slice and column, the distance from the midline between the lungs as a share of
    the lungs' half-width (0 at the midline, 1 at the outermost lung); 0 without lung."""
    out = np.zeros(lungs.shape[::2], dtype=np.float32)
    cols = np.arange(lungs.shape[2])
    for z, any_col in enumerate(lungs.any(axis=1)):
        c = np.flatnonzero(any_col)
        if len(c) > 1:
            out[z] = np.abs(cols - (c[0] + c[-1]) / 2.0) / ((c[-1] - c[0]) / 2.0)
    return out


def _juxtapleural(added: np.ndarray, laterality: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """The 3-D pieces of ``added`` (what the wider closing adds) no taller than
    :data:`JUXTA_MAX_HEIGHT_MM`, no wider than :data:`JUXTA_MAX_WIDTH_MM` and on the costal
    side (mean ``laterality`` at least :data:`JUXTA_MIN_LATERALITY`: the hila and the
    mediastinum are not); an in-plane opening first cuts the one-pixel slivers that would
    join neighbouring dents."""
    cross = np.zeros((3, 3, 3), dtype=bool)
    cross[1] = ndimage.generate_binary_structure(2, 1)
    added = ndimage.binary_opening(added, structure=cross)
    lab, n = ndimage.label(added)
    if n == 0:
        return added
    keep = np.zeros(n + 1, dtype=bool)
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        height, rows, cols = ((s.stop - s.start) * d for s, d in zip(sl, spacing))
        if height > JUXTA_MAX_HEIGHT_MM or max(rows, cols) > JUXTA_MAX_WIDTH_MM:
            continue
        piece = lab[sl] == k
        lateral = np.broadcast_to(laterality[sl[0], None, sl[2]], piece.shape)[piece].mean()
        keep[k] = lateral >= JUXTA_MIN_LATERALITY
    return keep[lab]


def _fill_bases(region: np.ndarray, nodules: np.ndarray, spacing: tuple[float, float]) -> None:
    """Add, in place, the lens the wider closing leaves between a juxtapleural nodule and the
    chest wall (its arc bridges the dent; the wall curves less): on each slice, the convex
    hull of the region around the nodule, within :data:`BASE_MM` of it. The costal wall is
    convex seen from the lung, so the hull stops at it."""
    grow = [int(np.ceil(BASE_MM / s)) for s in spacing]
    for z in np.flatnonzero(nodules.any(axis=(1, 2))):
        lab, _ = ndimage.label(nodules[z])
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            win = tuple(slice(max(s.start - g, 0), min(s.stop + g, d)) for s, g, d in zip(sl, grow, lab.shape))
            near = ndimage.distance_transform_edt(lab[win] != k, sampling=spacing) <= BASE_MM
            region[z][win] |= near & _hull(region[z][win])


def _hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of a 2-D mask (pixel centres)."""
    pts = np.argwhere(mask)
    if len(pts) < 3 or np.linalg.matrix_rank(pts - pts[0]) < 2:
        return mask.copy()
    eq = ConvexHull(pts).equations  # a . x + b <= 0 inside
    grid = np.argwhere(np.ones(mask.shape, dtype=bool))
    inside = (grid @ eq[:, :2].T + eq[:, 2] <= 1e-9).all(axis=1)
    return inside.reshape(mask.shape) | mask


def _drop_dome_caps(region: np.ndarray, lungs: np.ndarray, slice_mm: float) -> None:
    """Remove, in place, tissue the region enclosed on a slice that continues below it outside
    the region, with no lung air beneath it within :data:`DOME_AIR_BELOW_MM`: the top of the
    diaphragm's dome (liver, spleen) seen through the lung, which on its first slices is a
    small round hole in the lung. Works from the feet up, so a dome taken out of one slice is
    outside the region for the slice above. A nodule whose lower slices the region cut short
    is not a dome: lung lies beneath it. (Slice index grows towards the feet.)"""
    n = region.shape[0]
    reach = max(int(round(DOME_AIR_BELOW_MM / max(slice_mm, 1e-3))), 1)
    counts = np.zeros((n + 1, *lungs.shape[1:]), np.int32)  # lung voxels above each slice
    for z in range(n):  # a running sum per slice: several times faster than cumsum over axis 0
        np.add(counts[z], lungs[z], out=counts[z + 1])
    for z in range(n - 2, -1, -1):
        inside = region[z] & ~lungs[z]
        if not inside.any():
            continue
        lab, m = ndimage.label(inside)
        total = np.maximum(np.bincount(lab.ravel(), minlength=m + 1), 1)
        out_below = np.bincount(lab.ravel(), weights=(~region[z + 1]).ravel(), minlength=m + 1)
        air_below = counts[min(z + 1 + reach, n)] > counts[z + 1]  # lung within `reach` slices below
        aired = np.bincount(lab.ravel(), weights=air_below.ravel(), minlength=m + 1)
        cap = (out_below >= 0.5 * total) & (aired < 0.5 * total)
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
