"""Plain-data results of the network: per-slice patch outputs are the source of truth.

ROI masks, heatmaps, findings, votes and the diagnosis are all derived from
:class:`SliceAnalysis` objects (see :mod:`.detection` and :mod:`.voting`), so changing a
threshold never re-runs the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import constants as C


@dataclass
class SliceAnalysis:
    """Patch outputs of one slice on the model-space sliding-window grid.

    ``probs[i, j]`` is the softmax ``(P(not ROI), P(benign), P(malignant))`` of the model-space
    window ``rows 10i..10i+49, cols 10j..10j+49``, and ``logits[i, j]`` the network's
    pre-softmax outputs for it (``probs`` is their softmax). Patches outside the analysed lung
    field (``in_field`` False) were not run through the network; their probabilities are
    ``(1, 0, 0)`` and their logits ``(0, -inf, -inf)``.

    ``logits`` may be left out when a result is built by hand (tests, tools): it is then
    ``log(probs)``, whose softmax is ``probs`` again.
    """

    index: int
    probs: np.ndarray  # (gh, gw, 3) float32
    in_field: np.ndarray  # (gh, gw) bool
    native_shape: tuple[int, int]
    native_per_model: tuple[float, float]  # native pixels per model pixel (fy, fx)
    logits: np.ndarray | None = None  # (gh, gw, 3) float32

    def __post_init__(self) -> None:
        if self.logits is None:
            with np.errstate(divide="ignore"):
                self.logits = np.log(np.asarray(self.probs, dtype=np.float32))

    @property
    def roi_logit(self) -> np.ndarray:
        """``(gh, gw)`` float32 log-odds of ROI against Not ROI:
        ``logaddexp(l_benign, l_malignant) - l_not_roi`` = ``log(P(ROI) / P(not ROI))``.

        It orders patches as ``P(benign) + P(malignant)`` does but keeps resolving them where
        that probability rounds to 1.0 in float32 (logits above about 17). Cells outside the
        analysed field are ``-inf``.
        """
        lg = np.asarray(self.logits, dtype=np.float32)
        out = np.logaddexp(lg[..., C.BENIGN], lg[..., C.MALIGNANT]) - lg[..., C.NOT_ROI]
        out = np.asarray(out, dtype=np.float32)
        out[~np.asarray(self.in_field, dtype=bool)] = -np.inf
        return out

    @property
    def model_shape(self) -> tuple[int, int]:
        from .preprocessing import model_shape

        return model_shape(self.native_shape, self.native_per_model)

    @property
    def patches_total(self) -> int:
        return int(self.in_field.size)

    @property
    def patches_analysed(self) -> int:
        return int(self.in_field.sum())


@dataclass
class StudyAnalysis:
    """The network's output for one series (possibly partial if cancelled)."""

    series_uid: str
    num_slices: int
    slices: dict[int, SliceAnalysis] = field(default_factory=dict)
    model_version: str = ""
    model_path: str = ""
    inference_s: float = 0.0
    cancelled: bool = False
    device: str = "CPU"

    @property
    def complete(self) -> bool:
        return len(self.slices) == self.num_slices

    @property
    def patches_total(self) -> int:
        return sum(s.patches_total for s in self.slices.values())

    @property
    def patches_analysed(self) -> int:
        return sum(s.patches_analysed for s in self.slices.values())

    @property
    def skipped_fraction(self) -> float:
        total = self.patches_total
        return 0.0 if total == 0 else 1.0 - self.patches_analysed / total
