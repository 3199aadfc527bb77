"""The DICOM records of a reading session: its findings (lesions that pass) as segments."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import ExportError
from ..labels import Label
from ..session import ReadingSession
from ..texture import Texture
from .inputs import AlgorithmInfo, LesionRecord, PatientCall, SeriesResults


def lesion_mask(session: ReadingSession, lesion) -> np.ndarray:
    """``(n_slices, rows, cols)`` bool: the lesion's object on the series' grid."""
    cand = lesion.candidate
    z0, z1, y0, y1, x0, x1 = cand.box
    mask = np.zeros(session.volume.hu.shape, dtype=bool)
    mask[z0:z1, y0:y1, x0:x1] = cand.mask
    return mask


def series_results(session: ReadingSession, source_files: Sequence[str | os.PathLike[str]]) -> SeriesResults:
    """:class:`SeriesResults` of the session's findings at its current settings.

    ``source_files`` are the series' files in the volume's slice order. A reading without
    findings has nothing to put in a Segmentation: :class:`ExportError` says so.
    """
    found = session.findings()
    d = session.diagnosis()
    if not found:
        raise ExportError(
            "There are no findings at the current settings, so there is no DICOM Segmentation "
            "or measurement report to write."
        )
    threshold = session.voting_threshold
    records = [
        LesionRecord(
            id=les.id,
            label=les.label(threshold).value,
            malignant_fraction=les.malignant_fraction if les.malignant_fraction is not None else 0.0,
            suspicion=les.suspicion,
            long_axis_mm=les.long_axis_mm,
            short_axis_mm=les.short_axis_mm,
            volume_mm3=les.volume_mm3,
            mask=lesion_mask(session, les),
            texture=None if les.texture is Texture.NOT_ASSESSED else les.texture.value,
        )
        for les in found
    ]
    if d.label is Label.NO_FINDINGS:  # only lesions under the call's size or ground glass: benign-appearing
        call = PatientCall(Label.BENIGN.value, 0.0, threshold)
    else:
        call = PatientCall(d.label.value, d.malignant_fraction or 0.0, threshold)
    return SeriesResults(
        source_files=source_files,
        call=call,
        algorithm=AlgorithmInfo(model_version=session.card.version),
        lesions=records,
        source_sop_instance_uids=session.volume.sop_instance_uids,
    )
