"""LIDC-IDRI reading XML -> per-slice ROI masks and per-nodule malignancy.

Rules (documented in training/README.md):

* Each ``readingSession`` is one radiologist. Each ``unblindedReadNodule`` with an outline
  (``roi`` with more than one ``edgeMap`` point) is filled slice by slice: the polygon
  through the edge points, boundary included; ``inclusion FALSE`` outlines are holes.
* Outlines of different readers are the same nodule when their 3-D masks overlap.
* Consensus mask (default): pixels outlined by at least ``min_readers`` (2) of the readers
  of that nodule. Pixels outlined by fewer readers, nodules outlined by fewer than
  ``min_readers`` readers, nodules < 3 mm (a single point) and non-nodules are marked
  "keep away" (code 4): never ROI, never Not-ROI.
* Malignancy: the median of the readers' ratings (1..5): median > 3 malignant (ratings 4-5),
  median < 3 benign (1-2), median == 3 indeterminate (code 3, excluded from the ROI classes).
* ``reader=i`` instead uses the outlines and rating of the i-th reading session only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lungct_viewer.core.errors import DataError
from lungct_viewer.core.study import CTVolume

from . import layout as L

#: Radius (mm) of the keep-away disc around single-point marks (nodules < 3 mm, non-nodules).
POINT_KEEP_AWAY_MM = 6.0


@dataclass
class ReaderNodule:
    reader: int
    nodule_id: str
    malignancy: int | None
    outlines: dict[int, np.ndarray] = field(default_factory=dict)  # slice index -> bool mask
    points: list[tuple[int, float, float]] = field(default_factory=list)  # (slice, x, y)


@dataclass
class Reading:
    readers: int
    nodules: list[ReaderNodule]  # outlined nodules (>= 3 mm)
    points: list[tuple[int, float, float]]  # small nodules and non-nodules


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if _tag(c) == name:
            return c
    return None


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _tag(c) == name]


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def find_xml(study_dir: Path) -> Path:
    """The LIDC reading XML of a study folder (the one with ``LidcReadMessage``)."""
    cands = sorted(Path(study_dir).rglob("*.xml"))
    for c in cands:
        try:
            with open(c, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            continue
        if b"LidcReadMessage" in head:
            return c
    raise DataError(f"No LIDC reading XML (LidcReadMessage) was found in {study_dir}: this study has no masks.")


def parse_reading(xml_path: Path, vol: CTVolume) -> Reading:
    """Parse an LIDC XML against a loaded volume (slices matched by SOP UID, else by z)."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"The LIDC reading file {xml_path} is not valid XML: {exc}") from exc
    if _tag(root) != "LidcReadMessage":
        raise DataError(f"The file {xml_path} is not an LIDC reading file (LidcReadMessage).")
    uid_to_index = {u: i for i, u in enumerate(vol.sop_instance_uids)}
    zs = vol.image_positions_mm[:, 2]
    tol = 0.5 * (vol.slice_spacing_mm or 1.0)

    def slice_of(el: ET.Element) -> int | None:
        uid = _text(_child(el, "imageSOP_UID"))
        if uid in uid_to_index:
            return uid_to_index[uid]
        z = _text(_child(el, "imageZposition"))
        if z:
            k = int(np.argmin(np.abs(zs - float(z))))
            if abs(zs[k] - float(z)) <= tol:
                return k
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
                ch = _child(nod, "characteristics")
                mal = _text(_child(ch, "malignancy")) if ch is not None else ""
                rn = ReaderNodule(r, _text(_child(nod, "noduleID")), int(mal) if mal else None)
                for roi in _children(nod, "roi"):
                    k = slice_of(roi)
                    if k is None:
                        continue
                    pts = [
                        (float(_text(_child(e, "xCoord"))), float(_text(_child(e, "yCoord"))))
                        for e in _children(roi, "edgeMap")
                    ]
                    if not pts:
                        continue
                    if len(pts) == 1:
                        rn.points.append((k, *pts[0]))
                        continue
                    m = _fill(pts, rows, cols)
                    incl = _text(_child(roi, "inclusion")).upper() != "FALSE"
                    cur = rn.outlines.get(k, np.zeros((rows, cols), bool))
                    rn.outlines[k] = (cur | m) if incl else (cur & ~_interior(pts, rows, cols))
                if rn.outlines:
                    nodules.append(rn)
                points.extend(rn.points)
            for nn in _children(sess, "nonNodule"):
                k = slice_of(nn)
                loc = _child(nn, "locus")
                if k is None or loc is None:
                    continue
                points.append((k, float(_text(_child(loc, "xCoord"))), float(_text(_child(loc, "yCoord")))))
    except ValueError as exc:
        raise DataError(f"The LIDC reading file {xml_path} has an unreadable value: {exc}") from exc
    return Reading(readers=len(sessions), nodules=nodules, points=points)


