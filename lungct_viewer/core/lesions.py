"""3-D lesions: candidates with their CNN votes, suspicion and per-slice findings (Qt-free).

A :class:`Lesion` is a :class:`~.candidates.Candidate` read at the current detection
settings:

* **votes** -- the method's majority vote, restricted to the lesion: on each slice of its
  object, the patches whose central 30 x 30 window holds the object (at least
  :data:`~.constants.ROI_MIN_CORE_PIXELS` model pixels of it, or all of it when it is
  smaller; the labelling rule of the patch set) and that vote ROI (``P(benign) +
  P(malignant) >= min_roi_probability``) vote benign or malignant by the larger of the two;
* **suspicion** -- the second reading's score (:mod:`.second_reading`); a lesion *passes*
  when it reaches the suspicion threshold (every lesion passes when there is no second
  reading);
* **findings** -- its cross-section on every slice it covers: box, centroid, area, long and
  short axis and mean diameter (:mod:`.nodule_size`), the per-slice marks a reader and
  ``report.json`` see;
* **size** -- the long and short axis of its largest cross-section (by area) and their mean,
  the lesion's ``diameter_mm`` (the Fleischner and Lung-RADS measure);
* **texture** -- solid (or part-solid), ground glass, or not assessed (under 6 mm, or on
  thicker slices than 2.5 mm fewer slice spacings across than that; :mod:`.texture`).

Boxes are ``(x0, y0, x1, y1)`` native pixels, end-exclusive; centroids ``(row, col)``
native pixels; ``centroid_mm`` patient (LPS) mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import constants as C
from .candidates import Candidate
from .detection import roi_probability
from .labels import Label
from .results import SliceAnalysis, StudyAnalysis
from .study import CTVolume
from .texture import Texture, texture_of


@dataclass(frozen=True)
class SliceFinding:
    """A lesion's cross-section on one slice."""

    lesion_id: int
    slice_index: int
    sop_instance_uid: str
    bbox_px: tuple[int, int, int, int]
    centroid_px: tuple[float, float]
    centroid_mm: tuple[float, float, float]
    area_mm2: float
    long_axis_mm: float
    short_axis_mm: float

    @property
    def diameter_mm(self) -> float:
        """Mean diameter: the average of the long and the short axis, mm."""
        return 0.5 * (self.long_axis_mm + self.short_axis_mm)


@dataclass(frozen=True)
class Lesion:
    """One 3-D lesion at the current settings (see module docstring)."""

    id: int
    candidate: Candidate
    suspicion: float | None
    passes: bool
    votes_benign: int
    votes_malignant: int
    p_benign: float
    p_malignant: float
    findings: tuple[SliceFinding, ...]
    centroid_mm: tuple[float, float, float]
    #: long and short axis (mm) of the largest cross-section (by area)
    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    texture: Texture = Texture.NOT_ASSESSED

    @property
    def diameter_mm(self) -> float:
        """Mean diameter (mm): the average of the long and the short axis of the largest
        cross-section; the size the call's rule compares."""
        return 0.5 * (self.long_axis_mm + self.short_axis_mm)

    @property
    def slices(self) -> tuple[int, int]:
        return self.findings[0].slice_index, self.findings[-1].slice_index

    @property
    def central(self) -> SliceFinding:
        """The finding on the slice with the largest cross-section."""
        return max(self.findings, key=lambda f: f.area_mm2)

    @property
    def malignant_fraction(self) -> float | None:
        n = self.votes_benign + self.votes_malignant
        return self.votes_malignant / n if n else None

    def label(self, threshold: float) -> Label:
        """Malignant when the malignant vote fraction reaches ``threshold``; benign when it
        does not; benign also when no patch voted (a lesion seen by the second reading
        only)."""
        frac = self.malignant_fraction
        return Label.MALIGNANT if frac is not None and frac >= threshold else Label.BENIGN

    def probability(self, threshold: float) -> float:
        """The mean probability of the lesion's own label over its voting patches."""
        return self.p_malignant if self.label(threshold) is Label.MALIGNANT else self.p_benign


