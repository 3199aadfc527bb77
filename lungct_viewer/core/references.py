"""Reference annotations: a reader's outlines read onto the series on screen (Qt-free).

A researcher checks the model against a reader. Three kinds of file hold a reader's
outlines, and each is read onto the grid of a loaded :class:`~.study.CTVolume`:

* **DICOM Segmentation** (SEG, binary or fractional; one :class:`Reference` per segment).
  Each frame goes on the slice it was derived from (its ReferencedSOPInstanceUID), else on
  the slice at its ImagePositionPatient (within half a slice spacing). Its pixels are placed
  by the frame's own geometry (position, orientation, pixel spacing), so a frame on another
  in-plane grid of the same frame of reference is resampled (nearest pixel). A fractional
  pixel counts when it is at least half the maximum fractional value.
* **RT structure set** (RTSTRUCT; one reference per ROI). Each closed planar contour (patient
  mm) goes on the slice it references, else on the slice it lies on; its points become pixel
  coordinates of that slice and the polygon is filled (pixel centres inside or on it); the
  contours of one ROI on one slice combine even-odd, so an inner contour is a hole.
* **LIDC reading XML** (one reference per reader and nodule; parsed by :mod:`.lidc`, the
  project's one parser): the readers' outlines of nodules of 3 mm or more, numbered as the
  physical nodules they belong to (:func:`~.lidc.cluster_nodules`). Single-point marks
  (nodules under 3 mm, non-nodules) have no outline and are not read.

A file must belong to the series: it refers to it (SeriesInstanceUID or one of its
instances) or shares its frame of reference; otherwise, or when it cannot be read, a
:class:`~.errors.ReferenceLoadError` says so in one sentence. Files are only read.

:func:`reference_overlaps` tells which lesions' objects share voxels with which references.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .errors import DataError, LoadCancelled, ReferenceLoadError
from .lidc import cluster_nodules, fill_polygon, is_lidc_xml, parse_reading
from .nodule_size import Axes, largest_section_axes
from .study import CTVolume, FolderScan

logger = logging.getLogger(__name__)

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"  # found, then refused with a sentence
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
#: Largest out-of-plane component of a frame's row or column direction still "parallel".
PARALLEL_TOLERANCE = 1e-3


class ReferenceKind(StrEnum):
    """Where a reference came from. The value is what a table or JSON shows."""

    SEG = "seg"
    RTSTRUCT = "rtstruct"
    LIDC_XML = "lidc-xml"

    @property
    def display(self) -> str:
        return {
            ReferenceKind.SEG: "DICOM SEG",
            ReferenceKind.RTSTRUCT: "RT structure set",
            ReferenceKind.LIDC_XML: "LIDC reading",
        }[self]


@dataclass(frozen=True, eq=False)
class Reference:
    """One reader's outline of one structure on the series' grid.

    ``masks`` maps a slice index to ``(mask, row0, col0)``: the bool cross-section cropped to
    its bounding box and where that box starts (native pixels), as
    :meth:`~.candidates.Candidate.slice_mask`. Only slices with at least one pixel are kept.
    """

    name: str
    kind: ReferenceKind
    path: str = field(repr=False)  # the file it was read from
    reader: str  # "" when the file does not say
    masks: Mapping[int, tuple[np.ndarray, int, int]] = field(repr=False)
    pixel_spacing_mm: tuple[float, float]  # (row, column) spacing, as the volume's
    slice_spacing_mm: float

    @property
    def source(self) -> str:
        """The file's name (without its folder, which may name the patient)."""
        return os.path.basename(self.path)

    @property
    def title(self) -> str:
        """``Nodule 1 (Reader 2)``: the name, and the reader when known."""
        return f"{self.name} ({self.reader})" if self.reader else self.name

    @property
    def slices(self) -> tuple[int, ...]:
        """The slice indices it covers, top to bottom."""
        return tuple(sorted(self.masks))

    @property
    def slice_range(self) -> tuple[int, int]:
        """First and last slice index (inclusive)."""
        s = self.slices
        return s[0], s[-1]

    def slice_mask(self, index: int) -> tuple[np.ndarray, int, int] | None:
        """``(mask, row0, col0)`` on slice ``index``, or None when it is not there."""
        return self.masks.get(index)

    def outline(self, index: int) -> tuple[np.ndarray, int, int] | None:
        """``(outline, row0, col0)``: the pixels of the cross-section on slice ``index`` that
        touch its outside (what the screen and the PNGs draw), or None."""
        sm = self.masks.get(index)
        if sm is None:
            return None
        m, r0, c0 = sm
        padded = np.pad(m, 1)
        inner = ndimage.binary_erosion(padded, structure=np.ones((3, 3), bool))[1:-1, 1:-1]
        return m & ~inner, r0, c0

    @property
    def axes(self) -> Axes:
        """Long and short axis (mm) of the largest cross-section (by area), measured as a
        lesion's (:mod:`.nodule_size`)."""
        return largest_section_axes((m for m, _, _ in self.masks.values()), tuple(self.pixel_spacing_mm))

    @property
    def diameter_mm(self) -> float:
        """Mean diameter (mm), as a lesion's: the average of :attr:`axes`."""
        return self.axes.mean_mm

    @property
    def volume_mm3(self) -> float:
        dy, dx = self.pixel_spacing_mm
        return float(sum(int(m.sum()) for m, _, _ in self.masks.values())) * dy * dx * self.slice_spacing_mm

    @property
    def central_slice(self) -> int:
        """The slice with the largest cross-section."""
        return max(self.slices, key=lambda k: (int(self.masks[k][0].sum()), -k))

    @property
    def centre_px(self) -> tuple[float, float]:
        """``(row, col)`` centre of the cross-section on :attr:`central_slice`."""
        m, r0, c0 = self.masks[self.central_slice]
        rows, cols = np.nonzero(m)
        return float(rows.mean()) + r0, float(cols.mean()) + c0


