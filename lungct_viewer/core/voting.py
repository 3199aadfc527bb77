"""The patient-level call: the method's majority vote over the lesions that pass.

Only lesions that pass the second reading and are at least ``min_diameter_mm`` across vote
(smaller nodules are reported, but at this size lung nodules are managed as benign-appearing,
as in Lung-RADS and the Fleischner guidelines). Their ROI-patch votes are pooled; the call is
malignant when the malignant share reaches the voting threshold, benign otherwise. No such
lesion: "no suspicious findings". Lower thresholds raise sensitivity for malignancy at the
cost of specificity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .labels import Label
from .lesions import Lesion


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

    @property
    def display(self) -> str:
        return self.label.call


def diagnose(lesions: Iterable[Lesion], threshold: float, min_diameter_mm: float = 0.0) -> Diagnosis:
    """Majority vote over the passing lesions of at least ``min_diameter_mm``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("the voting threshold must be between 0 and 1")
    passing = [les for les in lesions if les.passes]
    voting = [les for les in passing if les.diameter_mm >= min_diameter_mm]
    b = sum(les.votes_benign for les in voting)
    m = sum(les.votes_malignant for les in voting)
    small = len(passing) - len(voting)
    if not voting:
        return Diagnosis(Label.NO_FINDINGS, None, threshold, 0, 0, 0, small)
    if b + m == 0:
        return Diagnosis(Label.BENIGN, None, threshold, 0, 0, len(voting), small)
    frac = m / (b + m)
    label = Label.MALIGNANT if frac >= threshold else Label.BENIGN
    return Diagnosis(label, frac, threshold, b, m, len(voting), small)
