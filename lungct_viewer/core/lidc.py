"""LIDC-IDRI reading XML: the radiologists' outlines on a loaded series (Qt-free).

One parser, used by the viewer (reference annotations, :mod:`.references`) and by the
``training`` package (masks and ground truth). An LIDC reading file (``LidcReadMessage``)
holds one ``readingSession`` per radiologist; each ``unblindedReadNodule`` (a nodule of 3 mm
or more) carries its malignancy rating and one ``roi`` per slice, an outline of ``edgeMap``
points in pixel coordinates (x = column, y = row). Nodules under 3 mm and non-nodules are
single points.

Rules:

* Each outline is filled slice by slice: the polygon through the edge points, boundary
  included; ``inclusion FALSE`` outlines are holes.
* An ``roi`` goes on the slice with its ``imageSOP_UID``, else on the slice at its
  ``imageZposition`` (within half a slice spacing); an ``roi`` that fits no slice is counted
  in :attr:`Reading.unplaced`.
* Outlines of different readers are the same nodule when their 3-D masks overlap
  (:func:`cluster_nodules`).
* Malignancy: the median of the readers' ratings (1..5): median > 3 malignant (ratings 4-5),
  median < 3 benign (1-2), median == 3 indeterminate (:func:`malignancy_label`).

Errors are :class:`~.errors.DataError` with a sentence naming the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .errors import DataError
from .study import CTVolume

#: The root element of an LIDC reading file.
ROOT_TAG = "LidcReadMessage"


@dataclass
class ReaderNodule:
    """One reader's outline of one nodule: a full-size bool mask per slice index."""

    reader: int  # 0-based reading session
    nodule_id: str
    malignancy: int | None
    outlines: dict[int, np.ndarray] = field(default_factory=dict)  # slice index -> bool mask
    points: list[tuple[int, float, float]] = field(default_factory=list)  # (slice, x, y)