def _patches_over(cand: Candidate, z: int, sa: SliceAnalysis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_core_counts` of the candidate's cross-section on slice ``z``, computed once per
    slice analysis (settings only filter the patches, they do not move them)."""
    key = ("patches", z)
    hit = cand.memo.get(key)
    if hit is None or hit[0] is not sa:
        hit = (sa, _core_counts(cand.mask[z - cand.box[0]], cand.box[2], cand.box[4], sa))
        cand.memo[key] = hit
    return hit[1]


def _core_counts(obj: np.ndarray, r0: int, c0: int, sa: SliceAnalysis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid cells whose central 30 x 30 model pixels hold object pixels, with the count in
    model pixels: ``(ii, jj, counts)``, cells in row-major order.

    ``obj`` is a native cross-section whose pixel ``(0, 0)`` is native ``(r0, c0)``. A
    window's central square is a band of rows times a band of columns, so the counts of all
    cells are one product: (cells x rows in band) @ obj @ (columns in band x cells)."""
    fy, fx = sa.native_per_model
    gh, gw = sa.probs.shape[:2]
    a = (C.PATCH_SIZE_PX - C.ROI_CORE_PX) // 2
    s = C.PATCH_STRIDE_PX
    rows, cols = np.flatnonzero(obj.any(axis=1)), np.flatnonzero(obj.any(axis=0))
    if not len(rows):
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    sub = obj[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    def bands(first: int, last: int, origin: int, f: float, n_cells: int) -> tuple[int, np.ndarray]:
        m = (np.arange(first, last + 1) + origin) / f  # model coordinate of each native pixel
        lo = max(int(np.floor((m[0] - a - C.ROI_CORE_PX) / s)) + 1, 0)  # first window ending past m[0]
        hi = min(int(np.floor((m[-1] - a) / s)), n_cells - 1)
        start = np.arange(lo, hi + 1)[:, None] * s + a
        return lo, ((start <= m[None, :]) & (m[None, :] < start + C.ROI_CORE_PX)).astype(np.float64)

    i0, band_i = bands(int(rows[0]), int(rows[-1]), r0, fy, gh)
    j0, band_j = bands(int(cols[0]), int(cols[-1]), c0, fx, gw)
    counts = band_i @ sub.astype(np.float64) @ band_j.T
    ii, jj = np.nonzero(counts)
    return ii + i0, jj + j0, counts[ii, jj] / (fy * fx)  # model pixels per native pixel


def read_lesion(
    cand: Candidate,
    volume: CTVolume,
    analysis: StudyAnalysis,
    *,
    min_roi_probability: float,
    suspicion: float | None,
    suspicion_threshold: float | None,
    lesion_id: int,
) -> Lesion:
    """The :class:`Lesion` of one candidate at the given settings (module docstring)."""
    slice_mm = volume.slice_spacing_mm  # None: a single slice
    dz = float(slice_mm or 1.0)
    dy, dx = (float(v) for v in volume.pixel_spacing_mm)
    findings: list[SliceFinding] = []
    b = m = 0
    pb: list[float] = []
    pm: list[float] = []
    weighted = np.zeros(3)
    total = 0.0
    z0 = cand.box[0]
    for k in range(cand.mask.shape[0]):
        obj = cand.mask[k]
        if not obj.any():
            continue
        z = z0 + k
        r0, c0 = cand.box[2], cand.box[4]
        rows, cols = np.nonzero(obj)
        y0, y1 = int(rows.min()) + r0, int(rows.max()) + r0 + 1
        x0, x1 = int(cols.min()) + c0, int(cols.max()) + c0 + 1
        cy, cx = float(rows.mean()) + r0, float(cols.mean()) + c0
        area = float(len(rows)) * dy * dx
        axes = cand.section_axes((dy, dx))[z]
        findings.append(
            SliceFinding(
                lesion_id=lesion_id,
                slice_index=z,
                sop_instance_uid=volume.sop_instance_uids[z],
                bbox_px=(x0, y0, x1, y1),
                centroid_px=(cy, cx),
                centroid_mm=volume.pixel_to_patient_mm(z, cy, cx),
                area_mm2=area,
                long_axis_mm=axes.long_mm,
                short_axis_mm=axes.short_mm,
            )
        )
        weighted += np.array(volume.pixel_to_patient_mm(z, cy, cx)) * area
        total += area
        sa = analysis.slices.get(z)
        if sa is None:
            continue
        ii, jj, counts = _patches_over(cand, z, sa)
        if len(ii) == 0:
            continue
        need = min(float(C.ROI_MIN_CORE_PIXELS), 0.999 * float(counts.max()))
        keep = (counts >= need) & sa.in_field[ii, jj]
        p = sa.probs[ii[keep], jj[keep]]
        roi = roi_probability(p) >= min_roi_probability
        mal = p[:, C.MALIGNANT] > p[:, C.BENIGN]
        b += int((roi & ~mal).sum())
        m += int((roi & mal).sum())
        pb += p[roi, C.BENIGN].tolist()
        pm += p[roi, C.MALIGNANT].tolist()
    passes = suspicion is None or suspicion_threshold is None or suspicion >= suspicion_threshold
    largest = max(findings, key=lambda f: f.area_mm2)  # where a radiologist measures it
    centroid = tuple(float(v) for v in weighted / max(total, 1e-9))
    return Lesion(
        id=lesion_id,
        candidate=cand,
        suspicion=suspicion,
        passes=passes,
        votes_benign=b,
        votes_malignant=m,
        p_benign=float(np.mean(pb)) if pb else 0.0,
        p_malignant=float(np.mean(pm)) if pm else 0.0,
        findings=tuple(findings),
        centroid_mm=centroid,  # type: ignore[arg-type]
        long_axis_mm=largest.long_axis_mm,
        short_axis_mm=largest.short_axis_mm,
        volume_mm3=float(cand.mask.sum()) * dz * dy * dx,
        texture=texture_of(
            cand.features.get("solid_core_mm"),
            slice_mm,
            largest.diameter_mm,  # the lesion's mean diameter (its largest cross-section's)
        ),
    )


def reading_order(lesions: Sequence[Lesion]) -> list[Lesion]:
    """Lesions top to bottom (first slice), then by row and column of their centre."""
    return sorted(lesions, key=lambda les: (les.slices[0], les.central.centroid_px))
