"""The method's per-patch rules and what is drawn from them: ROI votes, the vote map, heatmaps.

For one slice (model space until the last step):

1. Each in-field patch gets a label: ROI when ``P(benign) + P(malignant) >=
   min_roi_probability`` (the *detection sensitivity*: lower finds more), then benign or
   malignant by the larger of the two probabilities; otherwise Not ROI
   (:func:`patch_labels`).
2. The labels are painted into a per-pixel vote map: each pixel counts the ROI patches whose
   50 x 50 window covers it; ROI pixels are those covered by at least ``min_votes`` ROI
   patches (:func:`roi_mask`, the red overlay).
3. :func:`class_heatmap`: per pixel, the mean class probability of the patches covering it.

Findings are not the vote map's connected regions (one of them can cover half a lung): they
are the localised 3-D lesions of :mod:`.candidates` and :mod:`.lesions`, which these
parameters also steer (``min_roi_probability`` for their votes and seeds,
``suspicion_threshold`` for the second reading). Nothing here runs the network: every
function is cheap enough to re-run on a slider move.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import constants as C
from .patches import coverage_counts
from .preprocessing import model_to_native
from .results import SliceAnalysis

HEATMAP_KINDS = ("malignant", "benign", "roi")


@dataclass(frozen=True)
class DetectionParams:
    """The reading's thresholds (see module docstring); none of them re-runs the network.

    ``suspicion_threshold`` is ``None`` when the model has no second reading (every
    candidate is then a lesion); ``max_lesions`` caps the findings per scan (the most
    suspicious first; ``None``: no cap); ``call_min_diameter_mm``: lesions smaller than this
    are reported but do not enter the patient-level call.
    """

    min_roi_probability: float = C.DEFAULT_MIN_ROI_PROBABILITY
    min_votes: int = C.DEFAULT_MIN_VOTES
    suspicion_threshold: float | None = None
    max_lesions: int | None = None
    call_min_diameter_mm: float = C.DEFAULT_CALL_MIN_DIAMETER_MM

    @classmethod
    def from_operating_point(
        cls, op: dict | None, second_reading=None, slice_spacing_mm: float | None = None
    ) -> DetectionParams:
        """Parameters from a model card's ``operating_point`` and the second reading's for a
        series whose slices lie ``slice_spacing_mm`` apart (defaults where absent)."""
        op = op or {}
        return cls(
            min_roi_probability=float(op.get("min_roi_probability", C.DEFAULT_MIN_ROI_PROBABILITY)),
            min_votes=int(op.get("min_votes", C.DEFAULT_MIN_VOTES)),
            suspicion_threshold=None if second_reading is None else second_reading.threshold_for(slice_spacing_mm),
            max_lesions=None if second_reading is None else second_reading.max_lesions,
            call_min_diameter_mm=float(op.get("call_min_diameter_mm", C.DEFAULT_CALL_MIN_DIAMETER_MM)),
        )

    def with_(self, **changes) -> DetectionParams:
        return replace(self, **changes)

    def __post_init__(self) -> None:
        if not 0.0 < self.min_roi_probability <= 1.0:
            raise ValueError("the detection sensitivity must be in (0, 1]")
        if not 1 <= int(self.min_votes) <= (C.PATCH_SIZE_PX // C.PATCH_STRIDE_PX) ** 2:
            raise ValueError("the minimum votes must be between 1 and 25")
        if self.suspicion_threshold is not None and not 0.0 <= self.suspicion_threshold <= 1.0:
            raise ValueError("the suspicion threshold must be between 0 and 1")
        if self.max_lesions is not None and int(self.max_lesions) < 1:
            raise ValueError("the maximum number of findings per scan must be at least 1")
        if self.call_min_diameter_mm < 0:
            raise ValueError("the minimum diameter for the patient call must not be negative")


def roi_probability(probs: np.ndarray) -> np.ndarray:
    """``P(benign) + P(malignant)`` of ``(..., 3)`` class probabilities: the ROI score."""
    return probs[..., C.BENIGN] + probs[..., C.MALIGNANT]


def patch_labels(sa: SliceAnalysis, min_roi_probability: float) -> np.ndarray:
    """``(gh, gw)`` int8 per-patch label: 0 Not ROI, 1 Benign, 2 Malignant (rule 1)."""
    p = sa.probs
    roi = sa.in_field & (roi_probability(p) >= min_roi_probability)
    cls = np.where(p[..., C.MALIGNANT] > p[..., C.BENIGN], C.MALIGNANT, C.BENIGN)
    return np.where(roi, cls, C.NOT_ROI).astype(np.int8)


def vote_map(sa: SliceAnalysis, min_roi_probability: float) -> np.ndarray:
    """Model-space per-pixel count of ROI patches covering each pixel (rule 2)."""
    return coverage_counts(patch_labels(sa, min_roi_probability) > 0, sa.model_shape)


def roi_mask(sa: SliceAnalysis, params: DetectionParams) -> np.ndarray:
    """Native-pixel ``(H, W)`` bool: pixels covered by at least ``min_votes`` ROI patches."""
    votes = vote_map(sa, params.min_roi_probability) >= params.min_votes
    return model_to_native(votes, sa.native_shape, sa.native_per_model)


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
        v = roi_probability(p)
    mshape = sa.model_shape
    # scaled integer weights keep coverage_counts exact and fast
    scale = 1 << 16
    num = coverage_counts(np.where(sa.in_field, np.rint(v * scale), 0).astype(np.int64), mshape)
    den = coverage_counts(sa.in_field, mshape)
    heat = np.zeros(mshape, dtype=np.float32)
    np.divide(num, den * float(scale), out=heat, where=den > 0, casting="unsafe")
    return model_to_native(heat, sa.native_shape, sa.native_per_model)
