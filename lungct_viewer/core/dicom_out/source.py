"""The analysed series read back (headers only) and checked for what a Segmentation needs.

A DICOM Segmentation places each frame at its source slice's ImagePositionPatient in the
source's frame of reference, and its lesion volumes were measured on an even grid. So the
series must be one series of single-slice images with positions, one orientation (parallel
slices), one frame of reference, one image size and pixel spacing, given head to feet
(the :class:`~lungct_viewer.core.study.CTVolume` order), and evenly spaced within the
loader's tolerance (:data:`~lungct_viewer.core.dicom.assemble.UNEVEN_RELATIVE_TOLERANCE`,
:data:`~lungct_viewer.core.dicom.assemble.UNEVEN_MIN_MM`). Anything else raises
:class:`~lungct_viewer.core.errors.ExportError` saying what is wrong and where.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dicom.assemble import UNEVEN_MIN_MM, UNEVEN_RELATIVE_TOLERANCE
from ..errors import ExportError
from ..geometry import DUPLICATE_TOLERANCE_MM

logger = logging.getLogger(__name__)

#: Largest difference of an ImageOrientationPatient cosine still taken as "parallel".
ORIENTATION_TOLERANCE = 1e-3
#: Largest relative difference of PixelSpacing between slices.
PIXEL_SPACING_TOLERANCE = 1e-4

_REQUIRED = (
    ("SOPClassUID", "SOP Class UID"),
    ("SOPInstanceUID", "SOP Instance UID"),
    ("StudyInstanceUID", "Study Instance UID"),
    ("SeriesInstanceUID", "Series Instance UID"),
    ("FrameOfReferenceUID", "frame of reference (Frame of Reference UID)"),
    ("Rows", "image size (Rows)"),
    ("Columns", "image size (Columns)"),
    ("PixelSpacing", "pixel spacing"),
    ("ImagePositionPatient", "slice position (Image Position Patient)"),
    ("ImageOrientationPatient", "slice orientation (Image Orientation Patient)"),
)

_CANNOT = "The series cannot carry a DICOM Segmentation"

#: Patient and study attributes a derived object carries over; DICOM lets a source leave them
#: out (Type 2), and an absent one is written empty.
CARRIED_OVER = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


@dataclass(frozen=True, eq=False)
class SourceSeries:
    """Headers of the analysed series, in slice order, with the geometry checked."""

    datasets: tuple[Any, ...] = field(repr=False)
    positions_mm: np.ndarray = field(repr=False)  # (n, 3) ImagePositionPatient
    orientation: np.ndarray = field(repr=False)  # (6,)
    pixel_spacing_mm: tuple[float, float]
    slice_spacing_mm: float | None
    rows: int
    cols: int

    @property
    def num_slices(self) -> int:
        return len(self.datasets)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.num_slices, self.rows, self.cols)

    @property
    def sop_instance_uids(self) -> tuple[str, ...]:
        return tuple(str(ds.SOPInstanceUID) for ds in self.datasets)


def _read_header(path: str) -> Any:
    import pydicom

    name = os.path.basename(path)
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except FileNotFoundError:
        raise ExportError(f"Slice file {name} is no longer there, so the DICOM export cannot refer to it.") from None
    except PermissionError:
        raise ExportError(f"Slice file {name} could not be opened (permission denied).") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        logger.debug("source header read failed: %s", type(exc).__name__)
        raise ExportError(
            f"Slice file {name} could not be read as DICOM, so the DICOM export cannot refer to it."
        ) from None


def _floats(ds: Any, keyword: str, n: int, name: str, path: str) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in ds.get(keyword)], dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise ExportError(f"{_CANNOT}: slice file {os.path.basename(path)} has an unreadable {name}.")
    return arr


def read_source_series(
    files: Sequence[str | os.PathLike[str]],
    sop_instance_uids: Sequence[str] | None = None,
) -> SourceSeries:
    """Read the headers of ``files`` (no pixel data) and check they can carry a SEG.

    Parameters
    ----------
    files
        The analysed series' files in the volume's slice order (index 0 = head).
    sop_instance_uids
        Optional: the SOPInstanceUID each file must have (the analysed volume's), so a file
        list in the wrong order or from another series is caught.

    Raises
    ------
    ExportError
        A file cannot be read or lacks a header the Segmentation needs; the files are not
        one series, not in head-to-feet order, not parallel or not evenly spaced.
    """
    paths = [os.fspath(f) for f in files]
    if not paths:
        raise ExportError("No source images were given for the DICOM export.")
    datasets = [_read_header(p) for p in paths]
    for ds in datasets:  # in memory only: the source files are never written
        for kw in CARRIED_OVER:
            if kw not in ds:
                setattr(ds, kw, "")
    for ds, p in zip(datasets, paths):
        name = os.path.basename(p)
        for kw, what in _REQUIRED:
            if kw not in ds or ds.get(kw) in (None, ""):
                raise ExportError(f"{_CANNOT}: slice file {name} has no {what}.")
        frames = ds.get("NumberOfFrames")
        if frames not in (None, "") and int(frames) != 1:
            raise ExportError(
                f"{_CANNOT} from a multi-frame image (slice file {name}); only series of "
                "single-slice images are supported."
            )
    if sop_instance_uids is not None:
        expected = [str(u) for u in sop_instance_uids]
        if len(expected) != len(paths):
            raise ExportError(
                f"{len(paths)} source files were given with {len(expected)} SOP Instance UIDs; "
                "there must be one per slice."
            )
        for i, (ds, uid) in enumerate(zip(datasets, expected)):
            if str(ds.SOPInstanceUID) != uid:
                raise ExportError(
                    f"Slice file {os.path.basename(paths[i])} is not slice {i + 1} of the "
                    "analysed volume (its SOP Instance UID differs); the source files must be "
                    "given in the volume's slice order."
                )
    seen: dict[str, str] = {}
    for ds, p in zip(datasets, paths):
        uid = str(ds.SOPInstanceUID)
        if uid in seen:
            raise ExportError(
                f"Slice files {os.path.basename(seen[uid])} and {os.path.basename(p)} are the "
                "same image (same SOP Instance UID)."
            )
        seen[uid] = p

    first, name0 = datasets[0], os.path.basename(paths[0])
    for kw, what in (
        ("StudyInstanceUID", "study"),
        ("SeriesInstanceUID", "series"),
        ("FrameOfReferenceUID", "frame of reference"),
    ):
        for ds, p in zip(datasets[1:], paths[1:]):
            if str(ds.get(kw)) != str(first.get(kw)):
                raise ExportError(
                    f"{_CANNOT}: slice file {os.path.basename(p)} belongs to another {what} than {name0}."
                )
    rows, cols = int(first.Rows), int(first.Columns)
    spacing0 = _floats(first, "PixelSpacing", 2, "pixel spacing", paths[0])
    orient0 = _floats(first, "ImageOrientationPatient", 6, "slice orientation", paths[0])
    positions = []
    for ds, p in zip(datasets, paths):
        name = os.path.basename(p)
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise ExportError(
                f"{_CANNOT}: slice file {name} is {int(ds.Rows)} x {int(ds.Columns)} pixels, "
                f"the others {rows} x {cols}."
            )
        sp = _floats(ds, "PixelSpacing", 2, "pixel spacing", p)
        if np.any(np.abs(sp - spacing0) > PIXEL_SPACING_TOLERANCE * np.abs(spacing0)):
            raise ExportError(f"{_CANNOT}: slice file {name} has another pixel spacing than {name0}.")
        o = _floats(ds, "ImageOrientationPatient", 6, "slice orientation", p)
        if np.max(np.abs(o - orient0)) > ORIENTATION_TOLERANCE:
            raise ExportError(f"{_CANNOT}: its slices are not parallel (slice file {name} is tilted against {name0}).")
        positions.append(_floats(ds, "ImagePositionPatient", 3, "slice position", p))
    pos = np.stack(positions)
    normal = np.cross(orient0[:3], orient0[3:])
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise ExportError(f"{_CANNOT}: the slice orientation of {name0} is not valid.")
    proj = pos @ (normal / norm)
    gaps = -np.diff(proj)
    spacing: float | None = None
    if len(gaps):
        bad = np.flatnonzero(gaps <= DUPLICATE_TOLERANCE_MM)
        if bad.size:
            i = int(bad[0])
            a, b = os.path.basename(paths[i]), os.path.basename(paths[i + 1])
            if abs(gaps[i]) <= DUPLICATE_TOLERANCE_MM:
                raise ExportError(f"{_CANNOT}: slice files {a} and {b} are at the same position.")
            raise ExportError(
                f"The source files are not in the analysed order (head to feet): slice file {b} lies above {a}."
            )
        median = float(np.median(gaps))
        tol = max(UNEVEN_MIN_MM, UNEVEN_RELATIVE_TOLERANCE * median)
        uneven = np.flatnonzero(np.abs(gaps - median) > tol)
        if uneven.size:
            i = int(uneven[0])
            more = f" and {uneven.size - 1} more uneven gap{'s' if uneven.size > 2 else ''}" if uneven.size > 1 else ""
            missing = " (a slice may be missing)" if np.any(gaps[uneven] > median) else ""
            raise ExportError(
                f"{_CANNOT}: its slices are not evenly spaced. Most are {median:.2f} mm apart, "
                f"but slices {i + 1} and {i + 2} are {gaps[i]:.2f} mm apart{more}{missing}."
            )
        spacing = median
    return SourceSeries(
        datasets=tuple(datasets),
        positions_mm=pos,
        orientation=orient0,
        pixel_spacing_mm=(float(spacing0[0]), float(spacing0[1])),
        slice_spacing_mm=spacing,
        rows=rows,
        cols=cols,
    )


def check_masks(series: SourceSeries, masks: Sequence[tuple[str, np.ndarray]]) -> None:
    """Every mask must be on the series' grid: ``(n_slices, rows, cols)``."""
    n, r, c = series.shape
    for what, m in masks:
        if m.shape != (n, r, c):
            raise ExportError(
                f"The mask of {what} is {m.shape[0]} slices of {m.shape[1]} x {m.shape[2]} "
                f"pixels, but the series is {n} slices of {r} x {c} pixels; the mask must be "
                "on the analysed series' grid."
            )