def _fill(pts: list[tuple[float, float]], rows: int, cols: int) -> np.ndarray:
    img = Image.new("1", (cols, rows), 0)
    ImageDraw.Draw(img).polygon([(x, y) for x, y in pts], fill=1, outline=1)
    return np.array(img, dtype=bool)


def _interior(pts: list[tuple[float, float]], rows: int, cols: int) -> np.ndarray:
    img = Image.new("1", (cols, rows), 0)
    ImageDraw.Draw(img).polygon([(x, y) for x, y in pts], fill=1, outline=0)
    return np.array(img, dtype=bool)


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
    """Group the readers' outlines into physical nodules (3-D overlap, transitive)."""
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


def build_masks(
    reading: Reading, vol: CTVolume, min_readers: int = 2, reader: int | None = None
) -> tuple[dict[int, np.ndarray], list[dict]]:
    """Label masks per slice index (codes of :mod:`training.layout`) and nodule records."""
    n, rows, cols = vol.shape
    masks: dict[int, np.ndarray] = {}

    def get(k: int) -> np.ndarray:
        if k not in masks:
            masks[k] = np.zeros((rows, cols), np.uint8)
        return masks[k]

    nods = reading.nodules
    need = min_readers
    if reader is not None:
        if not 0 <= reader < reading.readers:
            raise DataError(f"Reader {reader} does not exist (this reading has {reading.readers}).")
        nods = [x for x in nods if x.reader == reader]
        need = 1
    records = []
    # keep-away first so that consensus labels overwrite it
    r_px = POINT_KEEP_AWAY_MM / float(np.mean(vol.pixel_spacing_mm))
    yy, xx = np.mgrid[0:rows, 0:cols]
    for k, x, y in reading.points:
        get(k)[(yy - y) ** 2 + (xx - x) ** 2 <= r_px**2] = L.AVOID_CODE
    other = [x for x in reading.nodules if x not in nods]
    for o in other:  # other readers' outlines (per-reader mode): keep away
        for k, m in o.outlines.items():
            get(k)[m] = L.AVOID_CODE
    for gi, group in enumerate(cluster_nodules(nods)):
        readers = sorted({g.reader for g in group})
        ratings = [g.malignancy for g in group if g.malignancy is not None]
        # one rating per reader (a reader with two outlines in one group: their max rating)
        by_reader: dict[int, int] = {}
        for g in group:
            if g.malignancy is not None:
                by_reader[g.reader] = max(by_reader.get(g.reader, 0), g.malignancy)
        med = float(np.median(list(by_reader.values()))) if by_reader else None
        label = malignancy_label(med)
        slices = sorted({k for g in group for k in g.outlines})
        count: dict[int, np.ndarray] = {}
        for k in slices:
            c = np.zeros((rows, cols), np.int16)
            for r in readers:
                u = np.zeros((rows, cols), bool)
                for g in group:
                    if g.reader == r and k in g.outlines:
                        u |= g.outlines[k]
                c += u
            count[k] = c
        consensus = len(readers) >= need
        code = L.LABEL_TO_CODE[label]
        vox = 0
        cons_slices = []
        for k in slices:
            m = get(k)
            union = count[k] > 0
            core = count[k] >= need
            m[union & (m != L.MALIGNANT_CODE) & (m != L.BENIGN_CODE) & (m != L.INDETERMINATE_CODE)] = L.AVOID_CODE
            if consensus and core.any():
                m[core] = code
                vox += int(core.sum())
                cons_slices.append(k)
        rec = {
            "nodule": gi + 1,
            "reader_ids": [g.nodule_id for g in group],
            "readers": readers,
            "ratings": ratings,
            "median_malignancy": med,
            "label": label if consensus and cons_slices else "keep-away",
            "slices": cons_slices,
            "sop_instance_uids": [vol.sop_instance_uids[k] for k in cons_slices],
            "voxels": vox,
        }
        if cons_slices:
            ks = np.array(cons_slices)
            allm = np.stack([masks[k] == code for k in cons_slices])
            zz, yy2, xx2 = np.nonzero(allm)
            rec["bbox_px"] = [int(xx2.min()), int(yy2.min()), int(xx2.max()) + 1, int(yy2.max()) + 1]
            rec["centroid_px"] = [float(ks[zz].mean()), float(yy2.mean()), float(xx2.mean())]
        records.append(rec)
    return masks, records


