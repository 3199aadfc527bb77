"""Reading CT studies from a folder of DICOM files (Qt-free).

Three steps, each usable alone:

* :func:`scan_folder` walks a folder recursively and reads **headers only**. Files that are
  not DICOM, cannot be read, are not CT, hold no image (structured reports, RT structure
  sets, presentation states, DICOMDIR), are localizers (scouts), colour screenshots or
  multi-frame objects are skipped, each with a reason in plain words. The rest are grouped
  by SeriesInstanceUID into :class:`~.study.SeriesInfo` summaries.
* :func:`load_series` decodes one series in parallel (threads), converts it to HU
  (RescaleSlope / RescaleIntercept; PixelPaddingValue -> :data:`PADDING_HU`), and orders the
  slices by ImagePositionPatient projected on the slice normal (row cosines x column cosines),
  index 0 = largest position (the head for an axial series). It falls back to InstanceNumber
  when positions are missing, keeps one copy of duplicated positions, drops slices whose size,
  orientation or pixel spacing differ from the rest of the series, skips slices that cannot be
  decoded, and reports each of these in :attr:`~.study.CTVolume.warnings`.
* :func:`load_study` does both and picks a series (the one asked for, or
  :meth:`~.study.FolderScan.default_series`).

Errors: every failure raises :class:`~.errors.StudyLoadError` (or a subclass) whose message
is a complete sentence for the person at the screen; pydicom, numpy and OS exceptions never
escape. Cancelling (the ``cancel`` callable returns True) raises :class:`LoadCancelled`, which
is both a :class:`~.errors.StudyLoadError` and an :class:`~.errors.AnalysisCancelled`, so code
that catches either family handles it.

The source folder is only ever read. Log messages carry counts and timings, never patient
identifiers or file names.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import AnalysisCancelled, LungCTError, StudyLoadError
from .study import CTVolume, FolderScan, SeriesInfo, SkippedFile

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]

#: HU written into pixels that the scanner marked as padding (outside the reconstruction
#: circle): the air floor of a CT scale.
PADDING_HU = -1024
#: Two slices closer than this along the normal (mm) are duplicates.
DUPLICATE_TOLERANCE_MM = 0.01
#: A gap differing from the median spacing by more than this fraction (and by more than
#: :data:`UNEVEN_MIN_MM`) is reported as uneven spacing.
UNEVEN_RELATIVE_TOLERANCE = 0.1
UNEVEN_MIN_MM = 0.1
#: A series is axial when its slice normal is within ~37 degrees of the body (z) axis.
AXIAL_MIN_NORMAL_Z = 0.8

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_ENHANCED_CT = {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
_DICOMDIR = "1.2.840.10008.1.3.10"
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}

_MODALITY_NAMES = {
    "MR": "an MR (magnetic resonance) image",
    "PT": "a PET image",
    "NM": "a nuclear medicine image",
    "US": "an ultrasound image",
    "CR": "a plain radiograph (CR)",
    "DX": "a plain radiograph (DX)",
    "MG": "a mammogram",
    "XA": "an angiography image",
    "RF": "a fluoroscopy image",
    "OT": "an image of modality 'other' (OT)",
    "SC": "a secondary capture image",
    "SR": "a structured report",
    "RTSTRUCT": "an RT structure set",
    "RTPLAN": "an RT plan",
    "RTDOSE": "an RT dose grid",
    "SEG": "a segmentation object",
    "PR": "a presentation state",
    "KO": "a key-object selection",
    "DOC": "an encapsulated document",
    "REG": "a registration object",
}

# Only these header elements are read while scanning (fast, and no pixel data is loaded).
_SCAN_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "ImageType",
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "InstanceNumber",
    "Manufacturer",
    "ConvolutionKernel",
    "SamplesPerPixel",
    "NumberOfFrames",
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
    # needed to decode without parsing the file a second time
    "RescaleSlope",
    "RescaleIntercept",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SliceThickness",
    "PatientName",
    "PatientID",
]


class LoadCancelled(StudyLoadError, AnalysisCancelled):
    """Loading was cancelled by the user (nothing is returned)."""


class _Skip(Exception):
    """Internal: a file or slice is not used; ``str()`` is the reason in plain words."""


# ---------------------------------------------------------------------------- header helpers


def _looks_like_raw_dicom(path: str) -> bool:
    """A DICOM stream without the 128-byte preamble starts with a group 0002/0008 tag."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08") and len(head) == 4


