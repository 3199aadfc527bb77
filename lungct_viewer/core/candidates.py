"""Localised 3-D candidates: where the CNN peaks, the dense structure it points at (Qt-free).

A connected ROI region of the vote map can cover half a lung; a reader needs a mark on the
nodule. Candidates are built in three steps, none of which runs the network:

1. **Seeds.** On every analysed slice, the local maxima (3 x 3 grid cells) of the ROI logit
   ``log(P(benign) + P(malignant)) - log(P(not ROI))`` at or above the seed floor. A seed's
   position is the score-weighted centre of its 3 x 3 neighbourhood of 50 x 50 windows, in
   native pixels.
2. **Core.** Within :data:`SEARCH_MM` of the seed (in-plane, on its slice and the two next to
   it), the thickest point of the dense structure (HU above :data:`DENSE_HU`, inside the lung
   region of :mod:`.lung`): the maximum of its in-plane distance transform. A nodule's core is
   its centre; a vessel's is its axis.
3. **Object.** In a cube around the core scaled to the structure's thickness, the dense
   structure is opened with a ball of half the core radius (thinner vessels that touch a
   nodule come off) and the connected piece holding the core is the candidate's object. Seeds
   that fall on an object already found join that candidate.

Each candidate carries shape features of its object (:data:`FEATURE_NAMES`) that mean the
same on any scanner: size and thickness in mm, how much of its cube it fills, whether it
runs out through the cube's faces (a vessel does, a nodule does not), elongation, density,
contact with the chest wall. The second reading (:mod:`.second_reading`) scores them. The
size of the object's solid component (:data:`DESCRIPTOR_NAMES`) tells a ground-glass lesion
from a solid one (:mod:`.texture`).

Coordinates: native voxel indices ``(slice, row, col)``; mm where a name says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import constants as C
from .lung import LungRegion
from .nodule_size import Axes, slice_axes
from .results import SliceAnalysis
from .texture import solid_core_mm

#: HU above which lung tissue counts as dense structure (solid and part-solid nodules,
#: vessels, airway walls).
DENSE_HU = -600.0
#: In-plane search radius (mm) around a seed for the core of its structure.
SEARCH_MM = 8.0
#: Half-size (mm) of the object cube: ``clip(3 * radius + 5, min, max)``.
CUBE_MIN_MM = 15.0
CUBE_MAX_MM = 60.0
#: Opening radius: this share of the core radius, at least OPEN_MIN_MM.
OPEN_SHARE = 0.5
OPEN_MIN_MM = 0.8
#: Width (mm) of the shell around an object whose mean HU is its surroundings' density.
SURROUND_MM = 2.0
#: Densities above soft tissue (calcification, iodinated contrast) are counted apart
#: (``bright_fraction``) and the mean density is capped here.
SOFT_TISSUE_MAX_HU = 100.0
BRIGHT_HU = 300.0

FEATURE_NAMES = (
    "radius_mm",  # radius of the largest ball inside the object (3-D), mm
    "volume_mm3",  # object volume inside its cube, mm^3
    "faces_touched",  # faces of the cube the object reaches (0-6)
    "dense_faces_touched",  # faces the unopened dense structure reaches (0-6)
    "fill",  # object voxels / voxels of its bounding box
    "elongation",  # sqrt(largest / smallest principal variance), mm
    "flatness",  # sqrt(middle / smallest principal variance)
    "z_ratio",  # extent along the slice normal / largest in-plane extent
    "mean_hu",  # mean HU of the object's inner half, at most SOFT_TISSUE_MAX_HU
    "bright_fraction",  # share of the object above BRIGHT_HU (calcium, contrast-filled vessels)
    "surround_hu",  # mean HU of the lung in a thin shell around the object
    "wall_contact",  # share of the object's shell outside the lung region
    "mediastinal_contact",  # the part of it on the object's midline side (mediastinum, hila)
    "inferior_contact",  # the part of it below the object's centre (the diaphragm's dome)
    "attachments",  # dense pieces cut off the object by the opening (vessels, bronchi)
)
#: Measured on every candidate like the features, but describing the lesion for the reader
#: and the patient call rather than scoring it (the second reading does not use them).
DESCRIPTOR_NAMES = (
    "solid_core_mm",  # diameter of the object's solid component (:mod:`.texture`), mm
)


@dataclass(frozen=True)
class Seed:
    """A local maximum of the ROI logit on one slice, in native pixels."""

    slice_index: int
    row: float
    col: float
    roi_logit: float


@dataclass
class Candidate:
    """One localised 3-D candidate (see module docstring).

    ``box`` is the object's cube as ``(z0, z1, y0, y1, x0, x1)`` native voxel bounds
    (end-exclusive) and ``mask`` the object inside it; ``core`` is ``(slice, row, col)``.
    """

    id: int
    core: tuple[int, int, int]
    box: tuple[int, int, int, int, int, int]
    mask: np.ndarray = field(repr=False)
    seeds: list[Seed] = field(default_factory=list, repr=False)
    features: dict[str, float] = field(default_factory=dict)
    #: values derived from the object that no setting changes, computed once by the modules
    #: that read the candidate (its cross-sections' axes, the patches over them)
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def max_roi_logit(self) -> float:
        return max(s.roi_logit for s in self.seeds)

    @property
    def slices(self) -> tuple[int, int]:
        """First and last slice index (inclusive) the object covers."""
        zs = np.flatnonzero(self.mask.any(axis=(1, 2)))
        return self.box[0] + int(zs[0]), self.box[0] + int(zs[-1])

    def slice_mask(self, z: int) -> tuple[np.ndarray, int, int] | None:
        """``(mask, row0, col0)``: the object's cross-section on slice ``z`` within its cube."""
        k = z - self.box[0]
        if not 0 <= k < self.mask.shape[0] or not self.mask[k].any():
            return None
        return self.mask[k], self.box[2], self.box[4]

    def section_axes(self, spacing: tuple[float, float]) -> dict[int, Axes]:
        """Long and short axis of the object's cross-section on each slice it covers (slice
        index -> :class:`~.nodule_size.Axes`; ``spacing`` row and column mm), measured once:
        lesions are read again whenever a setting moves, the object does not change."""
        key = ("axes", float(spacing[0]), float(spacing[1]))
        if key not in self.memo:
            self.memo[key] = {self.box[0] + k: slice_axes(m, key[1:]) for k, m in enumerate(self.mask) if m.any()}
        return self.memo[key]

    def feature_vector(self) -> np.ndarray:
        return np.array([self.features[n] for n in FEATURE_NAMES], dtype=np.float64)


