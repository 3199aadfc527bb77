"""The second reading: a suspicion score in [0, 1] for every 3-D candidate (Qt-free).

The CNN reads one 35 x 35 mm window of one slice; a vessel seen end-on is a round blob there
and a nodule too. The second reading looks at each candidate's object in 3-D through the
shape features of :mod:`.candidates` (size, thickness, whether it runs out of its cube like a
vessel, elongation, fill, density, contact with the chest wall) and scores it with a
logistic regression stored as plain JSON (``second_reading.json`` beside the model; no
pickle). Features mean the same on any scanner: millimetres, Hounsfield units and counts.

How the regression is fitted (nodule crops pasted into real lungs as positives, the
pipeline's own candidates on whole studies as negatives, scored leave-one-study-out) is
:mod:`training.second_reading`; the file records its data and figures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_json_atomic
from .candidates import FEATURE_NAMES, Candidate
from .errors import ModelLoadError

SECOND_READING_FILENAME = "second_reading.json"
#: Features entered as their natural logarithm (sizes and ratios).
LOG_FEATURES = frozenset({"radius_mm", "volume_mm3", "elongation", "flatness", "z_ratio"})
#: Features entered in thousands (HU).
KILO_FEATURES = frozenset({"mean_hu", "surround_hu"})
#: Series whose slices lie further apart than this (mm) are thick-slice series: a vessel that
#: runs obliquely through 5-8 mm slices breaks into cross-sections that no longer join in 3-D
#: and look like small isolated nodules, so such series have their own operating point.
THICK_SLICE_MM = 3.5


def is_thick(slice_spacing_mm: float | None, limit_mm: float = THICK_SLICE_MM) -> bool:
    """True for a series whose slices lie more than ``limit_mm`` apart."""
    return slice_spacing_mm is not None and float(slice_spacing_mm) > limit_mm


def transform(names: Sequence[str], values: np.ndarray) -> np.ndarray:
    """Raw features ``(n, k)`` -> regression inputs (logs of sizes, HU / 1000)."""
    x = np.asarray(values, dtype=np.float64).copy()
    for j, name in enumerate(names):
        if name in LOG_FEATURES:
            x[:, j] = np.log(np.maximum(x[:, j], 1e-3))
        elif name in KILO_FEATURES:
            x[:, j] = x[:, j] / 1000.0
    return x


@dataclass
class SecondReading:
    """A fitted logistic regression over candidate features, with its operating point."""

    version: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    #: the operating point (suspicion) of thin-slice series
    threshold: float
    #: the operating point of series with slices more than ``thick_slice_mm`` apart; None:
    #: ``threshold`` for every series
    thick_threshold: float | None = None
    thick_slice_mm: float = THICK_SLICE_MM
    #: At most this many lesions per scan are findings (highest suspicion first); None: no cap.
    max_lesions: int | None = None
    #: Raw feature values are clipped to [lower, upper] (the range seen in fitting) before the
    #: regression, so that an object unlike any example is not extrapolated to a high score.
    lower: list[float] | None = None
    upper: list[float] | None = None
    created: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        k = len(self.features)
        unknown = [f for f in self.features if f not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"unknown candidate features: {', '.join(unknown)}")
        if not (len(self.mean) == len(self.scale) == len(self.coef) == k):
            raise ValueError("mean, scale and coef must have one value per feature")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError("the suspicion threshold must be between 0 and 1")
        if self.thick_threshold is not None and not 0.0 <= float(self.thick_threshold) <= 1.0:
            raise ValueError("the thick-slice suspicion threshold must be between 0 and 1")
        if not float(self.thick_slice_mm) > 0.0:
            raise ValueError("the thick-slice limit must be a positive slice spacing in mm")
        if self.max_lesions is not None and int(self.max_lesions) < 1:
            raise ValueError("max_lesions must be at least 1")

    def reads_as_thick(self, slice_spacing_mm: float | None) -> bool:
        """True when a series whose slices lie ``slice_spacing_mm`` apart is read at the
        thick-slice operating point (there is one, and the slices are that far apart)."""
        return self.thick_threshold is not None and is_thick(slice_spacing_mm, self.thick_slice_mm)

    def threshold_for(self, slice_spacing_mm: float | None) -> float:
        """The operating point of a series whose slices lie ``slice_spacing_mm`` apart."""
        return float(self.thick_threshold if self.reads_as_thick(slice_spacing_mm) else self.threshold)

    def score_matrix(self, raw: np.ndarray) -> np.ndarray:
        """Suspicion for raw feature rows ``(n, len(FEATURE_NAMES))`` in the order of
        :data:`~.candidates.FEATURE_NAMES`."""
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        cols = [FEATURE_NAMES.index(f) for f in self.features]
        values = raw[:, cols]
        if self.lower is not None and self.upper is not None:
            values = np.clip(values, np.asarray(self.lower), np.asarray(self.upper))
        x = transform(self.features, values)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        s = z @ np.asarray(self.coef) + float(self.intercept)
        return 1.0 / (1.0 + np.exp(-np.clip(s, -50, 50)))

    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Suspicion of each candidate, in [0, 1]."""
        if not candidates:
            return np.zeros(0)
        return self.score_matrix(np.stack([c.feature_vector() for c in candidates]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SecondReading:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def second_reading_path_for(model_path: str | os.PathLike[str]) -> Path:
    return Path(model_path).with_name(SECOND_READING_FILENAME)


def load_second_reading(model_path: str | os.PathLike[str]) -> SecondReading | None:
    """The second reading beside a model file, or ``None`` when there is none."""
    path = second_reading_path_for(model_path)
    if not path.is_file():
        return None
    try:
        return SecondReading.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"The second-reading file {path.name} could not be read: {exc}") from exc


def save_second_reading(reading: SecondReading, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    write_json_atomic(path, reading.to_dict())
    return path