def import_lidc(
    study_dir: str | Path,
    out_dir: str | Path,
    min_readers: int = 2,
    reader: int | None = None,
    patient_id: str | None = None,
) -> Path:
    """``import-lidc``: write the study's series record, masks and nodule labels."""
    from .ctio import load_ct, series_record

    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise DataError(f"The study folder {study_dir} does not exist.")
    xml_path = find_xml(study_dir)
    vol = load_ct(study_dir)
    reading = parse_reading(xml_path, vol)
    masks, records = build_masks(reading, vol, min_readers=min_readers, reader=reader)
    pid = patient_id or study_dir.name
    with L.staged_output(out_dir) as stage:
        pdir = L.copy_existing_patient(Path(out_dir), stage, pid)
        for old in list(pdir.glob("series_*")) + list(pdir.glob("masks_*")):
            old.unlink()
        info = series_record(vol, study_dir, pid)
        info.update(
            annotation="lidc-xml",
            annotation_file=str(xml_path.resolve()),
            mask_rule=(f"reader {reader}" if reader is not None else f"consensus of >= {min_readers} readers"),
            readers=reading.readers,
            nodules=records,
        )
        L.write_series(pdir, 0, info, {vol.sop_instance_uids[k]: m for k, m in masks.items()})
        L.update_patient_json(pdir, pid, contents=["whole-study"], source_lidc=str(study_dir.resolve()))
    return Path(out_dir) / pid


def reference_mask_to_volume(nifti_path: Path, vol: CTVolume) -> np.ndarray:
    """A 512x512xN NIfTI mask (LIDC reference) on the volume's grid: (n, rows, cols) bool.

    NIfTI voxel ``[i, j, k]`` is column ``i``, row ``j`` (the affine's in-plane axes are the
    DICOM column/row directions with RAS sign flips); slice ``k`` is matched by its z.
    """
    import nibabel as nib

    try:
        img = nib.load(str(nifti_path))
        data = np.asarray(img.dataobj) > 0
    except Exception as exc:
        raise DataError(f"The NIfTI file {nifti_path} could not be read: {exc}") from exc
    if data.shape[:2] != vol.shape[1:][::-1]:
        raise DataError(f"The mask {nifti_path} is {data.shape[:2]}, the study is {vol.shape[1:]}.")
    aff = img.affine
    out = np.zeros(vol.shape, bool)
    zs = vol.image_positions_mm[:, 2]
    for k in range(data.shape[2]):
        if not data[:, :, k].any():
            continue
        z = aff[2, 3] + aff[2, 2] * k
        idx = int(np.argmin(np.abs(zs - z)))
        out[idx] = data[:, :, k].T
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / s) if s else 1.0