def _read_dataset(path: str, **kwargs: Any) -> Any:
    """``pydicom.dcmread`` that turns every failure into :class:`_Skip` with a reason."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise _Skip(f"could not be opened ({_os_reason(exc)})") from None
    if size == 0:
        raise _Skip("is empty")
    try:
        try:
            return pydicom.dcmread(path, **kwargs)
        except InvalidDicomError:
            if not _looks_like_raw_dicom(path):
                raise _Skip("is not a DICOM file") from None
            ds = pydicom.dcmread(path, force=True, **kwargs)
            if "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
                raise _Skip("is not a DICOM file") from None
            return ds
    except _Skip:
        raise
    except OSError as exc:
        raise _Skip(f"could not be read ({_os_reason(exc)})") from None
    except MemoryError:
        raise _Skip("is too large to read") from None
    except Exception:  # pydicom raises many types for damaged files
        raise _Skip("is a damaged or truncated DICOM file") from None


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "it disappeared while the folder was being read"
    return exc.strerror or "input/output error"


def _get(ds: Any, keyword: str, default: Any = None) -> Any:
    """A header value, or ``default`` when missing, empty or malformed."""
    try:
        value = ds.get(keyword, default)
    except Exception:
        return default
    if value is None or value == "":
        return default
    return value


def _text(ds: Any, keyword: str) -> str:
    value = _get(ds, keyword, "")
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value).strip()
        return str(value).strip()
    except Exception:
        return ""


def _int(ds: Any, keyword: str) -> int | None:
    value = _get(ds, keyword)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def _floats(ds: Any, keyword: str, n: int) -> tuple[float, ...] | None:
    value = _get(ds, keyword)
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _float(ds: Any, keyword: str, default: float) -> float:
    value = _get(ds, keyword)
    try:
        out = float(value) if value is not None else default
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


@dataclass
class _Header:
    """The header fields the loader needs from one file."""

    path: str
    sop_class: str
    sop_uid: str
    modality: str
    study_uid: str
    series_uid: str
    description: str
    series_number: int | None
    image_type: tuple[str, ...]
    rows: int
    cols: int
    pixel_spacing: tuple[float, float] | None
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    instance_number: int | None
    manufacturer: str
    kernel: str
    samples: int
    frames: int
    has_pixels: bool
    slope: float = 1.0
    intercept: float = 0.0
    padding: int | None = None
    padding_limit: int | None = None
    bits_allocated: int | None = None
    bits_stored: int | None = None
    signed: bool = False
    slice_thickness: float | None = None
    patient_name: str = ""
    patient_id: str = ""
    transfer_syntax: str = ""
    #: byte offset and length of native PixelData in the file (set by the scan), so that
    #: loading can read the pixels without parsing the header again
    pixel_offset: int | None = None
    pixel_length: int | None = None
    stat_key: tuple[int, int] | None = None

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        o = np.asarray(self.orientation)
        n = np.cross(o[:3], o[3:])
        norm = float(np.linalg.norm(n))
        return n / norm if norm > 1e-6 else None


def _header(ds: Any, path: str) -> _Header:
    image_type = tuple(s.upper() for s in _text(ds, "ImageType").split("\\") if s)
    sop_class = _text(ds, "SOPClassUID")
    if not sop_class:
        try:
            sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
        except Exception:
            sop_class = ""
    frames = _int(ds, "NumberOfFrames")
    slope = _float(ds, "RescaleSlope", 1.0)
    if slope == 0.0:
        slope = 1.0
    thickness = _float(ds, "SliceThickness", float("nan"))
    try:
        ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    except Exception:
        ts = ""
    return _Header(
        path=path,
        sop_class=sop_class,
        sop_uid=_text(ds, "SOPInstanceUID"),
        modality=_text(ds, "Modality").upper(),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        description=_text(ds, "SeriesDescription"),
        series_number=_int(ds, "SeriesNumber"),
        image_type=image_type,
        rows=_int(ds, "Rows") or 0,
        cols=_int(ds, "Columns") or 0,
        pixel_spacing=_spacing(ds),
        position=_floats(ds, "ImagePositionPatient", 3),
        orientation=_orientation(ds),
        instance_number=_int(ds, "InstanceNumber"),
        manufacturer=_text(ds, "Manufacturer"),
        kernel=_text(ds, "ConvolutionKernel"),
        samples=_int(ds, "SamplesPerPixel") or 1,
        frames=frames if frames is not None else 1,
        has_pixels=any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")),
        slope=slope,
        intercept=_float(ds, "RescaleIntercept", 0.0),
        padding=_int(ds, "PixelPaddingValue"),
        padding_limit=_int(ds, "PixelPaddingRangeLimit"),
        bits_allocated=_int(ds, "BitsAllocated"),
        bits_stored=_int(ds, "BitsStored"),
        signed=_int(ds, "PixelRepresentation") == 1,
        slice_thickness=thickness if math.isfinite(thickness) and thickness > 0 else None,
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        transfer_syntax=ts,
    )


def _spacing(ds: Any) -> tuple[float, float] | None:
    sp = _floats(ds, "PixelSpacing", 2)
    if sp is None or sp[0] <= 0 or sp[1] <= 0:
        return None
    return (sp[0], sp[1])


def _orientation(ds: Any) -> tuple[float, ...] | None:
    o = _floats(ds, "ImageOrientationPatient", 6)
    if o is None:
        return None
    row, col = np.asarray(o[:3]), np.asarray(o[3:])
    if np.linalg.norm(row) < 1e-3 or np.linalg.norm(col) < 1e-3:
        return None
    if np.linalg.norm(np.cross(row, col)) < 1e-3:
        return None
    return o


def _why_not_ct_slice(h: _Header) -> str | None:
    """The reason a file is not a usable CT slice, or None when it is one."""
    if h.sop_class == _DICOMDIR:
        return "is a DICOMDIR index, not an image"
    if not h.has_pixels:
        kind = _MODALITY_NAMES.get(h.modality)
        if kind is None:
            kind = _sop_class_name(h.sop_class) or "a DICOM object"
        return f"holds no image ({kind})"
    if h.modality and h.modality != "CT":
        kind = _MODALITY_NAMES.get(h.modality, f"a {h.modality} image")
        return f"is {kind}, not CT"
    if not h.modality and h.sop_class != CT_IMAGE_STORAGE:
        name = _sop_class_name(h.sop_class)
        return f"is not marked as CT ({name})" if name else "is not marked as CT"
    if "LOCALIZER" in h.image_type or "SCOUT" in h.image_type or "TOPOGRAM" in h.image_type:
        return "is a localizer (scout) image, not a CT slice"
    if h.sop_class in _ENHANCED_CT or h.frames > 1:
        return "is a multi-frame (enhanced) CT object, which this viewer cannot read yet"
    if h.sop_class.startswith(_SECONDARY_CAPTURE_PREFIX):
        return "is a secondary capture (screenshot), not an original CT slice"
    if h.samples != 1:
        return "is a colour image (screenshot?), not a CT slice"
    if h.rows <= 0 or h.cols <= 0:
        return "has no image size (Rows/Columns missing)"
    return None


def _sop_class_name(uid: str) -> str:
    if not uid:
        return ""
    try:
        from pydicom.uid import UID

        name = UID(uid).name
    except Exception:
        return ""
    return "" if name == uid else name


# ---------------------------------------------------------------------------------- parallel


def _workers() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 2)))


def _run_parallel(
    func: Callable[[str], Any],
    items: Sequence[str],
    progress: ProgressCallback | None,
    cancel: CancelCallback | None,
    what: str,
) -> list[Any]:
    """``[func(item) ...]`` in a thread pool; exceptions are returned in place of results.

    ``progress`` and ``cancel`` are called from the calling thread.
    """
    total = len(items)
    results: list[Any] = [None] * total
    if total == 0:
        return results
    _check_cancel(cancel, what)
    pool = ThreadPoolExecutor(max_workers=min(_workers(), total), thread_name_prefix="dicom")
    try:
        futures: dict[Future, int] = {pool.submit(func, item): i for i, item in enumerate(items)}
        pending = set(futures)
        done_count = 0
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for fut in done:
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - returned to the caller
                    results[i] = exc
                done_count += 1
            if done and progress is not None:
                progress(done_count, total)
            _check_cancel(cancel, what)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _check_cancel(cancel: CancelCallback | None, what: str) -> None:
    if cancel is not None and cancel():
        raise LoadCancelled(f"{what} was cancelled.")


# -------------------------------------------------------------------------------------- scan


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
        Optional ``progress(done, total)`` called as files are read.
    cancel
        Optional callable; when it returns True, :class:`LoadCancelled` is raised.

    Returns
    -------
    FolderScan
        The series found (ordered by series number, then UID) and the skipped files with
        their reasons.

    Raises
    ------
    StudyLoadError
        The path does not exist, is not a folder or cannot be read, or holds no CT image.
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
            f"The folder {path} could not be read because of an unexpected problem "
            f"({type(exc).__name__})."
        ) from exc


def _list_files(root: Path) -> tuple[list[str], list[SkippedFile]]:
    files: list[str] = []
    skipped: list[SkippedFile] = []

    def onerror(exc: OSError) -> None:
        where = getattr(exc, "filename", None) or str(root)
        skipped.append(SkippedFile(str(where), f"Folder could not be read ({_os_reason(exc)})."))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                regular = stat.S_ISREG(os.stat(full).st_mode)
            except OSError as exc:
                skipped.append(SkippedFile(full, f"{name} could not be opened ({_os_reason(exc)})."))
                continue
            if regular:
                files.append(full)
            else:  # FIFOs, sockets, devices: opening them could block
                skipped.append(SkippedFile(full, f"{name} is not a regular file."))
    return files, skipped


_HEADER_CACHE: dict[str, _Header] = {}
_HEADER_CACHE_MAX = 50_000
_cache_lock = threading.Lock()


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _scan_one(path: str) -> _Header:
    key = _stat_key(path)
    ds = _read_dataset(path, specific_tags=_SCAN_TAGS, defer_size=256)
    h = _header(ds, path)
    h.stat_key = key
    if h.transfer_syntax in _NATIVE_LE and key is not None:
        try:
            raw = ds.get_item("PixelData", keep_deferred=True)
            tell = getattr(raw, "value_tell", None)
            length = getattr(raw, "length", None)
            if (
                raw is not None and getattr(raw, "value", b"") is None and tell is not None
                and length is not None and 0 < length < 0xFFFFFFFF
            ):
                h.pixel_offset, h.pixel_length = int(tell), int(length)
        except Exception:  # noqa: BLE001 - the slow path will read it
            pass
    with _cache_lock:
        if len(_HEADER_CACHE) >= _HEADER_CACHE_MAX:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[path] = h
    return h


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
        raise StudyLoadError(
            f"{root} is a file, not a folder. Choose the folder that holds the study's DICOM files."
        )
    if not os.access(root, os.R_OK | os.X_OK):
        raise StudyLoadError(f"The folder {root} cannot be read (permission denied).")
    files, skipped = _list_files(root)
    if not files and skipped:
        raise StudyLoadError(f"The folder {root} cannot be read ({skipped[0].reason})")

    results = _run_parallel(_scan_one, files, progress, cancel, "Reading the folder")
    headers: list[_Header] = []
    for file, res in zip(files, results):
        if isinstance(res, _Skip):
            skipped.append(SkippedFile(file, _sentence(os.path.basename(file), str(res))))
            continue
        if isinstance(res, Exception):
            logger.debug("unexpected error reading a header", exc_info=res)
            skipped.append(SkippedFile(file, _sentence(os.path.basename(file), "could not be read")))
            continue
        reason = _why_not_ct_slice(res)
        if reason is not None:
            skipped.append(SkippedFile(file, _sentence(os.path.basename(file), reason)))
        else:
            headers.append(res)

    by_series: dict[str, list[_Header]] = {}
    for h in headers:
        by_series.setdefault(h.series_uid, []).append(h)
    series = [_series_info(uid, hs) for uid, hs in by_series.items()]
    series.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.uid))
    scan = FolderScan(root=str(root), series=tuple(series), skipped=tuple(skipped))
    logger.info(
        "scanned %d files: %d series, %d skipped in %.3f s",
        len(files), len(series), len(skipped), time.perf_counter() - t0,
    )
    if not series:
        raise StudyLoadError(_no_ct_message(root, len(files), skipped))
    return scan


def _sentence(name: str, reason: str) -> str:
    return f"{name} {reason}."


def _no_ct_message(root: Path, n_files: int, skipped: Sequence[SkippedFile]) -> str:
    if n_files == 0:
        return f"No CT images were found in {root}: the folder (and its subfolders) is empty."
    kinds = Counter(_reason_kind(s.reason) for s in skipped)
    parts = "; ".join(
        f"{kind} ({n} file{'s' if n > 1 else ''})" for kind, n in kinds.most_common(4)
    )
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


def _series_info(uid: str, hs: list[_Header]) -> SeriesInfo:
    rows, cols = Counter((h.rows, h.cols) for h in hs).most_common(1)[0][0]
    spacings = [h.pixel_spacing for h in hs if h.pixel_spacing is not None]
    spacing = Counter(spacings).most_common(1)[0][0] if spacings else (1.0, 1.0)
    orients = [_round_orientation(h.orientation) for h in hs if h.orientation is not None]
    orientation = Counter(orients).most_common(1)[0][0] if orients else None
    if orientation is not None:
        o = np.asarray(orientation)
        normal = np.cross(o[:3], o[3:])
        normal /= np.linalg.norm(normal)
        is_axial = abs(float(normal[2])) >= AXIAL_MIN_NORMAL_Z
    else:
        normal = None
        is_axial = "AXIAL" in hs[0].image_type
    ordered, _ = _order(hs, normal)
    positions = _projected(ordered, normal)
    slice_spacing = None
    if positions is not None and len(positions) > 1:
        gaps = np.abs(np.diff(positions))
        gaps = gaps[gaps > DUPLICATE_TOLERANCE_MM]
        if gaps.size:
            slice_spacing = float(np.median(gaps))
    first = hs[0]
    return SeriesInfo(
        uid=uid,
        description=first.description,
        modality=first.modality or "CT",
        num_slices=len(hs),
        rows=rows,
        cols=cols,
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
        slice_spacing_mm=slice_spacing,
        is_axial=is_axial,
        files=tuple(h.path for h in ordered),
        series_number=first.series_number,
        study_uid=first.study_uid,
        manufacturer=first.manufacturer,
        kernel=first.kernel,
    )


def _round_orientation(o: Sequence[float] | None) -> tuple[float, ...] | None:
    if o is None:
        return None
    return tuple(round(float(v), 3) + 0.0 for v in o)


def _projected(hs: Sequence[Any], normal: np.ndarray | None) -> np.ndarray | None:
    if normal is None or any(h.position is None for h in hs) or not hs:
        return None
    return np.asarray([h.position for h in hs], dtype=np.float64) @ normal


def _order(hs: Sequence[Any], normal: np.ndarray | None) -> tuple[list[Any], str]:
    """Slices ordered head to feet; the second value says how ('position', 'instance', 'file')."""
    pos = _projected(hs, normal)
    if pos is not None:
        keys = [
            (-p, h.instance_number if h.instance_number is not None else 0, h.path)
            for p, h in zip(pos, hs)
        ]
        idx = sorted(range(len(hs)), key=lambda i: keys[i])
        return [hs[i] for i in idx], "position"
    if all(h.instance_number is not None for h in hs):
        return sorted(hs, key=lambda h: (h.instance_number, h.path)), "instance"
    return sorted(hs, key=lambda h: h.path), "file"


# -------------------------------------------------------------------------------------- load


@dataclass
class _Slice:
    header: _Header
    hu: np.ndarray  # (rows, cols) int16


def _pixels(ds: Any, h: _Header) -> np.ndarray:
    """Stored pixel values of one frame; a fast path for native little-endian 16-bit data."""
    if h.transfer_syntax in _NATIVE_LE and h.bits_allocated == 16 and h.bits_stored == 16:
        raw = ds.PixelData if "PixelData" in ds else None
        if isinstance(raw, (bytes, bytearray)) and len(raw) >= 2 * h.rows * h.cols:
            arr = np.frombuffer(raw, dtype="<i2" if h.signed else "<u2", count=h.rows * h.cols)
            return arr.reshape(h.rows, h.cols)
    return ds.pixel_array


def _read_native_pixels(h: _Header) -> np.ndarray | None:
    """Read native 16-bit pixels at the offset the scan recorded (no header parsing).

    None when the fast path does not apply (the caller then reads the file with pydicom).
    """
    if (
        h.pixel_offset is None
        or h.bits_allocated != 16
        or h.bits_stored != 16
        or h.frames != 1
        or h.samples != 1
        or h.stat_key is None
        or _stat_key(h.path) != h.stat_key
    ):
        return None
    need = 2 * h.rows * h.cols
    if h.pixel_length is None or h.pixel_length < need:
        return None
    try:
        with open(h.path, "rb") as fh:
            fh.seek(h.pixel_offset)
            buf = fh.read(need)
    except OSError as exc:
        raise _Skip(f"could not be read ({_os_reason(exc)})") from None
    if len(buf) < need:
        raise _Skip("could not be decoded (the pixel data is incomplete or damaged)")
    arr = np.frombuffer(buf, dtype="<i2" if h.signed else "<u2")
    return arr.reshape(h.rows, h.cols)


def _decode_reason(ds: Any, exc: BaseException) -> str:
    try:
        ts = ds.file_meta.TransferSyntaxUID
        name = str(ts.name)
        compressed = bool(ts.is_compressed)
    except Exception:
        name, compressed = "", False
    low = name.lower()
    if "jpeg 2000" in low:
        hint = "JPEG 2000 decoder missing?"
    elif "jpeg-ls" in low or "jpeg ls" in low:
        hint = "JPEG-LS decoder missing?"
    elif "jpeg" in low:
        hint = "JPEG decoder missing?"
    elif compressed and name:
        hint = f"{name} compression: decoder missing or data damaged"
    else:
        hint = "the pixel data is incomplete or damaged"
    logger.debug("slice decode failed: %s", type(exc).__name__)
    return f"could not be decoded ({hint})"


def _to_hu(arr: np.ndarray, h: _Header) -> np.ndarray:
    """Stored values -> HU (int16): Rescale Slope/Intercept, padding -> :data:`PADDING_HU`."""
    slope, intercept = h.slope, h.intercept
    hu = None
    if arr.dtype.kind in "iu" and slope == 1.0 and float(intercept).is_integer() and arr.size:
        # fast path (the common case): integer shift that cannot overflow int16
        lo, hi, ic = int(arr.min()), int(arr.max()), int(intercept)
        if -32768 <= lo + ic and hi + ic <= 32767 and -32768 <= lo and hi <= 32767:
            hu = arr.astype(np.int16)
            hu += np.int16(ic)
    if hu is None:
        hu = np.rint(arr.astype(np.float64) * slope + intercept)
        hu = np.clip(hu, -32768, 32767).astype(np.int16)

    pad, lim = h.padding, h.padding_limit
    if pad is not None and arr.dtype.kind in "iu":
        bits = h.bits_allocated or 16
        if arr.dtype.kind == "i":
            pad = _as_signed(pad, bits)
            lim = _as_signed(lim, bits) if lim is not None else None
        if lim is None:
            mask = arr == pad
        else:
            lo_, hi_ = min(pad, lim), max(pad, lim)
            mask = (arr >= lo_) & (arr <= hi_)
        if mask.any():
            hu[mask] = PADDING_HU
    return hu


def _as_signed(value: int, bits: int) -> int:
    if value >= 2 ** (bits - 1):
        value -= 2**bits
    return value


def _load_slice(path: str) -> _Slice:
    with _cache_lock:
        cached = _HEADER_CACHE.get(path)
    arr = _read_native_pixels(cached) if cached is not None else None
    if arr is not None:
        h = cached
    else:
        ds = _read_dataset(path)
        h = _header(ds, path)
        reason = _why_not_ct_slice(h)
        if reason is not None:
            raise _Skip(reason)
        try:
            arr = _pixels(ds, h)
        except MemoryError:
            raise _Skip("is too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure
            raise _Skip(_decode_reason(ds, exc)) from None
        arr = np.asarray(arr)
    if arr.ndim != 2:
        raise _Skip("holds several frames or colour channels, not one CT slice")
    if arr.shape != (h.rows, h.cols):
        raise _Skip("has pixel data that does not match its image size")
    try:
        hu = _to_hu(arr, h)
    except Exception:  # noqa: BLE001
        raise _Skip("has pixel values that could not be converted to HU") from None
    return _Slice(header=h, hu=hu)


def load_series(
    info: SeriesInfo,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> CTVolume:
    """Decode one series into a :class:`~.study.CTVolume` in HU, ordered head to feet.

    Parameters
    ----------
    info
        A series from :func:`scan_folder`.
    progress
        Optional ``progress(done, total)`` called (from the calling thread) as slices are
        decoded.
    cancel
        Optional callable polled while decoding; when it returns True, :class:`LoadCancelled`
        is raised and nothing is returned.

    Raises
    ------
    StudyLoadError
        No slice of the series could be read (or :class:`LoadCancelled` on cancel).
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


