"""Assembling decoded slices into a :class:`~..study.CTVolume`, and loading a whole study.

:func:`load_series` decodes one series (:mod:`.decode`) and orders the slices by
ImagePositionPatient projected on the slice normal (:mod:`..geometry`), index 0 = largest
position (the head for an axial series). It falls back to InstanceNumber when positions are
missing, keeps one copy of duplicated positions, drops slices whose size, orientation or
pixel spacing differ from the rest of the series, skips slices that cannot be decoded, and
reports each of these in :attr:`~..study.CTVolume.warnings`.

:func:`load_study` scans a folder and loads one series (the one asked for, or the default).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import geometry
from ..errors import LungCTError, StudyLoadError
from ..study import CTVolume, FolderScan, SeriesInfo
from .decode import DecodedSlice, decode_slices
from .headers import Skip
from .parallel import CancelCallback, ProgressCallback
from .scan import order_headers, round_orientation, scan_folder, select_series

logger = logging.getLogger(__name__)

#: A gap differing from the median spacing by more than this fraction (and by more than
#: :data:`UNEVEN_MIN_MM`) is reported as uneven spacing.
UNEVEN_RELATIVE_TOLERANCE = 0.1
UNEVEN_MIN_MM = 0.1
#: At most this many unreadable slices are listed one by one in the warnings.
_LISTED_FAILURES = 5


def load_series(
    info: SeriesInfo,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> CTVolume:
    """Decode one series into a :class:`~..study.CTVolume` in HU, ordered head to feet.

    Parameters
    ----------
    info
        A series from :func:`~.scan.scan_folder`.
    progress
        Optional ``progress(done, total)`` called (from the calling thread) as slices are
        decoded.
    cancel
        Optional callable polled while decoding; when it returns True,
        :class:`~..errors.LoadCancelled` is raised and nothing is returned.

    Raises
    ------
    StudyLoadError
        No slice of the series could be read (or :class:`~..errors.LoadCancelled` on cancel).
    """
    try:
        return _load_series(info, progress, cancel)
    except LungCTError:
        raise
    except MemoryError:
        raise StudyLoadError(
            f"There is not enough memory to load this series ({info.num_slices} slices of "
            f"{info.rows} x {info.cols} pixels)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - one error family for the caller
        logger.debug("unexpected error while loading a series", exc_info=True)
        raise StudyLoadError(
            f"The series '{info.description or info.uid}' could not be loaded because of an "
            f"unexpected problem ({type(exc).__name__})."
        ) from exc


def load_study(
    path: str | os.PathLike[str],
    series_uid: str | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> tuple[CTVolume, FolderScan]:
    """Scan a folder and load one series: ``series_uid`` or the default series.

    ``progress`` is passed to :func:`load_series` (the scan is fast); ``cancel`` to both the
    scan and the load.

    Raises
    ------
    StudyLoadError
        As :func:`~.scan.scan_folder` and :func:`load_series`; also when ``series_uid`` is not
        in the folder (the message lists the series that are).
    """
    scan = scan_folder(path, cancel=cancel)
    info = select_series(scan, series_uid)
    return load_series(info, progress=progress, cancel=cancel), scan


# ------------------------------------------------------------------------------ internals


def _load_series(info: SeriesInfo, progress: ProgressCallback | None, cancel: CancelCallback | None) -> CTVolume:
    t0 = time.perf_counter()
    files = list(info.files)
    if not files:
        raise StudyLoadError(f"The series '{info.description or info.uid}' has no slices.")
    scanned = {h.path: h for h in info.headers}
    results = decode_slices(files, scanned, progress, cancel)
    slices: list[DecodedSlice] = []
    failures: list[str] = []
    first_reason = ""
    for file, res in zip(files, results, strict=True):
        name = os.path.basename(file)
        if isinstance(res, DecodedSlice):
            slices.append(res)
            continue
        if isinstance(res, Skip):
            reason = f"slice file {name} {res}"
        else:
            logger.debug("unexpected error loading a slice", exc_info=res)
            reason = f"slice file {name} could not be read"
        failures.append(f"{reason[0].upper()}{reason[1:]}; it was skipped.")
        first_reason = first_reason or reason
    if not slices:
        label = info.description or "this series"
        why = f"; for example, {first_reason}" if first_reason else ""
        raise StudyLoadError(f"None of the {len(files)} slices of {label} could be read{why}.")
    warnings = failures[:_LISTED_FAILURES]
    if len(failures) > _LISTED_FAILURES:
        warnings.append(f"{len(failures) - _LISTED_FAILURES} more slice files could not be read and were skipped.")
    vol = assemble_volume(info, slices, warnings)
    logger.info(
        "loaded %d slices (%d x %d) with %d warnings in %.3f s",
        vol.num_slices,
        vol.hu.shape[1],
        vol.hu.shape[2],
        len(vol.warnings),
        time.perf_counter() - t0,
    )
    return vol


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n > 1 else ''}"


def assemble_volume(info: SeriesInfo, slices: list[DecodedSlice], warnings: list[str]) -> CTVolume:
    """Stack decoded slices head to feet; ``warnings`` (extended here) go into the volume."""
    slices = _keep_majority(
        slices,
        lambda s: (s.header.rows, s.header.cols),
        warnings,
        lambda k, n: f"{_plural(n, 'slice')} of a different size ({k[0]} x {k[1]} pixels) left out",
    )
    slices = _keep_majority(
        slices,
        lambda s: round_orientation(s.header.orientation),
        warnings,
        lambda k, n: f"{_plural(n, 'slice')} with a different orientation left out",
    )
    slices = _keep_majority(
        slices,
        lambda s: None if s.header.pixel_spacing is None else tuple(round(v, 4) for v in s.header.pixel_spacing),
        warnings,
        lambda k, n: f"{_plural(n, 'slice')} with a different pixel spacing left out",
    )

    h0 = slices[0].header
    if h0.orientation is None:
        orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        warnings.append("The slice orientation is missing; a standard axial orientation was assumed.")
    else:
        orientation = np.asarray(h0.orientation, dtype=np.float64)
    normal = geometry.slice_normal(orientation)
    if not geometry.is_axial(normal):
        warnings.append(
            "This series is not axial (it may be a coronal or sagittal reconstruction); it is shown as stored."
        )
    if h0.pixel_spacing is None:
        pixel_spacing = (1.0, 1.0)
        warnings.append("The pixel spacing is missing; 1 mm per pixel was assumed, so sizes in mm are not reliable.")
    else:
        pixel_spacing = (float(h0.pixel_spacing[0]), float(h0.pixel_spacing[1]))

    by_header = {id(s.header): s for s in slices}
    ordered_h, how = order_headers([s.header for s in slices], normal)
    ordered = [by_header[id(h)] for h in ordered_h]

    if how == "position":
        positions = np.asarray([s.header.position for s in ordered], dtype=np.float64)
        proj = geometry.projected_positions(positions, normal)
        keep = np.ones(len(ordered), dtype=bool)
        keep[1:] = np.abs(np.diff(proj)) > geometry.DUPLICATE_TOLERANCE_MM
        n_dup = int((~keep).sum())
        if n_dup:
            warnings.append(
                f"{_plural(n_dup, 'duplicate slice')} (at the same position as another slice) left out; "
                "the series may hold more than one acquisition."
            )
            ordered = [s for s, k in zip(ordered, keep, strict=True) if k]
            positions = positions[keep]
            proj = proj[keep]
        uneven = _uneven_spacing(proj)
        if uneven:
            warnings.append(uneven)
    else:
        step = _fallback_spacing(ordered)
        n = len(ordered)
        if how == "instance":
            warnings.append(
                "Slice positions are missing; slices were ordered by instance number, and "
                "distances between slices are approximate."
            )
        elif n > 1:
            warnings.append(
                "Slice positions and instance numbers are missing; slices were ordered by file name, "
                "which may be wrong."
            )
        positions = -step * np.arange(n, dtype=np.float64)[:, None] * normal[None, :]

    hu = np.stack([s.hu for s in ordered])
    first = ordered[0].header
    return CTVolume(
        hu=hu,
        pixel_spacing_mm=pixel_spacing,
        image_positions_mm=positions,
        orientation=orientation,
        sop_instance_uids=tuple(s.header.sop_uid for s in ordered),
        series_uid=info.uid,
        description=info.description,
        patient_name=first.patient_name,
        patient_id=first.patient_id,
        patient_birth_date=first.patient_birth_date,
        study_date=first.study_date,
        study_description=first.study_description,
        study_uid=first.study_uid or info.study_uid,
        frame_of_reference_uid=first.frame_of_reference_uid,
        warnings=tuple(warnings),
    )


def _keep_majority(
    slices: list[DecodedSlice],
    key: Callable[[DecodedSlice], Any],
    warnings: list[str],
    describe: Callable[[Any, int], str],
) -> list[DecodedSlice]:
    counts = Counter(key(s) for s in slices)
    if len(counts) <= 1:
        return slices
    best = max(counts.items(), key=lambda kv: kv[1])[0]
    for k, n in counts.items():
        if k != best:
            text = describe(k, n)
            warnings.append(f"{text[0].upper()}{text[1:]}: they do not match the rest of the series.")
    return [s for s in slices if key(s) == best]


def _uneven_spacing(proj: np.ndarray) -> str | None:
    if len(proj) < 3:
        return None
    gaps = -np.diff(proj)
    median = float(np.median(gaps))
    tol = max(UNEVEN_MIN_MM, UNEVEN_RELATIVE_TOLERANCE * median)
    bad = np.flatnonzero(np.abs(gaps - median) > tol)
    if bad.size == 0:
        return None
    shown = ", ".join(f"{gaps[i]:.2f} mm between slices {i + 1} and {i + 2}" for i in bad[:3])
    more = f" and {bad.size - 3} more" if bad.size > 3 else ""
    missing = " (a slice may be missing)" if np.any(gaps[bad] > median) else ""
    return (
        f"Slice spacing is uneven: most slices are {median:.2f} mm apart, but there "
        f"{'is' if bad.size == 1 else 'are'} {shown}{more}{missing}. Distances along the "
        "body axis may be distorted."
    )


def _fallback_spacing(slices: Sequence[DecodedSlice]) -> float:
    for s in slices:
        if s.header.slice_thickness:
            return float(s.header.slice_thickness)
    return 1.0
