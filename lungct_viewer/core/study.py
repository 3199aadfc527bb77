"""CT study data: what a loaded series is (:class:`CTVolume`) and how a folder was scanned.

Conventions
-----------
* ``CTVolume.hu`` is ``(n_slices, rows, cols)`` int16 in Hounsfield units.
* Slices are ordered from head to feet: index 0 has the largest position along the slice
  normal (``row_cosines x col_cosines``), which for a standard axial series is the most
  superior slice.
* ``pixel_spacing_mm`` is ``(row_spacing, col_spacing)``: the distance in mm between the
  centres of adjacent rows (``dy``) and adjacent columns (``dx``), as DICOM PixelSpacing.
* Patient coordinates are DICOM patient coordinates (LPS) in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import geometry


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, with the reason in plain words."""

    path: str
    reason: str
    #: SOPClassUID of a DICOM file that was read but is not a CT slice ("" otherwise): what
    #: finds the segmentations and RT structure sets among the skipped files
    sop_class: str = ""


@dataclass(frozen=True)
class SeriesInfo:
    """Header-level summary of one series found in a folder (no pixel data read).

    ``headers`` are the headers the scan read for ``files`` (opaque to callers): loading
    uses them to read pixels without parsing each header again.
    """

    uid: str
    description: str
    modality: str
    num_slices: int
    rows: int
    cols: int
    pixel_spacing_mm: tuple[float, float]
    slice_spacing_mm: float | None
    is_axial: bool
    files: tuple[str, ...] = field(repr=False)
    series_number: int | None = None
    study_uid: str = ""
    manufacturer: str = ""
    kernel: str = ""
    slice_thickness_mm: float | None = None
    #: SeriesTime (else the earliest AcquisitionTime) as ``HH:MM[:SS]``; "" when unknown
    series_time: str = ""
    headers: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def summary(self) -> str:
        """One line for a series chooser, with what tells series of one study apart.

        Number and description, convolution kernel, slice count, slice thickness and
        spacing, pixel size, series time; e.g.
        ``#2 5mm: kernel L, 64 slices, 5.0 mm thick, 5.0 mm apart, 0.84 x 0.84 mm pixels, 19:00:47``.
        """
        num = f"#{self.series_number} " if self.series_number is not None else ""
        parts = []
        if self.modality != "CT":
            parts.append(self.modality)
        if self.kernel:
            parts.append(f"kernel {self.kernel}")
        parts.append(f"{self.num_slices} slice{'s' if self.num_slices != 1 else ''}")
        if self.slice_thickness_mm:
            parts.append(f"{self.slice_thickness_mm:.1f} mm thick")
        if self.slice_spacing_mm:
            parts.append(f"{self.slice_spacing_mm:.1f} mm apart")
        parts.append(f"{self.pixel_spacing_mm[1]:.2f} x {self.pixel_spacing_mm[0]:.2f} mm pixels")
        if not self.is_axial:
            parts.append("not axial")
        if self.series_time:
            parts.append(self.series_time)
        return f"{num}{self.description or '(no description)'}: {', '.join(parts)}"


@dataclass(frozen=True)
class FolderScan:
    """The series found in a folder and the files that were skipped (with reasons)."""

    root: str
    series: tuple[SeriesInfo, ...]
    skipped: tuple[SkippedFile, ...]

    def default_series(self) -> SeriesInfo:
        """The axial CT series with the most slices (the one a radiologist would read)."""
        from .errors import StudyLoadError

        if not self.series:
            raise StudyLoadError(f"No CT images were found in {self.root}.")
        return max(
            self.series,
            key=lambda s: (s.modality == "CT", s.is_axial, s.num_slices),
        )


@dataclass
class CTVolume:
    """One loaded CT series in HU, ordered head to feet (see module docstring)."""

    hu: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    image_positions_mm: np.ndarray  # (n, 3) ImagePositionPatient of each slice, mm
    orientation: np.ndarray  # (6,) ImageOrientationPatient (row cosines, col cosines)
    sop_instance_uids: tuple[str, ...]
    series_uid: str
    description: str = ""
    patient_name: str = ""  # only ever burned into exports when the user asks
    patient_id: str = ""
    patient_birth_date: str = ""  # YYYY-MM-DD, "" when unknown (identifiers: screen only)
    study_date: str = ""  # YYYY-MM-DD, "" when unknown
    study_description: str = ""
    study_uid: str = ""
    frame_of_reference_uid: str = ""  # "" when the slices do not say
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"hu must be (n, rows, cols), got shape {self.hu.shape}")
        n = self.hu.shape[0]
        self.image_positions_mm = np.asarray(self.image_positions_mm, dtype=np.float64)
        self.orientation = np.asarray(self.orientation, dtype=np.float64)
        if self.image_positions_mm.shape != (n, 3):
            raise ValueError("image_positions_mm must be (n, 3)")
        if len(self.sop_instance_uids) != n:
            raise ValueError("one SOPInstanceUID per slice is required")
        if geometry.slice_normal(self.orientation) is None:
            raise ValueError("orientation must be 6 direction cosines of two non-parallel axes")

    @property
    def num_slices(self) -> int:
        return int(self.hu.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (row cosines x column cosines)."""
        return geometry.slice_normal(self.orientation)

    @property
    def slice_positions_mm(self) -> np.ndarray:
        """Position of each slice along the slice normal, mm (decreasing with index)."""
        return geometry.projected_positions(self.image_positions_mm, self.normal)

    @property
    def slice_spacing_mm(self) -> float | None:
        """Median distance between neighbouring slices, mm (None for a single slice)."""
        return geometry.slice_spacing(self.slice_positions_mm)

    @property
    def voxel_spacing_mm(self) -> tuple[float, float, float]:
        """``(slice, row, col)`` voxel spacing, mm; 1 mm between slices of a single slice."""
        return (float(self.slice_spacing_mm or 1.0), *(float(v) for v in self.pixel_spacing_mm))

    def pixel_to_patient_mm(self, index: int, row: float, col: float) -> tuple[float, float, float]:
        """Patient (LPS) coordinates in mm of a (fractional) pixel of slice ``index``."""
        dy, dx = self.pixel_spacing_mm
        p = self.image_positions_mm[index] + self.orientation[:3] * dx * col + self.orientation[3:] * dy * row
        return float(p[0]), float(p[1]), float(p[2])

    @classmethod
    def from_array(
        cls,
        hu: np.ndarray,
        pixel_spacing_mm: tuple[float, float] = (0.7, 0.7),
        slice_spacing_mm: float = 2.5,
        series_uid: str = "2.25.1",
        description: str = "array",
    ) -> CTVolume:
        """An axial volume from an array (tests, phantoms): index 0 is the top slice."""
        n = hu.shape[0]
        z = -slice_spacing_mm * np.arange(n, dtype=np.float64)
        pos = np.stack([np.zeros(n), np.zeros(n), z], axis=1)
        uids = tuple(f"{series_uid}.{i + 1}" for i in range(n))
        return cls(
            hu=np.asarray(hu).astype(np.int16, copy=False),
            pixel_spacing_mm=(float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])),
            image_positions_mm=pos,
            orientation=np.array([1.0, 0, 0, 0, 1.0, 0]),
            sop_instance_uids=uids,
            series_uid=series_uid,
            description=description,
        )
