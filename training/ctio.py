"""Loading whole CT series for training: the viewer's loader when available.

:func:`load_ct` calls :func:`lungct_viewer.core.dicom_io.load_study` (the loader the viewer
uses). A minimal pydicom reader is kept only as a fallback for checkouts where that module
is not present; it orders slices the same way (head to feet along the slice normal).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lungct_viewer.core.errors import DataError, StudyLoadError
from lungct_viewer.core.study import CTVolume


def load_ct(path: str | os.PathLike[str], series_uid: str | None = None) -> CTVolume:
    """Load one CT series (``series_uid`` or the default series) of a study folder."""
    try:
        from lungct_viewer.core.dicom_io import load_study
    except ImportError:
        return _fallback_load(Path(path), series_uid)
    try:
        vol, _scan = load_study(str(path), series_uid=series_uid)
    except StudyLoadError as exc:
        raise DataError(f"The CT study {path} could not be loaded: {exc}") from exc
    return vol


def list_series(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """``(SeriesInstanceUID, number of slices)`` of every CT series under ``path``."""
    try:
        from lungct_viewer.core.dicom_io import scan_folder
    except ImportError:
        groups = _group_headers(Path(path))
        return [(uid, len(v)) for uid, v in groups.items()]
    scan = scan_folder(str(path))
    return [(s.uid, s.num_slices) for s in scan.series if s.modality == "CT"]


def _group_headers(root: Path) -> dict[str, list[tuple[Path, object]]]:
    import pydicom

    groups: dict[str, list] = {}
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.suffix.lower() in (".xml", ".json", ".txt", ".gz", ".nii"):
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:
            continue
        if getattr(ds, "Modality", "") != "CT" or "ImagePositionPatient" not in ds:
            continue
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((f, ds))
    return groups


def _fallback_load(root: Path, series_uid: str | None) -> CTVolume:
    import pydicom

    groups = _group_headers(root)
    if not groups:
        raise DataError(f"No CT images were found in {root}.")
    uid = series_uid or max(groups, key=lambda u: len(groups[u]))
    if uid not in groups:
        raise DataError(f"The series {uid} was not found in {root}.")
    items = groups[uid]
    ori = np.array([float(v) for v in items[0][1].ImageOrientationPatient])
    normal = np.cross(ori[:3], ori[3:])
    items.sort(key=lambda it: -float(np.dot([float(v) for v in it[1].ImagePositionPatient], normal)))
    hu, pos, uids = [], [], []
    for f, _ in items:
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array.astype(np.float32)
        arr = arr * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
        hu.append(np.clip(arr, -32768, 32767).astype(np.int16))
        pos.append([float(v) for v in ds.ImagePositionPatient])
        uids.append(str(ds.SOPInstanceUID))
    ds0 = items[0][1]
    return CTVolume(
        hu=np.stack(hu),
        pixel_spacing_mm=(float(ds0.PixelSpacing[0]), float(ds0.PixelSpacing[1])),
        image_positions_mm=np.array(pos),
        orientation=ori,
        sop_instance_uids=tuple(uids),
        series_uid=uid,
        description=str(getattr(ds0, "SeriesDescription", "")),
        patient_id=str(getattr(ds0, "PatientID", "")),
        study_uid=str(getattr(ds0, "StudyInstanceUID", "")),
    )


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