@dataclass(frozen=True)
class LoadedReferences:
    """References read from one file or a folder, and what could not be shown (sentences)."""

    references: tuple[Reference, ...] = ()
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------------- building blocks


def _crop(masks: Mapping[int, np.ndarray]) -> dict[int, tuple[np.ndarray, int, int]]:
    out = {}
    for k, m in masks.items():
        rows = np.flatnonzero(m.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(m[rows[0] : rows[-1] + 1].any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        out[int(k)] = (np.ascontiguousarray(m[r0:r1, c0:c1], dtype=bool), r0, c0)
    return out


def make_reference(
    name: str,
    kind: ReferenceKind,
    path: str | os.PathLike[str],
    reader: str,
    masks: Mapping[int, np.ndarray],
    volume: CTVolume,
) -> Reference | None:
    """A :class:`Reference` from full-size ``(rows, cols)`` bool masks per slice index of
    ``volume`` (None when every mask is empty)."""
    cropped = _crop(masks)
    if not cropped:
        return None
    return Reference(
        name=name,
        kind=kind,
        path=os.fspath(path),
        reader=reader,
        masks=cropped,
        pixel_spacing_mm=tuple(float(v) for v in volume.pixel_spacing_mm),  # type: ignore[arg-type]
        slice_spacing_mm=float(volume.slice_spacing_mm or 1.0),
    )


class _Grid:
    """The series' geometry: patient mm <-> slice index and native pixel."""

    def __init__(self, volume: CTVolume) -> None:
        self.volume = volume
        self.normal = volume.normal
        self.row_dir = volume.orientation[:3]  # along a row: the column index grows
        self.col_dir = volume.orientation[3:]  # along a column: the row index grows
        self.dy, self.dx = volume.pixel_spacing_mm
        self.positions = volume.slice_positions_mm
        self.tolerance = 0.5 * (volume.slice_spacing_mm or 1.0)
        self.uids = {u: i for i, u in enumerate(volume.sop_instance_uids)}
        self.shape = volume.hu.shape[1:]

    def slice_at(self, along_normal_mm: float) -> int | None:
        k = int(np.argmin(np.abs(self.positions - along_normal_mm)))
        return k if abs(self.positions[k] - along_normal_mm) <= self.tolerance else None

    def to_pixels(self, k: int, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, cols)`` fractional native pixels of patient points on slice ``k``."""
        d = np.asarray(points_mm, np.float64) - self.volume.image_positions_mm[k]
        return d @ self.col_dir / self.dy, d @ self.row_dir / self.dx

    def parallel(self, orientation: np.ndarray) -> bool:
        o = np.asarray(orientation, np.float64)
        return max(abs(float(o[:3] @ self.normal)), abs(float(o[3:] @ self.normal))) < PARALLEL_TOLERANCE


def _seq(ds: Any, keyword: str) -> list[Any]:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - malformed elements raise on access
        return []
    return list(value) if value is not None else []


def _str(ds: Any, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001
        return ""
    return "" if value is None else str(value).strip()


def _floats(ds: Any, keyword: str, n: int) -> np.ndarray | None:
    if ds is None:
        return None
    try:
        arr = np.asarray([float(v) for v in ds.get(keyword)], np.float64)
    except Exception:  # noqa: BLE001 - missing or malformed
        return None
    return arr if arr.shape == (n,) and np.isfinite(arr).all() else None


def _read(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    from .dicom.headers import Skip, read_dataset

    try:
        return read_dataset(os.fspath(path), **kwargs)
    except Skip as exc:
        raise ReferenceLoadError(f"{os.path.basename(path)} {exc}.") from None


def _referenced_series(ds: Any) -> tuple[set[str], set[str], set[str]]:
    """The series, frames of reference and instances an SEG or RTSTRUCT says it refers to."""
    series: set[str] = set()
    frames: set[str] = set()
    instances: set[str] = set()
    if _str(ds, "FrameOfReferenceUID"):
        frames.add(_str(ds, "FrameOfReferenceUID"))
    for item in _seq(ds, "ReferencedSeriesSequence"):
        series.add(_str(item, "SeriesInstanceUID"))
        instances.update(_str(x, "ReferencedSOPInstanceUID") for x in _seq(item, "ReferencedInstanceSequence"))
    for fr in _seq(ds, "ReferencedFrameOfReferenceSequence"):
        frames.add(_str(fr, "FrameOfReferenceUID"))
        for st in _seq(fr, "RTReferencedStudySequence"):
            for se in _seq(st, "RTReferencedSeriesSequence"):
                series.add(_str(se, "SeriesInstanceUID"))
                instances.update(_str(x, "ReferencedSOPInstanceUID") for x in _seq(se, "ContourImageSequence"))
    for roi in _seq(ds, "StructureSetROISequence"):
        frames.add(_str(roi, "ReferencedFrameOfReferenceUID"))
    return series - {""}, frames - {""}, instances - {""}


def check_belongs(ds: Any, volume: CTVolume, name: str) -> None:
    """Raise :class:`ReferenceLoadError` unless the SEG or RTSTRUCT dataset ``ds`` refers to
    the series of ``volume`` (its SeriesInstanceUID or one of its instances) or shares its
    frame of reference."""
    series, frames, instances = _referenced_series(ds)
    if volume.series_uid in series or instances & set(volume.sop_instance_uids):
        return
    if volume.frame_of_reference_uid and volume.frame_of_reference_uid in frames:
        return
    study = _str(ds, "StudyInstanceUID")
    if volume.study_uid and study and study != volume.study_uid:
        raise ReferenceLoadError(f"{name} belongs to another study, not to the series on screen.")
    raise ReferenceLoadError(
        f"{name} belongs to another series (another frame of reference), so it cannot be drawn on the series on screen."
    )


# ---------------------------------------------------------------------------------- SEG


def _frame_group(per_frame: Any, shared: Any, keyword: str) -> Any | None:
    for group in (per_frame, shared):
        items = _seq(group, keyword) if group is not None else []
        if items:
            return items[0]
    return None


def _place_frame(
    frame: np.ndarray,
    position: np.ndarray | None,
    orientation: np.ndarray | None,
    spacing: np.ndarray | None,
    grid: _Grid,
    k: int,
) -> np.ndarray:
    """The frame's pixels on slice ``k`` of the grid (``(rows, cols)`` bool)."""
    rows, cols = grid.shape
    vol = grid.volume
    if position is None or orientation is None or spacing is None:
        if frame.shape != (rows, cols):
            raise ValueError("size")
        return frame
    same = (
        frame.shape == (rows, cols)
        and np.allclose(orientation, vol.orientation, atol=PARALLEL_TOLERANCE)
        and np.allclose(spacing, (grid.dy, grid.dx), rtol=1e-4)
        and np.all(np.abs(np.array(grid.to_pixels(k, position[None]))[:, 0]) < 0.5)
    )
    if same:
        return frame
    # another in-plane grid: each pixel of the slice takes the frame's nearest pixel
    fr, fc = np.nonzero(frame)
    out = np.zeros((rows, cols), bool)
    if fr.size == 0:
        return out
    f_row, f_col = orientation[:3], orientation[3:]
    fdy, fdx = float(spacing[0]), float(spacing[1])
    corners = np.array([(r, c) for r in (fr.min() - 1, fr.max() + 1) for c in (fc.min() - 1, fc.max() + 1)], float)
    pts = position + corners[:, 1:2] * fdx * f_row + corners[:, 0:1] * fdy * f_col
    vr, vc = grid.to_pixels(k, pts)
    r0, r1 = max(int(np.floor(vr.min())), 0), min(int(np.ceil(vr.max())) + 1, rows)
    c0, c1 = max(int(np.floor(vc.min())), 0), min(int(np.ceil(vc.max())) + 1, cols)
    if r0 >= r1 or c0 >= c1:
        return out
    rr, cc = np.mgrid[r0:r1, c0:c1]
    q = vol.image_positions_mm[k] + cc[..., None] * grid.dx * grid.row_dir + rr[..., None] * grid.dy * grid.col_dir
    d = q - position
    j = np.rint(d @ f_row / fdx).astype(np.int64)
    i = np.rint(d @ f_col / fdy).astype(np.int64)
    ok = (i >= 0) & (i < frame.shape[0]) & (j >= 0) & (j < frame.shape[1])
    out[rr[ok], cc[ok]] = frame[i[ok], j[ok]]
    return out


def read_seg(path: str | os.PathLike[str], volume: CTVolume, dataset: Any = None) -> LoadedReferences:
    """The segments of a DICOM Segmentation on ``volume``'s grid (module docstring).

    ``dataset`` is the file already read (with pixel data), if it was.
    """
    name = os.path.basename(path)
    ds = dataset if dataset is not None else _read(path)
    check_belongs(ds, volume, name)
    seg_type = _str(ds, "SegmentationType").upper()
    if seg_type not in ("BINARY", "FRACTIONAL"):
        raise ReferenceLoadError(
            f"{name} is a {seg_type.lower() or 'label-map'} segmentation; this viewer reads binary and "
            "fractional segmentations."
        )
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - missing or undecodable pixel data
        logger.debug("SEG pixel data could not be decoded", exc_info=True)
        raise ReferenceLoadError(f"The pixel data of {name} could not be read ({type(exc).__name__}).") from None
    if pixels.ndim == 2:
        pixels = pixels[None]
    if seg_type == "FRACTIONAL":
        maximum = float(ds.get("MaximumFractionalValue", 255) or 255)
        on = pixels.astype(np.float64) >= 0.5 * maximum
    else:
        on = pixels > 0
    segments = {int(s.SegmentNumber): s for s in _seq(ds, "SegmentSequence") if "SegmentNumber" in s}
    shared = next(iter(_seq(ds, "SharedFunctionalGroupsSequence")), None)
    per_frame = _seq(ds, "PerFrameFunctionalGroupsSequence")
    if len(per_frame) != on.shape[0]:
        raise ReferenceLoadError(f"{name} does not describe each of its {on.shape[0]} frames, so it cannot be placed.")
    grid = _Grid(volume)
    masks: dict[int, dict[int, np.ndarray]] = {}
    outside = 0
    for f, group in enumerate(per_frame):
        ident = _frame_group(group, shared, "SegmentIdentificationSequence")
        number = int(ident.ReferencedSegmentNumber) if ident is not None and "ReferencedSegmentNumber" in ident else 1
        if not on[f].any():
            continue
        position = _floats(_frame_group(group, None, "PlanePositionSequence"), "ImagePositionPatient", 3)
        orientation = _floats(_frame_group(group, shared, "PlaneOrientationSequence"), "ImageOrientationPatient", 6)
        spacing = _floats(_frame_group(group, shared, "PixelMeasuresSequence"), "PixelSpacing", 2)
        if orientation is not None and not grid.parallel(orientation):
            raise ReferenceLoadError(
                f"{name} is drawn on planes that are not parallel to the slices on screen, so it cannot be shown."
            )
        k = None
        for der in _seq(group, "DerivationImageSequence"):
            for src in _seq(der, "SourceImageSequence"):
                k = grid.uids.get(_str(src, "ReferencedSOPInstanceUID"), k)
        if k is None and position is not None:
            k = grid.slice_at(float(position @ grid.normal))
        if k is None:
            outside += 1
            continue
        try:
            placed = _place_frame(on[f], position, orientation, spacing, grid, k)
        except ValueError:
            raise ReferenceLoadError(
                f"{name} has frames of another size than the slices on screen and no position to place them by."
            ) from None
        seg = masks.setdefault(number, {})
        seg[k] = seg[k] | placed if k in seg else placed
    refs, warnings = [], []
    for number in sorted(set(masks) | set(segments)):
        desc = segments.get(number)
        label = _str(desc, "SegmentLabel") if desc is not None else ""
        ref = make_reference(
            label or f"Segment {number}",
            ReferenceKind.SEG,
            path,
            _seg_reader(ds, desc),
            masks.get(number, {}),
            volume,
        )
        if ref is None:
            warnings.append(f"{name}: segment {number} ({label or 'no label'}) has no pixel on the slices on screen.")
        else:
            refs.append(ref)
    if outside:
        warnings.append(f"{name}: {outside} frame(s) lie outside the slices on screen and are not shown.")
    if not refs:
        raise ReferenceLoadError(f"{name} holds no outline on the slices on screen.")
    return LoadedReferences(tuple(refs), tuple(warnings))


def _seg_reader(ds: Any, desc: Any) -> str:
    """The person who made the segmentation, else the algorithm that did ("" if unknown)."""
    person = _str(ds, "ContentCreatorName").replace("^", " ").strip()
    if person:
        return person
    if desc is not None and _str(desc, "SegmentAlgorithmType").upper() != "MANUAL":
        return _str(desc, "SegmentAlgorithmName")
    return ""


# ------------------------------------------------------------------------------ RTSTRUCT


def read_rtstruct(path: str | os.PathLike[str], volume: CTVolume, dataset: Any = None) -> LoadedReferences:
    """The ROIs of an RT structure set on ``volume``'s grid (module docstring)."""
    name = os.path.basename(path)
    ds = dataset if dataset is not None else _read(path)
    check_belongs(ds, volume, name)
    grid = _Grid(volume)
    rows, cols = grid.shape
    names = {}
    for item in _seq(ds, "StructureSetROISequence"):
        try:
            names[int(item.ROINumber)] = _str(item, "ROIName")
        except (AttributeError, TypeError, ValueError):
            continue
    readers = {}
    for obs in _seq(ds, "RTROIObservationsSequence"):
        try:
            readers[int(obs.ReferencedROINumber)] = _str(obs, "ROIInterpreter").replace("^", " ").strip()
        except (AttributeError, TypeError, ValueError):
            continue
    refs, warnings = [], []
    outside = not_closed = 0
    for rc in _seq(ds, "ROIContourSequence"):
        try:
            number = int(rc.ReferencedROINumber)
        except (AttributeError, TypeError, ValueError):
            continue
        polygons: dict[int, list[np.ndarray]] = {}
        for contour in _seq(rc, "ContourSequence"):
            if _str(contour, "ContourGeometricType").upper() != "CLOSED_PLANAR":
                not_closed += 1
                continue
            try:
                pts = np.asarray([float(v) for v in contour.ContourData], np.float64).reshape(-1, 3)
            except (AttributeError, TypeError, ValueError):
                raise ReferenceLoadError(f"{name} has a contour with unreadable points.") from None
            if len(pts) < 3 or not np.isfinite(pts).all():
                continue
            along = pts @ grid.normal
            k = None
            for img in _seq(contour, "ContourImageSequence"):
                k = grid.uids.get(_str(img, "ReferencedSOPInstanceUID"), k)
            if k is None:
                k = grid.slice_at(float(along.mean()))
            if k is None or np.ptp(along) > 2 * grid.tolerance:
                outside += 1
                continue
            r, c = grid.to_pixels(k, pts)
            polygons.setdefault(k, []).append(np.stack([c, r], axis=1))
        masks = {}
        for k, polys in polygons.items():
            m = np.zeros((rows, cols), bool)
            for poly in polys:
                m ^= fill_polygon(poly, rows, cols)
            masks[k] = m
        label = names.get(number) or f"ROI {number}"
        ref = make_reference(label, ReferenceKind.RTSTRUCT, path, readers.get(number, ""), masks, volume)
        if ref is not None:
            refs.append(ref)
    if outside:
        warnings.append(f"{name}: {outside} contour(s) lie outside the slices on screen and are not shown.")
    if not_closed:
        warnings.append(f"{name}: {not_closed} contour(s) are points or open lines, not outlines, and are not shown.")
    if not refs:
        raise ReferenceLoadError(f"{name} holds no closed outline on the slices on screen.")
    return LoadedReferences(tuple(refs), tuple(warnings))


# ----------------------------------------------------------------------------- LIDC XML


def read_lidc_xml(path: str | os.PathLike[str], volume: CTVolume) -> LoadedReferences:
    """The readers' nodule outlines of an LIDC reading file on ``volume`` (module docstring)."""
    name = os.path.basename(path)
    try:
        reading = parse_reading(path, volume)
    except DataError as exc:
        raise ReferenceLoadError(str(exc).replace(os.fspath(path), name)) from None
    if reading.series_uid != volume.series_uid and reading.placed_by_uid == 0:
        raise ReferenceLoadError(
            f"The LIDC reading file {name} belongs to another series, so it cannot be drawn on the series on screen."
        )
    refs = []
    for number, group in enumerate(cluster_nodules(reading.nodules), start=1):
        for rn in sorted(group, key=lambda n: n.reader):
            ref = make_reference(
                f"Nodule {number}", ReferenceKind.LIDC_XML, path, f"Reader {rn.reader + 1}", rn.outlines, volume
            )
            if ref is not None:
                refs.append(ref)
    warnings = []
    if reading.unplaced:
        warnings.append(f"{name}: {reading.unplaced} outline(s) lie on slices not in this series and are not shown.")
    if not refs:
        raise ReferenceLoadError(f"The LIDC reading file {name} outlines no nodule of 3 mm or more on this series.")
    return LoadedReferences(tuple(refs), tuple(warnings))


# ------------------------------------------------------------------------------ any file


def read_references(path: str | os.PathLike[str], volume: CTVolume) -> LoadedReferences:
    """The references of one file (SEG, RTSTRUCT or LIDC XML, told apart by content) on
    ``volume``'s grid.

    Raises
    ------
    ReferenceLoadError
        The file is missing, unreadable, of another kind, or of another series.
    """
    name = os.path.basename(path)
    p = Path(path)
    if not p.is_file():
        raise ReferenceLoadError(f"The file {name} does not exist.")
    try:
        if is_lidc_xml(p):
            return read_lidc_xml(p, volume)
        if p.suffix.lower() == ".xml":
            raise ReferenceLoadError(f"{name} is an XML file but not an LIDC reading file (LidcReadMessage).")
        header = _read(p, stop_before_pixels=True)
        sop_class = _str(header, "SOPClassUID") or _str(getattr(header, "file_meta", {}), "MediaStorageSOPClassUID")
        if sop_class == RTSTRUCT_STORAGE or _str(header, "Modality").upper() == "RTSTRUCT":
            return read_rtstruct(p, volume, header)
        if sop_class in (SEG_STORAGE, LABEL_MAP_SEG_STORAGE) or _str(header, "Modality").upper() == "SEG":
            check_belongs(header, volume, name)  # before the pixel data are read
            return read_seg(p, volume, _read(p))
    except ReferenceLoadError:
        raise
    except MemoryError:
        raise ReferenceLoadError(f"There is not enough memory to read {name}.") from None
    except Exception as exc:  # noqa: BLE001 - one error family for the caller
        logger.debug("unexpected error reading a reference", exc_info=True)
        problem = type(exc).__name__
        raise ReferenceLoadError(f"{name} could not be read because of an unexpected problem ({problem}).") from None
    from .dicom.headers import _MODALITY_NAMES

    kind = _MODALITY_NAMES.get(_str(header, "Modality").upper(), "another kind of DICOM object")
    raise ReferenceLoadError(
        f"{name} is {kind}, not a segmentation (DICOM SEG), an RT structure set or an LIDC reading file."
    )


def reference_files(scan: FolderScan) -> list[str]:
    """The files of a scanned folder that may hold reference annotations: the segmentations
    and RT structure sets the scan skipped, and the LIDC reading files among its other
    skipped files."""
    out = []
    for s in scan.skipped:
        if s.sop_class in (SEG_STORAGE, LABEL_MAP_SEG_STORAGE, RTSTRUCT_STORAGE):
            out.append(s.path)
        elif s.path.lower().endswith(".xml") and is_lidc_xml(s.path):
            out.append(s.path)
    return out


def find_references(
    scan: FolderScan | Iterable[str],
    volume: CTVolume,
    cancel: Callable[[], bool] | None = None,
) -> LoadedReferences:
    """Every reference of a scanned folder (its :func:`reference_files`; or of the files
    given) on ``volume``'s grid.

    A file that cannot be read or belongs to another series adds its sentence to the
    warnings instead of stopping the others. ``cancel`` is polled between files
    (:class:`~.errors.LoadCancelled` when it returns True).
    """
    paths = reference_files(scan) if isinstance(scan, FolderScan) else list(scan)
    refs: list[Reference] = []
    warnings: list[str] = []
    for path in paths:
        if cancel is not None and cancel():
            raise LoadCancelled("Reading the reference annotations was cancelled.")
        try:
            got = read_references(path, volume)
        except ReferenceLoadError as exc:
            warnings.append(str(exc))
            continue
        refs.extend(got.references)
        warnings.extend(got.warnings)
    return LoadedReferences(tuple(refs), tuple(warnings))


# ------------------------------------------------------------------------------- overlap


@dataclass(frozen=True)
class Overlaps:
    """Which lesions share voxels with which references.

    ``by_lesion`` maps a lesion number to the indices (into the references given) of the
    references its object overlaps (lesions without any are left out); ``by_reference``
    holds, per reference, the numbers of the lesions that overlap it.
    """

    by_lesion: Mapping[int, tuple[int, ...]]
    by_reference: tuple[tuple[int, ...], ...]


def _slice_overlap(a: tuple[np.ndarray, int, int], b: tuple[np.ndarray, int, int]) -> bool:
    (ma, ra, ca), (mb, rb, cb) = a, b
    r0, r1 = max(ra, rb), min(ra + ma.shape[0], rb + mb.shape[0])
    c0, c1 = max(ca, cb), min(ca + ma.shape[1], cb + mb.shape[1])
    if r0 >= r1 or c0 >= c1:
        return False
    return bool(np.any(ma[r0 - ra : r1 - ra, c0 - ca : c1 - ca] & mb[r0 - rb : r1 - rb, c0 - cb : c1 - cb]))


def object_overlaps(candidate: Any, reference: Reference) -> bool:
    """True when a lesion's object (a :class:`~.candidates.Candidate`) and a reference
    share at least one voxel."""
    z0, z1 = candidate.box[0], candidate.box[1]
    for k in reference.slices:
        if z0 <= k < z1:
            sm = candidate.slice_mask(k)
            if sm is not None and _slice_overlap(sm, reference.masks[k]):
                return True
    return False


def reference_overlaps(lesions: Iterable[Any], references: Sequence[Reference]) -> Overlaps:
    """The 3-D voxel overlap of lesions (findings and candidates: anything with ``id`` and a
    ``candidate``) and references (:class:`Overlaps`)."""
    by_lesion: dict[int, tuple[int, ...]] = {}
    by_ref: list[list[int]] = [[] for _ in references]
    for les in lesions:
        hits = tuple(i for i, ref in enumerate(references) if object_overlaps(les.candidate, ref))
        if hits:
            by_lesion[int(les.id)] = hits
            for i in hits:
                by_ref[i].append(int(les.id))
    return Overlaps(by_lesion, tuple(tuple(sorted(x)) for x in by_ref))


def outline_mask(references: Sequence[Reference], index: int, shape: tuple[int, int]) -> np.ndarray:
    """``(rows, cols)`` bool: the outlines of every reference on slice ``index``."""
    out = np.zeros(shape, bool)
    for ref in references:
        ol = ref.outline(index)
        if ol is not None:
            m, r0, c0 = ol
            out[r0 : r0 + m.shape[0], c0 : c0 + m.shape[1]] |= m
    return out