def logit(p: float) -> float:
    """``log(p / (1 - p))`` for a probability in (0, 1]."""
    p = min(max(float(p), 1e-12), 1.0 - 1e-12)
    return float(np.log(p / (1.0 - p)))


def find_seeds(sa: SliceAnalysis, floor_logit: float) -> list[Seed]:
    """Local maxima (3 x 3) of the ROI logit of one slice at or above ``floor_logit``."""
    g = sa.roi_logit
    if g.size == 0:
        return []
    peak = ndimage.maximum_filter(g, size=3, mode="constant", cval=-np.inf)
    fy, fx = sa.native_per_model
    half = (C.PATCH_SIZE_PX - 1) / 2.0
    out = []
    for i, j in zip(*np.nonzero((g == peak) & (g >= floor_logit))):
        i0, i1, j0, j1 = max(i - 1, 0), min(i + 2, g.shape[0]), max(j - 1, 0), min(j + 2, g.shape[1])
        w = 1.0 / (1.0 + np.exp(-np.clip(g[i0:i1, j0:j1].astype(np.float64), -50, 50)))
        ii, jj = np.mgrid[i0:i1, j0:j1]
        ci, cj = float((w * ii).sum() / w.sum()), float((w * jj).sum() / w.sum())
        out.append(
            Seed(
                int(sa.index),
                (ci * C.PATCH_STRIDE_PX + half) * fy,
                (cj * C.PATCH_STRIDE_PX + half) * fx,
                float(g[i, j]),
            )
        )
    return out


