"""LIDC-IDRI reading XML -> per-slice ROI masks and per-nodule malignancy.

The XML is parsed by :mod:`lungct_viewer.core.lidc` (the one parser, shared with the
viewer's reference annotations). Rules (documented in training/README.md):

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

from pathlib import Path

import numpy as np

from lungct_viewer.core.errors import DataError
from lungct_viewer.core.lidc import (  # one parser, in core (the viewer draws the same outlines)
    ReaderNodule,
    Reading,
    cluster_nodules,
    find_xml,
    malignancy_label,
    parse_reading,
)
from lungct_viewer.core.study import CTVolume

from . import layout as L

#: Radius (mm) of the keep-away disc around single-point marks (nodules < 3 mm, non-nodules).
POINT_KEEP_AWAY_MM = 6.0

__all__ = [
    "POINT_KEEP_AWAY_MM",
    "ReaderNodule",
    "Reading",
    "build_masks",
    "cluster_nodules",
    "dice",
    "find_xml",
    "import_lidc",
    "malignancy_label",
    "parse_reading",
    "reference_mask_to_volume",
]


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
