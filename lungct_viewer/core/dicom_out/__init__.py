"""Results back into the radiology ecosystem: a DICOM Segmentation and a TID 1500
Comprehensive 3D SR measurement report, built with highdicom (Qt-free, no TensorFlow).

Input (:mod:`.inputs`): a :class:`SeriesResults` holding the analysed series' source files
(in the volume's slice order, index 0 = head), either :class:`LesionRecord` objects (one SEG
segment and one SR measurement group each) or one :class:`SuspiciousRegion`, the
:class:`PatientCall` and the :class:`AlgorithmInfo`.

Output (:func:`write_dicom_results`): two files, written atomically, both in the source
study (patient and study modules carried over: a derived object belongs to its patient, so
these files carry the patient's name and ID, unlike the PNG/JSON exports) with new series
and SOP instance UIDs:

* a binary Segmentation (:mod:`.seg`), one segment per lesion;
* a Comprehensive 3D SR (:mod:`.sr`) whose measurement groups refer to those segments.

Bad input raises :class:`~lungct_viewer.core.errors.ExportError` with a sentence for the
reader; nothing is written then.
"""

from __future__ import annotations

from .from_session import lesion_mask, series_results
from .inputs import AlgorithmInfo, LesionRecord, PatientCall, SeriesResults, SuspiciousRegion
from .source import SourceSeries, read_source_series
from .write import (
    SEG_FILENAME,
    SR_FILENAME,
    DicomResultFiles,
    build_dicom_results,
    write_dicom_results,
)

__all__ = [
    "AlgorithmInfo",
    "DicomResultFiles",
    "LesionRecord",
    "PatientCall",
    "SEG_FILENAME",
    "SR_FILENAME",
    "SeriesResults",
    "SourceSeries",
    "SuspiciousRegion",
    "build_dicom_results",
    "lesion_mask",
    "series_results",
    "read_source_series",
    "write_dicom_results",
]
