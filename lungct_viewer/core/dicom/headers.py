"""DICOM headers: reading one file's header fields and deciding whether it is a CT slice.

:func:`read_header` reads **only** the elements in :data:`SCAN_TAGS` (no pixel data) and, for
native little-endian files, records where the pixel data lie in the file so that
:mod:`.decode` can read the pixels later without parsing the header again.
:func:`header_from_dataset` turns a full dataset into the same :class:`DicomHeader`.

Every failure to read a file becomes :class:`Skip` whose ``str()`` is the reason in plain
words ("is not a DICOM file", "is a localizer (scout) image, not a CT slice", ...).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from ..geometry import slice_normal

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_ENHANCED_CT = {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
_DICOMDIR = "1.2.840.10008.1.3.10"
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
#: Implicit and explicit VR little endian: pixel data stored as plain little-endian words.
NATIVE_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})

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

#: The only header elements read while scanning (fast, and no pixel data is loaded).
SCAN_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionTime",
    "ImageType",
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "InstanceNumber",
    "Manufacturer",
    "ConvolutionKernel",
    "SliceThickness",
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
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "StudyDescription",
]


class Skip(Exception):
    """A file or slice is not used; ``str()`` is the reason in plain words."""


@dataclass
class DicomHeader:
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
    #: SeriesTime, else AcquisitionTime, as ``HH:MM:SS`` ("" when neither is present)
    series_time: str = ""
    patient_name: str = ""
    patient_id: str = ""
    #: PatientBirthDate and StudyDate as ``YYYY-MM-DD`` ("" when missing or malformed)
    patient_birth_date: str = ""
    study_date: str = ""
    study_description: str = ""
    frame_of_reference_uid: str = ""
    transfer_syntax: str = ""
    #: byte offset and length of native PixelData in the file (set by :func:`read_header`),
    #: valid while the file's :attr:`stat_key` is unchanged
    pixel_offset: int | None = None
    pixel_length: int | None = None
    stat_key: tuple[int, int] | None = None


# ------------------------------------------------------------------------------- reading


def stat_key(path: str) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file, or None when it cannot be read: changes when it does."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def os_reason(exc: OSError) -> str:
    """A plain-words reason for an operating-system error."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "it disappeared while the folder was being read"
    return exc.strerror or "input/output error"


def _looks_like_raw_dicom(path: str) -> bool:
    """A DICOM stream without the 128-byte preamble starts with a group 0002/0008 tag."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08") and len(head) == 4


def read_dataset(path: str, **kwargs: Any) -> Any:
    """``pydicom.dcmread`` that turns every failure into :class:`Skip` with a reason."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise Skip(f"could not be opened ({os_reason(exc)})") from None
    if size == 0:
        raise Skip("is empty")
    try:
        try:
            return pydicom.dcmread(path, **kwargs)
        except InvalidDicomError:
            if not _looks_like_raw_dicom(path):
                raise Skip("is not a DICOM file") from None
            ds = pydicom.dcmread(path, force=True, **kwargs)
            if "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
                raise Skip("is not a DICOM file") from None
            return ds
    except Skip:
        raise
    except OSError as exc:
        raise Skip(f"could not be read ({os_reason(exc)})") from None
    except MemoryError:
        raise Skip("is too large to read") from None
    except Exception:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise Skip("is a damaged or truncated DICOM file") from None


def read_header(path: str) -> DicomHeader:
    """The header of one file, reading only :data:`SCAN_TAGS` (raises :class:`Skip`).

    For native little-endian files the offset and length of the pixel data are recorded,
    with the file's :func:`stat_key`, so the pixels can be read later without parsing.
    """
    key = stat_key(path)
    ds = read_dataset(path, specific_tags=SCAN_TAGS, defer_size=256)
    h = header_from_dataset(ds, path)
    h.stat_key = key
    if h.transfer_syntax in NATIVE_LITTLE_ENDIAN and key is not None:
        try:
            raw = ds.get_item("PixelData", keep_deferred=True)
            tell = getattr(raw, "value_tell", None)
            length = getattr(raw, "length", None)
            if (
                raw is not None
                and getattr(raw, "value", b"") is None
                and tell is not None
                and length is not None
                and 0 < length < 0xFFFFFFFF
            ):
                h.pixel_offset, h.pixel_length = int(tell), int(length)
        except Exception:  # noqa: BLE001 - the slow path will read it
            pass
    return h


# ------------------------------------------------------------------------------ fields


def _get(ds: Any, keyword: str, default: Any = None) -> Any:
    """A header value, or ``default`` when missing, empty or malformed."""
    try:
        value = ds.get(keyword, default)
    except Exception:  # noqa: BLE001 - malformed elements raise on access
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
    except Exception:  # noqa: BLE001
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


def _spacing(ds: Any) -> tuple[float, float] | None:
    sp = _floats(ds, "PixelSpacing", 2)
    if sp is None or sp[0] <= 0 or sp[1] <= 0:
        return None
    return (sp[0], sp[1])


def _orientation(ds: Any) -> tuple[float, ...] | None:
    o = _floats(ds, "ImageOrientationPatient", 6)
    return o if o is not None and slice_normal(o) is not None else None


def _clock(value: str) -> str:
    """A DICOM TM value (``HHMMSS.FFFFFF``, possibly shortened) as ``HH:MM[:SS]``; "" if bad."""
    digits = value.split(".", 1)[0].replace(":", "").strip()
    if len(digits) < 4 or not digits.isdigit():
        return ""
    hh, mm, ss = digits[0:2], digits[2:4], digits[4:6]
    if int(hh) > 23 or int(mm) > 59 or (ss and int(ss) > 60):
        return ""
    return f"{hh}:{mm}:{ss}" if len(ss) == 2 else f"{hh}:{mm}"


def _date(value: str) -> str:
    """A DICOM DA value (``YYYYMMDD``, or the old ``YYYY.MM.DD``) as ``YYYY-MM-DD``; "" if bad."""
    digits = value.strip().replace(".", "").replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        return ""
    y, m, d = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return ""
    return f"{y:04d}-{m:02d}-{d:02d}"


def header_from_dataset(ds: Any, path: str) -> DicomHeader:
    """The :class:`DicomHeader` of a pydicom dataset (malformed values read as missing)."""
    image_type = tuple(s.upper() for s in _text(ds, "ImageType").split("\\") if s)
    sop_class = _text(ds, "SOPClassUID")
    if not sop_class:
        try:
            sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
        except Exception:  # noqa: BLE001
            sop_class = ""
    frames = _int(ds, "NumberOfFrames")
    slope = _float(ds, "RescaleSlope", 1.0)
    if slope == 0.0:
        slope = 1.0
    thickness = _float(ds, "SliceThickness", float("nan"))
    try:
        ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    except Exception:  # noqa: BLE001
        ts = ""
    return DicomHeader(
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
        series_time=_clock(_text(ds, "SeriesTime")) or _clock(_text(ds, "AcquisitionTime")),
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        patient_birth_date=_date(_text(ds, "PatientBirthDate")),
        study_date=_date(_text(ds, "StudyDate")),
        study_description=_text(ds, "StudyDescription"),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        transfer_syntax=ts,
    )


# ------------------------------------------------------------------------- what it is


def why_not_ct_slice(h: DicomHeader) -> str | None:
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
    except Exception:  # noqa: BLE001
        return ""
    return "" if name == uid else name
