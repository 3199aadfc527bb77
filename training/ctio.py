"""Loading whole CT series for training with the viewer's own loader.

:func:`load_ct` and :func:`list_series` call :mod:`lungct_viewer.core.dicom`, so training
reads, orders and converts slices exactly as the viewer does.
"""

from __future__ import annotations

import os
from pathlib import Path

from lungct_viewer.core.dicom import load_study, scan_folder
from lungct_viewer.core.errors import DataError, StudyLoadError
from lungct_viewer.core.study import CTVolume


def load_ct(path: str | os.PathLike[str], series_uid: str | None = None) -> CTVolume:
    """Load one CT series (``series_uid`` or the default series) of a study folder."""
    try:
        vol, _scan = load_study(str(path), series_uid=series_uid)
    except StudyLoadError as exc:
        raise DataError(f"The CT study {path} could not be loaded: {exc}") from exc
    return vol


def list_series(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """``(SeriesInstanceUID, number of slices)`` of every CT series under ``path``."""
    try:
        scan = scan_folder(str(path))
    except StudyLoadError as exc:
        raise DataError(f"The CT study {path} could not be read: {exc}") from exc
    return [(s.uid, s.num_slices) for s in scan.series if s.modality == "CT"]


def series_record(vol: CTVolume, source: Path, patient_id: str) -> dict:
    """The ``series_<n>.json`` description of a loaded volume."""
    return {
        "patient_id": patient_id,
        "source": str(Path(source).resolve()),
        "series_uid": vol.series_uid,
        "shape": list(vol.shape),
        "pixel_spacing_mm": list(vol.pixel_spacing_mm),
        "slice_spacing_mm": vol.slice_spacing_mm,
        "slice_z_mm": [float(z) for z in vol.image_positions_mm[:, 2]],
        "sop_instance_uids": list(vol.sop_instance_uids),
        "description": vol.description,
    }