@dataclass
class Reading:
    """What an LIDC reading file says about one series."""

    readers: int
    nodules: list[ReaderNodule]  # outlined nodules (>= 3 mm)
    points: list[tuple[int, float, float]]  # small nodules and non-nodules: (slice, x, y)
    series_uid: str = ""  # the SeriesInstanceUid of the file's header ("" when absent)
    #: outlines whose slice was found by its SOP Instance UID
    placed_by_uid: int = 0
    #: outlines that fit no slice of the series (neither by UID nor by position)
    unplaced: int = 0


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _child(el: ET.Element | None, name: str) -> ET.Element | None:
    if el is None:
        return None
    for c in el:
        if _tag(c) == name:
            return c
    return None


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _tag(c) == name]


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def is_lidc_xml(path: str | Path) -> bool:
    """True when ``path`` starts like an LIDC reading file (its first 4 kB name the root)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return ROOT_TAG.encode() in head


def find_xml(study_dir: str | Path) -> Path:
    """The LIDC reading XML of a study folder (the first one with ``LidcReadMessage``)."""
    for c in sorted(Path(study_dir).rglob("*.xml")):
        if is_lidc_xml(c):
            return c
    raise DataError(f"No LIDC reading XML (LidcReadMessage) was found in {study_dir}: this study has no masks.")


def fill_polygon(points: Sequence[tuple[float, float]], rows: int, cols: int, outline: bool = True) -> np.ndarray:
    """``(rows, cols)`` bool: the pixels inside the polygon through ``(x, y)`` = ``(column,
    row)`` points, pixel centres at whole coordinates; the boundary is included unless
    ``outline`` is False."""
    img = Image.new("1", (cols, rows), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in points], fill=1, outline=1 if outline else 0)
    return np.array(img, dtype=bool)


def parse_reading(xml_path: str | Path, vol: CTVolume) -> Reading:
    """Parse an LIDC reading file against a loaded series (module docstring)."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"The LIDC reading file {xml_path} is not valid XML: {exc}") from exc
    if _tag(root) != ROOT_TAG:
        raise DataError(f"The file {xml_path} is not an LIDC reading file (LidcReadMessage).")
    uid_to_index = {u: i for i, u in enumerate(vol.sop_instance_uids)}
    zs = vol.image_positions_mm[:, 2]
    tol = 0.5 * (vol.slice_spacing_mm or 1.0)
    counts = {"uid": 0, "none": 0}

    def slice_of(el: ET.Element) -> int | None:
        uid = _text(_child(el, "imageSOP_UID"))
        if uid in uid_to_index:
            counts["uid"] += 1
            return uid_to_index[uid]
        z = _text(_child(el, "imageZposition"))
        if z:
            k = int(np.argmin(np.abs(zs - float(z))))
            if abs(zs[k] - float(z)) <= tol:
                return k
        counts["none"] += 1
        return None

    rows, cols = vol.shape[1:]
    nodules: list[ReaderNodule] = []
    points: list[tuple[int, float, float]] = []
    sessions = _children(root, "readingSession")
    if not sessions:
        raise DataError(f"The LIDC reading file {xml_path} holds no readingSession.")
    try:
        for r, sess in enumerate(sessions):
            for nod in _children(sess, "unblindedReadNodule"):
                mal = _text(_child(_child(nod, "characteristics"), "malignancy"))
                rn = ReaderNodule(r, _text(_child(nod, "noduleID")), int(mal) if mal else None)
                for roi in _children(nod, "roi"):
                    pts = [
                        (float(_text(_child(e, "xCoord"))), float(_text(_child(e, "yCoord"))))
                        for e in _children(roi, "edgeMap")
                    ]
                    if not pts:
                        continue
                    k = slice_of(roi)
                    if k is None:
                        continue
                    if len(pts) == 1:
                        rn.points.append((k, *pts[0]))
                        continue
                    m = fill_polygon(pts, rows, cols)
                    incl = _text(_child(roi, "inclusion")).upper() != "FALSE"
                    cur = rn.outlines.get(k, np.zeros((rows, cols), bool))
                    rn.outlines[k] = (cur | m) if incl else (cur & ~fill_polygon(pts, rows, cols, outline=False))
                if rn.outlines:
                    nodules.append(rn)
                points.extend(rn.points)
            for nn in _children(sess, "nonNodule"):
                loc = _child(nn, "locus")
                if loc is None:
                    continue
                k = slice_of(nn)
                if k is None:
                    continue
                points.append((k, float(_text(_child(loc, "xCoord"))), float(_text(_child(loc, "yCoord")))))
    except ValueError as exc:
        raise DataError(f"The LIDC reading file {xml_path} has an unreadable value: {exc}") from exc
    series_uid = _text(_child(_child(root, "ResponseHeader"), "SeriesInstanceUid"))
    return Reading(
        readers=len(sessions),
        nodules=nodules,
        points=points,
        series_uid=series_uid,
        placed_by_uid=counts["uid"],
        unplaced=counts["none"],
    )


def malignancy_label(median: float | None) -> str:
    """``malignant`` for median rating > 3, ``benign`` for < 3, else ``indeterminate``."""
    if median is None:
        return "indeterminate"
    if median > 3:
        return "malignant"
    if median < 3:
        return "benign"
    return "indeterminate"


def _overlap(a: ReaderNodule, b: ReaderNodule) -> bool:
    return any(k in b.outlines and np.any(a.outlines[k] & b.outlines[k]) for k in a.outlines)


def cluster_nodules(nodules: list[ReaderNodule]) -> list[list[ReaderNodule]]:
    """Group the readers' outlines into physical nodules (3-D overlap, transitive), ordered
    by their first slice."""
    parent = list(range(len(nodules)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(nodules)):
        for j in range(i + 1, len(nodules)):
            if find(i) != find(j) and _overlap(nodules[i], nodules[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[ReaderNodule]] = {}
    for i, n in enumerate(nodules):
        groups.setdefault(find(i), []).append(n)
    return sorted(groups.values(), key=lambda g: min(min(n.outlines) for n in g))