def _bounds(
    centre: Sequence[float], half_mm: Sequence[float], spacing: Sequence[float], shape: Sequence[int]
) -> tuple[slice, slice, slice]:
    return tuple(  # type: ignore[return-value]
        slice(max(int(np.floor(c - h / s)), 0), min(int(np.ceil(c + h / s)) + 1, n))
        for c, h, s, n in zip(centre, half_mm, spacing, shape)
    )


def _dense(hu: np.ndarray, lung: LungRegion, box: tuple[slice, slice, slice]) -> np.ndarray:
    return (hu[box] > DENSE_HU) & lung.crop(box)


def _edt(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Euclidean distance (mm) to the nearest voxel outside ``mask``; the outside of the
    array counts as outside."""
    return ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]


def find_core(
    seed: Seed, hu: np.ndarray, lung: LungRegion, spacing: Sequence[float]
) -> tuple[tuple[int, int, int], float] | None:
    """``((slice, row, col), in-plane radius mm)`` of the thickest dense point near ``seed``."""
    dz, dy, dx = spacing
    reach = SEARCH_MM + CUBE_MIN_MM
    box = (
        slice(max(seed.slice_index - 1, 0), min(seed.slice_index + 2, hu.shape[0])),
        *_bounds((seed.row, seed.col), (reach, reach), (dy, dx), hu.shape[1:]),
    )
    dense = _dense(hu, lung, box)
    if not dense.any():
        return None
    dist = np.stack([ndimage.distance_transform_edt(np.pad(d, 1), sampling=(dy, dx))[1:-1, 1:-1] for d in dense])
    rr = (np.arange(box[1].start, box[1].stop) - seed.row) * dy
    cc = (np.arange(box[2].start, box[2].stop) - seed.col) * dx
    near = (rr[:, None] ** 2 + cc[None, :] ** 2) <= SEARCH_MM**2
    dist = np.where(near[None], dist, 0.0)
    k = int(np.argmax(dist))
    radius = float(dist.flat[k])
    if radius <= 0:
        return None
    z, r, c = np.unravel_index(k, dist.shape)
    return (box[0].start + int(z), box[1].start + int(r), box[2].start + int(c)), radius


def _faces(mask: np.ndarray) -> int:
    return (
        int(mask[0].any())
        + int(mask[-1].any())
        + int(mask[:, 0].any())
        + int(mask[:, -1].any())
        + int(mask[:, :, 0].any())
        + int(mask[:, :, -1].any())
    )


_SIX = ndimage.generate_binary_structure(3, 1)
_ALL = np.ones((3, 3, 3), dtype=bool)
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def _grow_box(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, slice, slice]:
    """Bounding box of ``mask`` grown by ``margin`` voxels per axis, clipped to the array."""
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    return tuple(  # type: ignore[return-value]
        slice(max(int(i[0]) - m, 0), min(int(i[-1]) + m + 1, n)) for i, m, n in zip(idx, margin, mask.shape)
    )


def segment_object(
    core: tuple[int, int, int], radius_mm: float, hu: np.ndarray, lung: LungRegion, spacing: Sequence[float]
) -> tuple[tuple[slice, slice, slice], np.ndarray, dict[str, float]] | None:
    """The object around ``core`` (module docstring, step 3): ``(cube, mask, features)``.

    The opening is grown from the core only: the eroded piece holding the core, dilated back
    by the opening radius inside the dense structure.
    """
    half = float(np.clip(3.0 * radius_mm + 5.0, CUBE_MIN_MM, CUBE_MAX_MM))
    box = _bounds(core, (half, half, half), spacing, hu.shape)
    local = tuple(int(c - b.start) for c, b in zip(core, box))
    dense = _dense(hu, lung, box)
    if not dense[local]:
        return None
    dist = _edt(dense, spacing)
    full_lab, _ = ndimage.label(dense, structure=_ALL)
    full = full_lab == full_lab[local]
    a = max(OPEN_SHARE * radius_mm, OPEN_MIN_MM)
    obj = full
    if dist[local] > a:
        eroded_lab, _ = ndimage.label(dist > a, structure=_SIX)
        kernel = eroded_lab == eroded_lab[local]
        margin = [int(np.ceil(a / s)) + 1 for s in spacing]
        sub = _grow_box(kernel, margin)
        grown = np.zeros_like(dense)
        grown[sub] = _edt(~kernel[sub], spacing) <= a
        grown &= dense
        lab, _ = ndimage.label(grown, structure=_SIX)
        obj = lab == lab[local]
    mid = lung.midline_col[core[0]] if lung.midline_col is not None else np.nan
    feats = _features(
        obj,
        full,
        dense,
        dist,
        hu[box],
        lung.crop(box),
        spacing,
        midline_local=float(mid) - box[2].start if np.isfinite(mid) else None,
    )
    return box, obj, feats


def _features(
    obj: np.ndarray,
    full: np.ndarray,
    dense: np.ndarray,
    dist: np.ndarray,
    hu: np.ndarray,
    lung: np.ndarray,
    spacing: Sequence[float],
    midline_local: float | None = None,
) -> dict[str, float]:
    """Shape features of ``obj`` within its cube; ``midline_local`` is the body's midline as a
    column of the cube (``None``: unknown)."""
    dz, dy, dx = spacing
    faces_obj, faces_full = _faces(obj), _faces(full)
    ring_px = max(int(round(SURROUND_MM / min(dy, dx))), 1)
    sub = _grow_box(obj, (2, ring_px + 2, ring_px + 2))
    if midline_local is not None:
        midline_local -= sub[2].start
    obj, dense, dist, hu, lung = obj[sub], dense[sub], dist[sub], hu[sub], lung[sub]
    zz, yy, xx = np.nonzero(obj)
    n = len(zz)
    ext = np.array([np.ptp(zz) + 1, np.ptp(yy) + 1, np.ptp(xx) + 1], dtype=np.float64)
    pts = np.stack([zz * dz, yy * dy, xx * dx], axis=1).astype(np.float64)
    # principal variances, each voxel counted as a uniform box (so one slice is not flat)
    cov = np.cov(pts.T) if n > 1 else np.zeros((3, 3))
    cov = cov + np.diag(np.array([dz, dy, dx]) ** 2 / 12.0)
    ev = np.sort(np.linalg.eigvalsh(cov))[::-1]
    radius = float(dist[obj].max())
    inner = obj & (dist >= 0.5 * radius)
    grown = ndimage.binary_dilation(obj, structure=_SIX)
    shell = grown & ~obj
    ring = ndimage.binary_dilation(grown, structure=_IN_PLANE, iterations=ring_px) & ~grown & lung
    cut, ncut = ndimage.label(dense & ~obj, structure=_SIX)
    attached = np.unique(cut[shell & (cut > 0)]).size if ncut else 0
    outside = shell & ~lung
    medial = inferior = 0.0
    if outside.any():
        oz, _, ox = np.nonzero(outside)
        inferior = float(np.sum(oz > zz.mean() + 0.5))  # slice index grows towards the feet
        if midline_local is not None:
            medial = float(np.sum(np.abs(ox - midline_local) < abs(float(xx.mean()) - midline_local)))
    return {
        "radius_mm": radius,
        "volume_mm3": float(n * dz * dy * dx),
        "faces_touched": float(faces_obj),
        "dense_faces_touched": float(faces_full),
        "fill": float(n / np.prod(ext)),
        "elongation": float(np.sqrt(ev[0] / ev[2])),
        "flatness": float(np.sqrt(ev[1] / ev[2])),
        "z_ratio": float(ext[0] * dz / max(ext[1] * dy, ext[2] * dx)),
        "mean_hu": float(min(hu[inner].mean() if inner.any() else hu[obj].mean(), SOFT_TISSUE_MAX_HU)),
        "bright_fraction": float((hu[obj] > BRIGHT_HU).mean()),
        "surround_hu": float(hu[ring].mean()) if ring.any() else -1000.0,
        "wall_contact": float(outside.sum() / max(int(shell.sum()), 1)),
        "mediastinal_contact": medial / max(int(shell.sum()), 1),
        "inferior_contact": inferior / max(int(shell.sum()), 1),
        "attachments": float(attached),
        "solid_core_mm": solid_core_mm(obj, hu, spacing),
    }


def _inside(cand: Candidate, z: int, row: float, col: float, tol_px: int = 3) -> bool:
    """True when native voxel ``(z, row, col)`` lies on ``cand``'s object, within ``tol_px``
    pixels in-plane."""
    z0, z1, y0, y1, x0, x1 = cand.box
    k, r, c = z - z0, int(round(row)) - y0, int(round(col)) - x0
    if not (0 <= k < z1 - z0 and -tol_px <= r < y1 - y0 + tol_px and -tol_px <= c < x1 - x0 + tol_px):
        return False
    m = cand.mask[k, max(r - tol_px, 0) : r + tol_px + 1, max(c - tol_px, 0) : c + tol_px + 1]
    return bool(m.any())


class _Objects:
    """Objects in the order found, with their cubes in one array, so that finding the first
    one a position lies on (:func:`_inside`) tests the cubes at once and the masks of the few
    that hold it: a study has hundreds of objects and thousands of seeds."""

    def __init__(self) -> None:
        self.items: list[Candidate] = []
        self._boxes = np.zeros((16, 6), dtype=np.int64)
        self._logits = np.zeros(16)  # the ROI logit of the seed that found each

    @property
    def logits(self) -> np.ndarray:
        return self._logits[: len(self.items)]

    def add(self, cand: Candidate, logit: float = 0.0) -> None:
        n = len(self.items)
        if n == len(self._boxes):  # grow by doubling
            self._boxes = np.concatenate([self._boxes, np.zeros_like(self._boxes)])
            self._logits = np.concatenate([self._logits, np.zeros_like(self._logits)])
        self._boxes[n], self._logits[n] = cand.box, logit
        self.items.append(cand)

    def first_on(
        self, z: int, row: float, col: float, tol_px: int = 3, min_logit: float | None = None
    ) -> Candidate | None:
        """The first object ``(z, row, col)`` lies on (:func:`_inside`), among those found
        from a seed of at least ``min_logit`` when it is given; ``None``: none."""
        n = len(self.items)
        if not n:
            return None
        b = self._boxes[:n]
        r, c = int(round(row)), int(round(col))
        near = (
            (b[:, 0] <= z)
            & (z < b[:, 1])
            & (b[:, 2] - tol_px <= r)
            & (r < b[:, 3] + tol_px)
            & (b[:, 4] - tol_px <= c)
            & (c < b[:, 5] + tol_px)
        )
        if min_logit is not None:
            near &= self.logits >= min_logit
        for k in np.flatnonzero(near):
            if _inside(self.items[k], z, row, col, tol_px):
                return self.items[k]
        return None


class ObjectCache:
    """The cores of seeds and the objects of cores already found in one series.

    Both are pure functions of a position, the HU and the lung region, so they can be found
    slice by slice while the network is still running (:meth:`prepare`) and reused by
    :func:`build_candidates`: its candidates are the same, only ready sooner. One cache
    belongs to one series and its lung region. A reader and a writer on two threads at
    worst find the same object twice.
    """

    def __init__(self) -> None:
        self._cores: dict[tuple[int, float, float], tuple[tuple[int, int, int], float] | None] = {}
        self._objects: dict[tuple[tuple[int, int, int], float], Candidate | None] = {}
        #: the objects :meth:`prepare` found, with the ROI logit of the seed that found each
        self._prepared = _Objects()

    def __len__(self) -> int:
        return len(self._objects)

    def core(
        self, seed: Seed, hu: np.ndarray, lung: LungRegion, spacing: Sequence[float]
    ) -> tuple[tuple[int, int, int], float] | None:
        """:func:`find_core` of ``seed``, found once."""
        key = (seed.slice_index, seed.row, seed.col)
        if key not in self._cores:
            self._cores[key] = find_core(seed, hu, lung, spacing)
        return self._cores[key]

    def object(
        self, core: tuple[int, int, int], radius_mm: float, hu: np.ndarray, lung: LungRegion, spacing: Sequence[float]
    ) -> Candidate | None:
        """The object of ``core`` (:func:`segment_object`) as a candidate without seeds, its
        cross-sections measured; found once. ``None``: no object there."""
        key = (core, radius_mm)
        if key not in self._objects:
            seg = segment_object(core, radius_mm, hu, lung, spacing)
            proto = None
            if seg is not None:
                box, obj, feats = seg
                b = (box[0].start, box[0].stop, box[1].start, box[1].stop, box[2].start, box[2].stop)
                proto = Candidate(id=0, core=core, box=b, mask=obj, features=feats)
                proto.section_axes(tuple(spacing[1:]))
            self._objects[key] = proto
        return self._objects[key]

    def prepare(
        self,
        seeds: Iterable[Seed],
        hu: np.ndarray,
        lung: LungRegion,
        spacing: Sequence[float],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Find the cores and objects of ``seeds`` (strongest first); stops early when
        ``should_stop()``. Like :func:`build_candidates`, it skips a seed, or a seed's core,
        that lies on an object found before from a stronger seed (of these seeds or earlier
        ones): there, the stronger seed's object comes first and takes the weaker seed in."""
        for seed in sorted(seeds, key=lambda s: -s.roi_logit):
            if should_stop():
                return
            before = self._prepared
            if before.first_on(seed.slice_index, seed.row, seed.col, min_logit=seed.roi_logit) is not None:
                continue
            core = self.core(seed, hu, lung, spacing)
            if core is None or before.first_on(*core[0], tol_px=0, min_logit=seed.roi_logit) is not None:
                continue
            proto = self.object(*core, hu, lung, spacing)
            if proto is not None:
                before.add(proto, seed.roi_logit)


def build_candidates(
    seeds: Iterable[Seed],
    hu: np.ndarray,
    lung: LungRegion,
    spacing: Sequence[float],
    cache: ObjectCache | None = None,
) -> list[Candidate]:
    """Candidates from seeds (strongest first); a seed on an existing object joins it.

    ``spacing`` is ``(slice spacing, row spacing, col spacing)`` in mm. Candidates are
    numbered from 1 in order of their first slice, then row. ``cache`` holds the cores and
    objects found before (:meth:`ObjectCache.prepare`) and keeps those found here.
    """
    cache = cache if cache is not None else ObjectCache()
    placed = _Objects()
    for seed in sorted(seeds, key=lambda s: -s.roi_logit):
        home = placed.first_on(seed.slice_index, seed.row, seed.col)
        if home is not None:
            home.seeds.append(seed)
            continue
        found = cache.core(seed, hu, lung, spacing)
        if found is None:
            continue
        core, radius = found
        home = placed.first_on(*core, tol_px=0)
        if home is not None:
            home.seeds.append(seed)
            continue
        proto = cache.object(core, radius, hu, lung, spacing)
        if proto is None:
            continue
        cand = Candidate(id=0, core=core, box=proto.box, mask=proto.mask, seeds=[seed], features=dict(proto.features))
        cand.memo.update(proto.memo)  # the cross-sections' axes, measured off the thread that reads lesions
        placed.add(cand)
    cands = placed.items
    cands.sort(key=lambda c: (c.slices[0], c.core[1], c.core[2]))
    for k, c in enumerate(cands, start=1):
        c.id = k
    return cands