def _load_series(
    info: SeriesInfo, progress: ProgressCallback | None, cancel: CancelCallback | None
) -> CTVolume:
    t0 = time.perf_counter()
    files = list(info.files)
    if not files:
        raise StudyLoadError(f"The series '{info.description or info.uid}' has no slices.")
    results = _run_parallel(_load_slice, files, progress, cancel, "Loading the series")
    warnings: list[str] = []
    slices: list[_Slice] = []
    failures: list[str] = []
    for file, res in zip(files, results):
        name = os.path.basename(file)
        if isinstance(res, _Slice):
            slices.append(res)
        elif isinstance(res, _Skip):
            failures.append(f"Slice file {name} {res}; it was skipped.")
        else:
            logger.debug("unexpected error loading a slice", exc_info=res)
            failures.append(f"Slice file {name} could not be read; it was skipped.")
    if not slices:
        label = info.description or "this series"
        first = failures[0] if failures else ""
        raise StudyLoadError(
            f"None of the {len(files)} slices of {label} could be read. {first}".strip()
        )
    if len(failures) > 5:
        warnings.extend(failures[:5])
        warnings.append(f"{len(failures) - 5} more slice files could not be read and were skipped.")
    else:
        warnings.extend(failures)

    slices = _keep_majority(
        slices, lambda s: (s.header.rows, s.header.cols), warnings,
        lambda k, n: f"{n} slice{'s' if n > 1 else ''} of a different size ({k[0]} x {k[1]} "
        "pixels) left out",
    )
    slices = _keep_majority(
        slices, lambda s: _round_orientation(s.header.orientation), warnings,
        lambda k, n: f"{n} slice{'s' if n > 1 else ''} with a different orientation left out",
    )
    slices = _keep_majority(
        slices, lambda s: _round_spacing(s.header.pixel_spacing), warnings,
        lambda k, n: f"{n} slice{'s' if n > 1 else ''} with a different pixel spacing left out",
    )

    h0 = slices[0].header
    if h0.orientation is None:
        orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        warnings.append(
            "The slice orientation is missing; a standard axial orientation was assumed."
        )
    else:
        orientation = np.asarray(h0.orientation, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    normal /= np.linalg.norm(normal)
    if abs(float(normal[2])) < AXIAL_MIN_NORMAL_Z:
        warnings.append(
            "This series is not axial (it may be a coronal or sagittal reconstruction); it is "
            "shown as stored."
        )
    if h0.pixel_spacing is None:
        pixel_spacing = (1.0, 1.0)
        warnings.append(
            "The pixel spacing is missing; 1 mm per pixel was assumed, so sizes in mm are "
            "not reliable."
        )
    else:
        pixel_spacing = (float(h0.pixel_spacing[0]), float(h0.pixel_spacing[1]))

    headers = [s.header for s in slices]
    by_header = {id(s.header): s for s in slices}
    ordered_h, how = _order(headers, normal)
    ordered = [by_header[id(h)] for h in ordered_h]

    if how == "position":
        positions = np.asarray([s.header.position for s in ordered], dtype=np.float64)
        proj = positions @ normal
        keep = np.ones(len(ordered), dtype=bool)
        keep[1:] = np.abs(np.diff(proj)) > DUPLICATE_TOLERANCE_MM
        n_dup = int((~keep).sum())
        if n_dup:
            warnings.append(
                f"{n_dup} duplicate slice{'s' if n_dup > 1 else ''} (at the same position as "
                "another slice) left out; the series may hold more than one acquisition."
            )
            ordered = [s for s, k in zip(ordered, keep) if k]
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
                "Slice positions and instance numbers are missing; slices were ordered by "
                "file name, which may be wrong."
            )
        origin = np.zeros(3)
        positions = origin[None, :] - step * np.arange(n, dtype=np.float64)[:, None] * normal

    hu = np.stack([s.hu for s in ordered]) if len(ordered) > 1 else ordered[0].hu[None].copy()
    first = ordered[0]
    vol = CTVolume(
        hu=hu,
        pixel_spacing_mm=pixel_spacing,
        image_positions_mm=positions,
        orientation=orientation,
        sop_instance_uids=tuple(s.header.sop_uid for s in ordered),
        series_uid=info.uid,
        description=info.description,
        patient_name=first.header.patient_name,
        patient_id=first.header.patient_id,
        study_uid=first.header.study_uid or info.study_uid,
        warnings=tuple(warnings),
    )
    logger.info(
        "loaded %d slices (%d x %d) with %d warnings in %.3f s",
        vol.num_slices, hu.shape[1], hu.shape[2], len(warnings), time.perf_counter() - t0,
    )
    return vol


