"""Scanning a folder: find the CT series in it, reading headers only.

:func:`scan_folder` walks a folder recursively. Files that are not DICOM, cannot be read,
are not CT, hold no image (structured reports, RT structure sets, presentation states,
DICOMDIR), are localizers (scouts), colour screenshots or multi-frame objects are skipped,
each with a reason in plain words. The rest are grouped by SeriesInstanceUID into
:class:`~..study.SeriesInfo` summaries, each holding the headers its files were read with
(so that :func:`~.assemble.load_series` need not parse them again).

Log messages carry counts and timings, never patient identifiers or file names.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import geometry
from ..errors import LungCTError, StudyLoadError
from ..study import FolderScan, SeriesInfo, SkippedFile
from .headers import DicomHeader, Skip, os_reason, read_header, why_not_ct_slice
from .parallel import CancelCallback, ProgressCallback, check_cancel, run_parallel

logger = logging.getLogger(__name__)

_WHAT = "Reading the folder"


def scan_folder(
    path: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> FolderScan:
    """Find the CT series in a folder (recursively), reading headers only.

    Parameters
    ----------
    path
        The study folder.
    progress
        Optional ``progress(done, total)`` called (from the calling thread) as headers are
        read.
    cancel
        Optional callable, polled between files while the folder is listed and while the
        headers are read; when it returns True, :class:`~..errors.LoadCancelled` is raised.

    Returns
    -------
    FolderScan
        The series found (ordered by series number, then UID) and the skipped files with
        their reasons.

    Raises
    ------
    StudyLoadError
        The path does not exist, is not a folder or cannot be read, or holds no CT image
        (:class:`~..errors.LoadCancelled` on cancel).
    """
    try:
        return _scan_folder(path, progress, cancel)
    except LungCTError:
        raise
    except MemoryError:
        raise StudyLoadError(f"There is not enough memory to read the folder {path}.") from None
    except Exception as exc:  # noqa: BLE001 - one error family for the caller
        logger.debug("unexpected error while scanning", exc_info=True)
        raise StudyLoadError(
            f"The folder {path} could not be read because of an unexpected problem ({type(exc).__name__})."
        ) from exc


def select_series(scan: FolderScan, series_uid: str | None = None) -> SeriesInfo:
    """The series with ``series_uid`` or, when None, :meth:`~..study.FolderScan.default_series`.

    Raises
    ------
    StudyLoadError
        ``series_uid`` is not in the folder (the message lists the series that are).
    """
    if series_uid is None:
        return scan.default_series()
    for s in scan.series:
        if s.uid == series_uid:
            return s
    listing = "; ".join(f"{s.summary()} [{s.uid}]" for s in scan.series)
    raise StudyLoadError(f"The series {series_uid} is not in {scan.root}. Series available: {listing}.")


def order_headers(hs: Sequence[Any], normal: np.ndarray | None) -> tuple[list[Any], str]:
    """Slices ordered head to feet; the second value says how: 'position', 'instance' or 'file'.

    By position along ``normal`` (decreasing) when every slice has one, else by
    InstanceNumber when every slice has one, else by file path.
    """
    if normal is not None and hs and all(h.position is not None for h in hs):
        pos = geometry.projected_positions([h.position for h in hs], normal)
        keys = [
            (-p, h.instance_number if h.instance_number is not None else 0, h.path)
            for p, h in zip(pos, hs, strict=True)
        ]
        idx = sorted(range(len(hs)), key=lambda i: keys[i])
        return [hs[i] for i in idx], "position"
    if all(h.instance_number is not None for h in hs):
        return sorted(hs, key=lambda h: (h.instance_number, h.path)), "instance"
    return sorted(hs, key=lambda h: h.path), "file"


def round_orientation(o: Sequence[float] | None) -> tuple[float, ...] | None:
    """Orientation rounded to 3 decimals: equal for slices of one stack."""
    if o is None:
        return None
    return tuple(round(float(v), 3) + 0.0 for v in o)


# ------------------------------------------------------------------------------ internals


def _list_files(root: Path, cancel: CancelCallback | None) -> tuple[list[str], list[SkippedFile]]:
    files: list[str] = []
    skipped: list[SkippedFile] = []

    def onerror(exc: OSError) -> None:
        where = getattr(exc, "filename", None) or str(root)
        skipped.append(SkippedFile(str(where), f"Folder could not be read ({os_reason(exc)})."))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            check_cancel(cancel, _WHAT)
            full = os.path.join(dirpath, name)
            try:
                regular = stat.S_ISREG(os.stat(full).st_mode)
            except OSError as exc:
                skipped.append(SkippedFile(full, f"{name} could not be opened ({os_reason(exc)})."))
                continue
            if regular:
                files.append(full)
            else:  # FIFOs, sockets, devices: opening them could block
                skipped.append(SkippedFile(full, f"{name} is not a regular file."))
    check_cancel(cancel, _WHAT)
    return files, skipped


def _scan_folder(
    path: str | os.PathLike[str],
    progress: ProgressCallback | None,
    cancel: CancelCallback | None,
) -> FolderScan:
    t0 = time.perf_counter()
    root = Path(path)
    if not root.exists():
        raise StudyLoadError(f"The folder {root} does not exist.")
    if not root.is_dir():
        raise StudyLoadError(f"{root} is a file, not a folder. Choose the folder that holds the study's DICOM files.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise StudyLoadError(f"The folder {root} cannot be read (permission denied).")
    files, skipped = _list_files(root, cancel)
    if not files and skipped:
        raise StudyLoadError(f"The folder {root} cannot be read ({skipped[0].reason})")

    results = run_parallel(read_header, files, progress, cancel, _WHAT)
    headers: list[DicomHeader] = []
    for file, res in zip(files, results, strict=True):
        name = os.path.basename(file)
        if isinstance(res, Skip):
            skipped.append(SkippedFile(file, f"{name} {res}."))
        elif isinstance(res, Exception):
            logger.debug("unexpected error reading a header", exc_info=res)
            skipped.append(SkippedFile(file, f"{name} could not be read."))
        elif (reason := why_not_ct_slice(res)) is not None:
            skipped.append(SkippedFile(file, f"{name} {reason}.", res.sop_class))
        else:
            headers.append(res)

    by_series: dict[str, list[DicomHeader]] = {}
    for h in headers:
        by_series.setdefault(h.series_uid, []).append(h)
    series = [_series_info(uid, hs) for uid, hs in by_series.items()]
    series.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.uid))
    scan = FolderScan(root=str(root), series=tuple(series), skipped=tuple(skipped))
    logger.info(
        "scanned %d files: %d series, %d skipped in %.3f s",
        len(files),
        len(series),
        len(skipped),
        time.perf_counter() - t0,
    )
    if not series:
        raise StudyLoadError(_no_ct_message(root, len(files), skipped))
    return scan


def _no_ct_message(root: Path, n_files: int, skipped: Sequence[SkippedFile]) -> str:
    if n_files == 0:
        return f"No CT images were found in {root}: the folder (and its subfolders) is empty."
    kinds = Counter(_reason_kind(s.reason) for s in skipped)
    parts = "; ".join(f"{kind} ({n} file{'s' if n > 1 else ''})" for kind, n in kinds.most_common(4))
    more = "" if len(kinds) <= 4 else "; ..."
    plural = "file" if len(skipped) == 1 else "files"
    return f"No CT images were found in {root} ({len(skipped)} {plural} skipped: {parts}{more})."


def _reason_kind(reason: str) -> str:
    """The reason without the file name and verb: 'x.txt is not a DICOM file.' -> kind."""
    for verb in (" is ", " holds ", " has ", " could "):
        if verb in reason:
            kind = reason.split(verb, 1)[1]
            kind = {" holds ": "holds ", " has ": "has ", " could ": "could "}.get(verb, "") + kind
            return kind.rstrip(".")
    return reason.rstrip(".")


def _most_common(values: Sequence[Any]) -> Any:
    return Counter(values).most_common(1)[0][0] if values else None


def _series_info(uid: str, hs: list[DicomHeader]) -> SeriesInfo:
    rows, cols = _most_common([(h.rows, h.cols) for h in hs])
    spacing = _most_common([h.pixel_spacing for h in hs if h.pixel_spacing is not None]) or (1.0, 1.0)
    orientation = _most_common([round_orientation(h.orientation) for h in hs if h.orientation is not None])
    normal = geometry.slice_normal(orientation) if orientation is not None else None
    axial = geometry.is_axial(normal) if normal is not None else "AXIAL" in hs[0].image_type
    ordered, how = order_headers(hs, normal)
    spacing_mm = None
    if how == "position":
        spacing_mm = geometry.slice_spacing(geometry.projected_positions([h.position for h in ordered], normal))
    times = sorted(h.series_time for h in hs if h.series_time)
    first = hs[0]
    return SeriesInfo(
        uid=uid,
        description=first.description,
        modality=first.modality or "CT",
        num_slices=len(hs),
        rows=rows,
        cols=cols,
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
        slice_spacing_mm=spacing_mm,
        is_axial=axial,
        files=tuple(h.path for h in ordered),
        series_number=first.series_number,
        study_uid=first.study_uid,
        manufacturer=first.manufacturer,
        kernel=first.kernel,
        slice_thickness_mm=_most_common([h.slice_thickness for h in hs if h.slice_thickness]),
        series_time=times[0] if times else "",
        headers=tuple(ordered),
    )
