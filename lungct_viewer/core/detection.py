"""ROI detection from patch probabilities: the method's rules, made explicit.

For one slice (all in model space until the last step):

1. Each in-field patch gets a label: ROI when ``P(benign) + P(malignant) >=
   min_roi_probability`` (the *detection sensitivity*: lower finds more), and then benign or
   malignant by the larger of the two probabilities; otherwise Not ROI.
2. The labels are painted into a per-pixel vote map: each pixel counts the ROI patches whose
   50 x 50 window covers it.
3. ROI pixels are those covered by at least ``min_votes`` ROI patches.
4. Connected ROI regions (8-connected) smaller than ``min_area_mm2`` are dropped; the rest
   become :class:`Finding` objects. A finding's votes are the labels of the ROI patches whose
   window overlaps it, and its probabilities the mean over those patches.

Nothing here runs the network: every function is cheap enough to re-run on a slider move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import constants as C
from .patches import coverage_counts
from .preprocessing import model_to_native
from .results import SliceAnalysis, StudyAnalysis
from .study import CTVolume

HEATMAP_KINDS = ("malignant", "benign", "roi")


@dataclass(frozen=True)
class DetectionParams:
    """Detection rules (see module docstring); thresholds, not network settings."""

    min_roi_probability: float = C.DEFAULT_MIN_ROI_PROBABILITY
    min_votes: int = C.DEFAULT_MIN_VOTES
    min_area_mm2: float = C.DEFAULT_MIN_AREA_MM2

    @classmethod
    def from_operating_point(cls, op: dict | None) -> "DetectionParams":
        """Parameters from a model card's ``operating_point`` (defaults where absent)."""
        op = op or {}
        return cls(
            min_roi_probability=float(op.get("min_roi_probability", C.DEFAULT_MIN_ROI_PROBABILITY)),
            min_votes=int(op.get("min_votes", C.DEFAULT_MIN_VOTES)),
            min_area_mm2=float(op.get("min_area_mm2", C.DEFAULT_MIN_AREA_MM2)),
        )

    def __post_init__(self) -> None:
        if not 0.0 < self.min_roi_probability <= 1.0:
            raise ValueError("min_roi_probability must be in (0, 1]")
        if not 1 <= int(self.min_votes) <= (C.PATCH_SIZE_PX // C.PATCH_STRIDE_PX) ** 2:
            raise ValueError("min_votes must be between 1 and 25")
        if self.min_area_mm2 < 0:
            raise ValueError("min_area_mm2 must not be negative")


@dataclass(frozen=True)
class Finding:
    """One detected region on one slice.

    ``bbox_px`` is ``(x0, y0, x1, y1)`` in native pixels, end-exclusive; ``centroid_px`` is
    ``(row, col)`` in native pixels; ``centroid_mm`` is patient (LPS) x, y, z in mm.
    """

    slice_index: int
    sop_instance_uid: str
    bbox_px: tuple[int, int, int, int]
    centroid_px: tuple[float, float]
    centroid_mm: tuple[float, float, float]
    area_mm2: float
    diameter_mm: float
    votes_benign: int
    votes_malignant: int
    p_benign: float
    p_malignant: float

    @property
    def malignant_fraction(self) -> float:
        n = self.votes_benign + self.votes_malignant
        return self.votes_malignant / n if n else 0.0

    def label(self, threshold: float = C.DEFAULT_VOTING_THRESHOLD) -> str:
        """``"malignant"`` when the malignant vote fraction is at least ``threshold``."""
        return "malignant" if self.malignant_fraction >= threshold else "benign"


@dataclass
class SliceDetection:
    """Detection result of one slice: the native-pixel ROI mask and its findings."""

    index: int
    roi_mask: np.ndarray  # (H, W) bool, native pixels
    findings: list[Finding] = field(default_factory=list)
    patch_labels: np.ndarray | None = None  # (gh, gw) int8: 0 not ROI, 1 benign, 2 malignant


def patch_labels(sa: SliceAnalysis, params: DetectionParams) -> np.ndarray:
    """``(gh, gw)`` int8 per-patch label: 0 Not ROI, 1 Benign, 2 Malignant (rule 1)."""
    p = sa.probs
    roi = sa.in_field & ((p[..., C.BENIGN] + p[..., C.MALIGNANT]) >= params.min_roi_probability)
    cls = np.where(p[..., C.MALIGNANT] > p[..., C.BENIGN], C.MALIGNANT, C.BENIGN)
    return np.where(roi, cls, C.NOT_ROI).astype(np.int8)


def vote_map(sa: SliceAnalysis, params: DetectionParams) -> np.ndarray:
    """Model-space per-pixel count of ROI patches covering each pixel (rule 2)."""
    return coverage_counts(patch_labels(sa, params) > 0, sa.model_shape)


def detect_slice(sa: SliceAnalysis, volume: CTVolume, params: DetectionParams = DetectionParams()) -> SliceDetection:
    """Apply rules 1-4 to one analysed slice."""
    labels = patch_labels(sa, params)
    mshape = sa.model_shape
    votes = coverage_counts(labels > 0, mshape)
    roi = votes >= params.min_votes
    comp, n = ndimage.label(roi, structure=np.ones((3, 3), dtype=bool))
    roi_native = np.zeros(sa.native_shape, dtype=bool)
    findings: list[Finding] = []
    if n == 0:
        return SliceDetection(sa.index, np.zeros(sa.native_shape, dtype=bool), [], labels)
    # which components each ROI patch's window overlaps
    s, ps = C.PATCH_STRIDE_PX, C.PATCH_SIZE_PX
    members: dict[int, list[tuple[int, int]]] = {k: [] for k in range(1, n + 1)}
    for i, j in zip(*np.nonzero(labels)):
        window = comp[i * s : i * s + ps, j * s : j * s + ps]
        for k in np.unique(window):
            if k:
                members[int(k)].append((int(i), int(j)))
    native = model_to_native(comp, sa.native_shape, sa.native_per_model)
    dy, dx = volume.pixel_spacing_mm
    uid = volume.sop_instance_uids[sa.index]
    objects = ndimage.find_objects(native)
    for k in range(1, n + 1):
        sl = objects[k - 1] if k - 1 < len(objects) else None
        if sl is None:
            continue
        region = native[sl] == k
        area = float(region.sum()) * dy * dx
        if area < params.min_area_mm2 or not members[k]:
            continue
        ii, jj = zip(*members[k])
        lab = labels[list(ii), list(jj)]
        pb = sa.probs[list(ii), list(jj), C.BENIGN]
        pm = sa.probs[list(ii), list(jj), C.MALIGNANT]
        rows, cols = np.nonzero(region)
        r = float(rows.mean() + sl[0].start)
        c = float(cols.mean() + sl[1].start)
        y0, y1 = sl[0].start, sl[0].stop
        x0, x1 = sl[1].start, sl[1].stop
        roi_native[sl] |= region
        findings.append(
            Finding(
                slice_index=sa.index,
                sop_instance_uid=uid,
                bbox_px=(int(x0), int(y0), int(x1), int(y1)),
                centroid_px=(r, c),
                centroid_mm=volume.pixel_to_patient_mm(sa.index, r, c),
                area_mm2=area,
                diameter_mm=float(max((x1 - x0) * dx, (y1 - y0) * dy)),
                votes_benign=int((lab == C.BENIGN).sum()),
                votes_malignant=int((lab == C.MALIGNANT).sum()),
                p_benign=float(pb.mean()),
                p_malignant=float(pm.mean()),
            )
        )
    return SliceDetection(sa.index, roi_native, findings, labels)


def detect_study(
    analysis: StudyAnalysis, volume: CTVolume, params: DetectionParams = DetectionParams()
) -> dict[int, SliceDetection]:
    """:func:`detect_slice` for every analysed slice, keyed by slice index."""
    return {i: detect_slice(sa, volume, params) for i, sa in sorted(analysis.slices.items())}


def all_findings(detections: dict[int, SliceDetection]) -> list[Finding]:
    """Findings of all slices, in slice order."""
    return [f for i in sorted(detections) for f in detections[i].findings]


def class_heatmap(sa: SliceAnalysis, kind: str) -> np.ndarray:
    """Native-pixel ``(H, W)`` float32 heatmap in [0, 1]: at each pixel, the mean probability
    of ``kind`` ("malignant", "benign" or "roi" = benign + malignant) over the analysed patches
    covering it (0 where no analysed patch covers it)."""
    if kind not in HEATMAP_KINDS:
        raise ValueError(f"heatmap kind must be one of {HEATMAP_KINDS}, got {kind!r}")
    p = sa.probs
    if kind == "malignant":
        v = p[..., C.MALIGNANT]
    elif kind == "benign":
        v = p[..., C.BENIGN]
    else:
        v = p[..., C.BENIGN] + p[..., C.MALIGNANT]
    mshape = sa.model_shape
    # scaled integer weights keep coverage_counts exact and fast
    scale = 1 << 16
    num = coverage_counts(np.where(sa.in_field, np.rint(v * scale), 0).astype(np.int64), mshape)
    den = coverage_counts(sa.in_field, mshape)
    heat = np.zeros(mshape, dtype=np.float32)
    np.divide(num, den * float(scale), out=heat, where=den > 0, casting="unsafe")
    return model_to_native(heat, sa.native_shape, sa.native_per_model)


@dataclass(frozen=True)
class Lesion:
    """Findings on adjacent slices whose boxes overlap: one candidate lesion in 3-D."""

    id: int
    findings: tuple[Finding, ...]

    @property
    def slices(self) -> tuple[int, int]:
        """First and last slice index (inclusive)."""
        idx = [f.slice_index for f in self.findings]
        return min(idx), max(idx)

    @property
    def votes_benign(self) -> int:
        return sum(f.votes_benign for f in self.findings)

    @property
    def votes_malignant(self) -> int:
        return sum(f.votes_malignant for f in self.findings)

    @property
    def malignant_fraction(self) -> float:
        n = self.votes_benign + self.votes_malignant
        return self.votes_malignant / n if n else 0.0

    @property
    def diameter_mm(self) -> float:
        """Largest in-plane extent over its slices, mm."""
        return max(f.diameter_mm for f in self.findings)

    @property
    def largest(self) -> Finding:
        return max(self.findings, key=lambda f: f.area_mm2)

    def label(self, threshold: float = C.DEFAULT_VOTING_THRESHOLD) -> str:
        return "malignant" if self.malignant_fraction >= threshold else "benign"


def group_lesions(findings: list[Finding]) -> list[Lesion]:
    """Group findings into 3-D lesions: findings on adjacent slices (index difference 1)
    whose bounding boxes overlap belong to the same lesion. Lesions are numbered from 1 in
    order of their first slice."""
    fs = sorted(findings, key=lambda f: (f.slice_index, f.bbox_px))
    parent = list(range(len(fs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(fs):
        for j in range(i + 1, len(fs)):
            b = fs[j]
            gap = b.slice_index - a.slice_index
            if gap > 1:
                break
            if gap == 1:
                ax0, ay0, ax1, ay1 = a.bbox_px
                bx0, by0, bx1, by1 = b.bbox_px
                if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                    parent[root(i)] = root(j)
    groups: dict[int, list[Finding]] = {}
    for i, f in enumerate(fs):
        groups.setdefault(root(i), []).append(f)
    ordered = sorted(groups.values(), key=lambda g: (g[0].slice_index, g[0].bbox_px))
    return [Lesion(k + 1, tuple(g)) for k, g in enumerate(ordered)]
