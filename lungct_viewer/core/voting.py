"""The patient-level call: the method's majority vote over the lesions that pass.

Only lesions that pass the second reading, are at least ``min_diameter_mm`` across and are
not pure ground glass vote (:func:`enters_call`). Smaller nodules and ground-glass nodules
are reported, but lung nodules are managed as benign-appearing at that size and, without a
solid component, at any size (Lung-RADS 2-3, the Fleischner guidelines; :mod:`.texture`).
Their ROI-patch votes are pooled; the call is
malignant when the malignant share reaches the voting threshold, benign otherwise. No such
lesion: "no suspicious findings". Lower thresholds raise sensitivity for malignancy at the
cost of specificity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .labels import Label
from .lesions import Lesion
from .texture import Texture


@dataclass(frozen=True)
class Diagnosis:
    """The patient-level call and the votes behind it."""

    label: Label
    malignant_fraction: float | None
    threshold: float
    votes_benign: int
    votes_malignant: int
    n_lesions: int  # lesions that entered the call
    n_small: int  # passing lesions below the call's minimum diameter
    n_ground_glass: int = 0  # passing lesions of that size or more left out as ground glass

    @property
    def display(self) -> str:
        return self.label.call


def call_exclusion(les: Lesion, min_diameter_mm: float = 0.0) -> str | None:
    """Why a passing lesion does not vote in the patient call ("smaller than 6 mm", "ground
    glass"); ``None`` when it votes or when it does not pass (a candidate is no finding)."""
    if not les.passes:
        return None
    if les.diameter_mm < min_diameter_mm:
        return f"smaller than {min_diameter_mm:g} mm"
    if les.texture is Texture.GROUND_GLASS:
        return "ground glass"
    return None


def enters_call(les: Lesion, min_diameter_mm: float = 0.0) -> bool:
    """True when ``les`` votes in the patient call: it passes the second reading, is at least
    ``min_diameter_mm`` across and is not pure ground glass."""
    return les.passes and call_exclusion(les, min_diameter_mm) is None


def diagnose(lesions: Iterable[Lesion], threshold: float, min_diameter_mm: float = 0.0) -> Diagnosis:
    """Majority vote over the lesions that enter the call (:func:`enters_call`)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("the voting threshold must be between 0 and 1")
    passing = [les for les in lesions if les.passes]
    sized = [les for les in passing if les.diameter_mm >= min_diameter_mm]
    voting = [les for les in sized if enters_call(les, min_diameter_mm)]
    b = sum(les.votes_benign for les in voting)
    m = sum(les.votes_malignant for les in voting)
    small, glass = len(passing) - len(sized), len(sized) - len(voting)
    if not voting:
        return Diagnosis(Label.NO_FINDINGS, None, threshold, 0, 0, 0, small, glass)
    if b + m == 0:
        return Diagnosis(Label.BENIGN, None, threshold, 0, 0, len(voting), small, glass)
    frac = m / (b + m)
    label = Label.MALIGNANT if frac >= threshold else Label.BENIGN
    return Diagnosis(label, frac, threshold, b, m, len(voting), small, glass)
