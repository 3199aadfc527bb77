"""What the DICOM writers take: plain records, checked when they are made.

Everything here is independent of how the results were computed: the caller gives the source
files of the analysed series (in the volume's slice order, index 0 = head, as
:class:`~lungct_viewer.core.study.CTVolume`), the lesions with their masks on that grid (or
one suspicious-region mask when lesions are off), the patient-level call and the algorithm's
identity. Masks are ``(n_slices, rows, cols)`` boolean arrays; measurements are taken as
given (the writers compute none).

Every check raises :class:`~lungct_viewer.core.errors.ExportError` with a sentence for the
person at the screen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ... import __version__
from ..errors import ExportError

LABELS = ("benign", "malignant")
#: A lesion's texture as the SR codes it (None: not assessed).
TEXTURES = ("solid", "ground_glass", None)
ALGORITHM_NAME = "LungCT Viewer"


def _fraction(value: object, what: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ExportError(f"The {what} must be a number between 0 and 1, not {value!r}.") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ExportError(f"The {what} must be between 0 and 1, not {v!r}.")
    return v


def _positive(value: object, what: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ExportError(f"The {what} must be a number, not {value!r}.") from None
    if not (math.isfinite(v) and v > 0.0):
        raise ExportError(f"The {what} must be a positive number of mm, not {v!r}.")
    return v


def _mask(mask: object, what: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise ExportError(
            f"The mask of {what} must be a 3-D array (slices, rows, columns), but it has "
            f"{arr.ndim} dimension{'s' if arr.ndim != 1 else ''}."
        )
    if arr.dtype != bool:
        if arr.dtype.kind not in "biu" or (arr.size and not np.isin(arr, (0, 1)).all()):
            raise ExportError(f"The mask of {what} must hold only 0/1 or True/False values.")
        arr = arr.astype(bool)
    if not arr.any():
        raise ExportError(f"The mask of {what} is empty (no voxel), so it cannot be drawn in a DICOM Segmentation.")
    return arr


@dataclass(frozen=True, eq=False)
class LesionRecord:
    """One reported lesion.

    ``id`` is the lesion's 1-based number as the report shows it; ``label`` the call
    (``"benign"`` or ``"malignant"``); ``malignant_fraction`` the share of its ROI patches
    voting malignant; ``suspicion`` the second reading's score in [0, 1] (None when there
    is none); ``texture`` ``"solid"`` or ``"ground_glass"`` (:mod:`~lungct_viewer.core.texture`;
    None when not assessed); ``long_axis_mm`` and ``short_axis_mm`` its axes on the slice where it is longest
    (:mod:`~lungct_viewer.core.nodule_size`); ``volume_mm3`` the volume; ``mask``
    ``(n_slices, rows, cols)`` on the analysed series' grid (index 0 = head). The mask is
    the lesion's location in the SEG, and the SR refers to its segment (TID 1411 takes one
    location per group, so no separate centre point is stored).
    """

    id: int
    label: str
    malignant_fraction: float
    suspicion: float | None
    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    mask: np.ndarray = field(repr=False)
    texture: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, (int, np.integer)) or self.id < 1:
            raise ExportError(f"A lesion number must be a whole number from 1, not {self.id!r}.")
        what = f"lesion {self.id}"
        if self.label not in LABELS:
            raise ExportError(f"The call of {what} must be 'benign' or 'malignant', not {self.label!r}.")
        if self.texture not in TEXTURES:
            raise ExportError(f"The texture of {what} must be 'solid', 'ground_glass' or none, not {self.texture!r}.")
        set_ = object.__setattr__
        set_(self, "id", int(self.id))
        set_(self, "malignant_fraction", _fraction(self.malignant_fraction, f"malignant vote fraction of {what}"))
        set_(self, "suspicion", _fraction(self.suspicion, f"suspicion score of {what}", True))
        set_(self, "long_axis_mm", _positive(self.long_axis_mm, f"long axis of {what}"))
        set_(self, "short_axis_mm", _positive(self.short_axis_mm, f"short axis of {what}"))
        if self.short_axis_mm > self.long_axis_mm:
            raise ExportError(f"The short axis of {what} is longer than its long axis.")
        set_(self, "volume_mm3", _positive(self.volume_mm3, f"volume of {what}"))
        set_(self, "mask", _mask(self.mask, what))


@dataclass(frozen=True, eq=False)
class SuspiciousRegion:
    """Everything the network called tumour, as one region (when lesions are off).

    ``mask`` is ``(n_slices, rows, cols)`` on the analysed series' grid; ``volume_mm3`` its
    volume.
    """

    mask: np.ndarray = field(repr=False)
    volume_mm3: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", _mask(self.mask, "the suspicious region"))
        object.__setattr__(self, "volume_mm3", _positive(self.volume_mm3, "volume of the suspicious region"))


@dataclass(frozen=True)
class PatientCall:
    """The patient-level call: ``label`` (``"benign"`` or ``"malignant"``), the malignant
    vote fraction over all findings and the voting threshold it was compared with."""

    label: str
    malignant_fraction: float
    threshold: float

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ExportError(
                f"The patient-level call must be 'benign' or 'malignant', not {self.label!r} "
                "(a study without findings has nothing to export)."
            )
        object.__setattr__(
            self,
            "malignant_fraction",
            _fraction(self.malignant_fraction, "patient's malignant vote fraction"),
        )
        object.__setattr__(self, "threshold", _fraction(self.threshold, "voting threshold"))


@dataclass(frozen=True)
class AlgorithmInfo:
    """Who made the results: the program's name and version and the model's version."""

    model_version: str
    name: str = ALGORITHM_NAME
    version: str = __version__

    def __post_init__(self) -> None:
        for what, v in (
            ("model version", self.model_version),
            ("algorithm name", self.name),
            ("software version", self.version),
        ):
            if not isinstance(v, str) or not v.strip():
                raise ExportError(f"The {what} must be given for the DICOM export.")
            if len(v) > 64 or "\\" in v:
                raise ExportError(f"The {what} {v!r} is longer than DICOM allows (64 characters).")


@dataclass(frozen=True, eq=False)
class SeriesResults:
    """The results of one analysed series, as the DICOM writers take them.

    Give ``lesions`` (one segment each) or ``region`` (one "suspicious region" segment when
    lesions are off), not both. ``source_files`` are the series' DICOM files in the volume's
    slice order; ``source_sop_instance_uids`` (optional, e.g.
    :attr:`CTVolume.sop_instance_uids <lungct_viewer.core.study.CTVolume.sop_instance_uids>`)
    is checked against them.
    """

    source_files: Sequence[str | os.PathLike[str]]
    call: PatientCall
    algorithm: AlgorithmInfo
    lesions: Sequence[LesionRecord] = ()
    region: SuspiciousRegion | None = None
    source_sop_instance_uids: Sequence[str] | None = None

    def __post_init__(self) -> None:
        files = tuple(os.fspath(f) for f in self.source_files)
        if not files:
            raise ExportError("No source images were given for the DICOM export.")
        object.__setattr__(self, "source_files", files)
        lesions = tuple(self.lesions)
        for les in lesions:
            if not isinstance(les, LesionRecord):
                raise ExportError(f"Lesions must be LesionRecord objects, not {type(les).__name__}.")
        if self.region is not None and not isinstance(self.region, SuspiciousRegion):
            raise ExportError(f"The region must be a SuspiciousRegion, not {type(self.region).__name__}.")
        if lesions and self.region is not None:
            raise ExportError("Give either the lesions or one suspicious region for the DICOM export, not both.")
        if not lesions and self.region is None:
            raise ExportError(
                "There is no lesion to export: a DICOM Segmentation needs at least one lesion "
                "(or the suspicious region when lesions are off)."
            )
        ids = [les.id for les in lesions]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ExportError(
                f"Lesion number{'s' if len(dup) > 1 else ''} {', '.join(map(str, dup))} "
                f"appear{'' if len(dup) > 1 else 's'} more than once; each lesion needs its own "
                "number."
            )
        object.__setattr__(self, "lesions", tuple(sorted(lesions, key=lambda les: les.id)))
        if self.source_sop_instance_uids is not None:
            uids = tuple(str(u) for u in self.source_sop_instance_uids)
            if len(uids) != len(files):
                raise ExportError(
                    f"{len(files)} source files were given with {len(uids)} SOP Instance UIDs; "
                    "there must be one per slice."
                )
            object.__setattr__(self, "source_sop_instance_uids", uids)
        if not isinstance(self.call, PatientCall):
            raise ExportError(f"The call must be a PatientCall, not {type(self.call).__name__}.")
        if not isinstance(self.algorithm, AlgorithmInfo):
            raise ExportError(f"The algorithm must be an AlgorithmInfo, not {type(self.algorithm).__name__}.")

    @property
    def masks(self) -> list[tuple[str, np.ndarray]]:
        """``(what, mask)`` for each segment, in segment order."""
        if self.region is not None:
            return [("the suspicious region", self.region.mask)]
        return [(f"lesion {les.id}", les.mask) for les in self.lesions]
