"""Majority voting: per finding, per slice and per patient, with an adjustable threshold.

The malignant fraction is ``malignant votes / (benign + malignant votes)`` summed over the
findings considered; the call is malignant when that fraction is at least the threshold.
Lower thresholds raise sensitivity for malignancy at the cost of specificity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import constants as C
from .detection import Finding

LABEL_MALIGNANT = "malignant"
LABEL_BENIGN = "benign"
LABEL_NO_FINDINGS = "no_findings"


@dataclass(frozen=True)
class Diagnosis:
    """The patient-level (or slice-level) call and the votes behind it."""

    label: str
    malignant_fraction: float | None
    threshold: float
    votes_benign: int
    votes_malignant: int
    n_findings: int

    @property
    def display(self) -> str:
        return {
            LABEL_MALIGNANT: "MALIGNANT",
            LABEL_BENIGN: "BENIGN",
            LABEL_NO_FINDINGS: "NO FINDINGS",
        }[self.label]


def diagnose(findings: Iterable[Finding], threshold: float = C.DEFAULT_VOTING_THRESHOLD) -> Diagnosis:
    """Majority vote over the ROI-patch labels of ``findings`` with threshold ``threshold``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("the voting threshold must be between 0 and 1")
    findings = list(findings)
    b = sum(f.votes_benign for f in findings)
    m = sum(f.votes_malignant for f in findings)
    if b + m == 0:
        return Diagnosis(LABEL_NO_FINDINGS, None, threshold, 0, 0, len(findings))
    frac = m / (b + m)
    label = LABEL_MALIGNANT if frac >= threshold else LABEL_BENIGN
    return Diagnosis(label, frac, threshold, b, m, len(findings))