def _round_spacing(sp: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if sp is None else (round(sp[0], 4), round(sp[1], 4))


def _keep_majority(
    slices: list[_Slice],
    key: Callable[[_Slice], Any],
    warnings: list[str],
    describe: Callable[[Any, int], str],
) -> list[_Slice]:
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
    shown = ", ".join(
        f"{gaps[i]:.2f} mm between slices {i + 1} and {i + 2}" for i in bad[:3]
    )
    more = f" and {bad.size - 3} more" if bad.size > 3 else ""
    missing = " (a slice may be missing)" if np.any(gaps[bad] > median) else ""
    return (
        f"Slice spacing is uneven: most slices are {median:.2f} mm apart, but there "
        f"{'is' if bad.size == 1 else 'are'} {shown}{more}{missing}. Distances along the "
        "body axis may be distorted."
    )


def _fallback_spacing(slices: Sequence[_Slice]) -> float:
    for s in slices:
        if s.header.slice_thickness:
            return float(s.header.slice_thickness)
    return 1.0


# --------------------------------------------------------------------------------- load_study


def load_study(
    path: str | os.PathLike[str],
    series_uid: str | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> tuple[CTVolume, FolderScan]:
    """Scan a folder and load one series: ``series_uid`` or the default series.

    ``progress`` and ``cancel`` are passed to :func:`load_series` (the scan is fast) and
    ``cancel`` also to :func:`scan_folder`.

    Raises
    ------
    StudyLoadError
        As :func:`scan_folder` and :func:`load_series`; also when ``series_uid`` is not in
        the folder (the message lists the series that are).
    """
    scan = scan_folder(path, cancel=cancel)
    info = select_series(scan, series_uid)
    return load_series(info, progress=progress, cancel=cancel), scan


def select_series(scan: FolderScan, series_uid: str | None = None) -> SeriesInfo:
    """The series with ``series_uid`` or, when None, :meth:`FolderScan.default_series`."""
    if series_uid is None:
        return scan.default_series()
    for s in scan.series:
        if s.uid == series_uid:
            return s
    listing = "; ".join(f"{s.summary()} [{s.uid}]" for s in scan.series)
    raise StudyLoadError(
        f"The series {series_uid} is not in {scan.root}. Series available: {listing}."
    )


def iter_series_summaries(scan: FolderScan) -> Iterable[str]:
    """One line per series, for a chooser or a command-line listing."""
    for s in scan.series:
        yield s.summary()
