"""Ground truth of whole studies for whole-study evaluation: nodules to find, marks to spare.

Sources (read straight from the study folders, no import step):

* **LIDC reading XML** (found inside the study folder): the readers' outlines are grouped into
  nodules by 3-D overlap (:func:`lungct_viewer.core.lidc.cluster_nodules`). A nodule to find is one
  outlined by at least ``min_readers`` (2) readers (so >= 3 mm); its box on each slice is the
  union of its readers' outlines. Its class is the median malignancy rating: malignant (> 3),
  benign (< 3) or indeterminate (= 3). Nodules outlined by one reader, nodules < 3 mm and
  non-nodules (single points) are *other marks*: a finding on them is reported separately.
* **Pascal VOC boxes** (Lung-PET-CT-Dx, ``<SOPInstanceUID>.xml``): one malignant tumour per
  study; a box drawn on another series of the study is carried to the slice at the same
  table position (within half a slice spacing).
* A study without annotations has no nodule: every finding there is a false positive.

Boxes are ``(x0, y0, x1, y1)`` native pixels, inclusive, keyed by slice index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungct_viewer.core.errors import DataError
from lungct_viewer.core.study import CTVolume

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class TruthNodule:
    """One nodule or tumour to find."""

    id: int
    label: str  # "malignant" | "benign" | "indeterminate"
    readers: int
    boxes: dict[int, Box] = field(repr=False)
    source: str = "lidc-xml"

    def diameter_mm(self, volume: CTVolume) -> float:
        """Largest in-plane extent of its boxes, mm."""
        dy, dx = volume.pixel_spacing_mm
        return max(max((b[2] - b[0] + 1) * dx, (b[3] - b[1] + 1) * dy) for b in self.boxes.values())

    @property
    def slices(self) -> tuple[int, int]:
        ks = sorted(self.boxes)
        return ks[0], ks[-1]


@dataclass(frozen=True)
class StudyTruth:
    """Nodules to find and other marks (``(slice, row, col)`` points) of one series."""

    nodules: list[TruthNodule]
    other_marks: list[tuple[int, float, float]]
    annotation: str  # "lidc-xml" | "voc-boxes" | "none"


def _union(a: Box | None, b: Box) -> Box:
    return b if a is None else (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def lidc_truth(study_dir: Path, volume: CTVolume, min_readers: int = 2) -> StudyTruth:
    from lungct_viewer.core.lidc import cluster_nodules, find_xml, malignancy_label, parse_reading

    reading = parse_reading(find_xml(study_dir), volume)
    nodules: list[TruthNodule] = []
    marks: list[tuple[int, float, float]] = [(k, y, x) for k, x, y in reading.points]
    for group in cluster_nodules(reading.nodules):
        readers = {n.reader for n in group}
        boxes: dict[int, Box] = {}
        for n in group:
            for k, m in n.outlines.items():
                ys, xs = np.nonzero(m)
                if len(ys):
                    boxes[k] = _union(boxes.get(k), (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
        if not boxes:
            continue
        if len(readers) < min_readers:
            for k, b in boxes.items():
                marks.append((k, (b[1] + b[3]) / 2.0, (b[0] + b[2]) / 2.0))
            continue
        by_reader: dict[int, int] = {}
        for n in group:
            if n.malignancy is not None:
                by_reader[n.reader] = max(by_reader.get(n.reader, 0), n.malignancy)
        median = float(np.median(list(by_reader.values()))) if by_reader else None
        nodules.append(TruthNodule(len(nodules) + 1, malignancy_label(median), len(readers), boxes, "lidc-xml"))
    return StudyTruth(nodules, marks, "lidc-xml")


def voc_truth(annotation_dir: Path, volume: CTVolume, study_dir: Path) -> StudyTruth:
    from lungct_viewer.core.dicom import scan_folder
    from lungct_viewer.core.geometry import slice_normal

    from .voc import parse_voc

    files = sorted(Path(annotation_dir).glob("*.xml"))
    if not files:
        raise DataError(f"No VOC annotation files (*.xml) were found in {annotation_dir}.")
    normal = volume.normal
    sop_pos: dict[str, float] = {}
    for s in scan_folder(study_dir).series:
        for h in s.headers:
            if h.position is not None and h.orientation is not None and slice_normal(h.orientation) is not None:
                sop_pos[h.sop_uid] = float(np.dot(h.position, normal))
    pos = volume.slice_positions_mm
    tol = 0.5 * (volume.slice_spacing_mm or 1.0)
    boxes: dict[int, Box] = {}
    for f in files:
        z = sop_pos.get(f.stem)
        if z is None:
            continue
        k = int(np.argmin(np.abs(pos - z)))
        if abs(pos[k] - z) > tol:
            continue
        for b in parse_voc(f):
            boxes[k] = _union(boxes.get(k), tuple(int(v) for v in b["box"]))  # type: ignore[arg-type]
    nodules = [TruthNodule(1, "malignant", 1, boxes, "voc-boxes")] if boxes else []
    return StudyTruth(nodules, [], "voc-boxes")


def study_truth(
    study_dir: Path, volume: CTVolume, annotation_dir: Path | None = None, min_readers: int = 2
) -> StudyTruth:
    """Ground truth of ``volume`` (a series of ``study_dir``): VOC boxes when
    ``annotation_dir`` is given, else the LIDC XML in the folder if there is one, else none."""
    if annotation_dir is not None:
        return voc_truth(annotation_dir, volume, study_dir)
    if any(Path(study_dir).rglob("*.xml")):
        return lidc_truth(Path(study_dir), volume, min_readers)
    return StudyTruth([], [], "none")
