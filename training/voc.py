"""``import-voc``: Lung-PET-CT-Dx Pascal VOC boxes as malignant ROIs.

Each annotation file is named ``<SOPInstanceUID>.xml`` and boxes the tumour on that slice
(``xmin ymin xmax ymax``, pixels, inclusive). Every class of the collection (A
adenocarcinoma, B small-cell, E large-cell, G squamous) is a malignant tumour. Boxes are
placed on every CT series of the study: a box drawn on one series is carried to the slice of
another series at the same table position (z within half a slice spacing).

Masks: the ellipse inscribed in the box is malignant (code 2); the rest of the box is
"keep away" (code 4) so that box corners, mostly lung, are neither ROI nor Not-ROI.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from lungct_viewer.core.errors import DataError

from . import layout as L

MALIGNANT_CLASSES = {"A", "B", "E", "G"}


def parse_voc(path: Path) -> list[dict]:
    """Boxes of one VOC file: dicts with ``name`` and ``box`` (x0, y0, x1, y1) inclusive."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"The annotation file {path} is not valid XML: {exc}") from exc
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        name = (obj.findtext("name") or "").strip()
        if bb is None:
            raise DataError(f"The annotation file {path} has an object without a bndbox.")
        try:
            box = tuple(int(round(float(bb.findtext(k)))) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as exc:
            raise DataError(f"The annotation file {path} has an unreadable box: {exc}") from exc
        if box[2] < box[0] or box[3] < box[1]:
            raise DataError(f"The annotation file {path} has an empty box {box}.")
        out.append({"name": name, "box": box})
    if not out:
        raise DataError(f"The annotation file {path} holds no box.")
    return out


def import_voc(
    study_dir: str | Path,
    ann_dir: str | Path,
    out_dir: str | Path,
    patient_id: str | None = None,
    series: list[str] | None = None,
) -> Path:
    from .ctio import list_series, load_ct, series_record

    study_dir, ann_dir = Path(study_dir), Path(ann_dir)
    if not study_dir.is_dir():
        raise DataError(f"The study folder {study_dir} does not exist.")
    files = sorted(ann_dir.glob("*.xml")) if ann_dir.is_dir() else []
    if not files:
        raise DataError(f"No VOC annotation files (*.xml) were found in {ann_dir}: this study has no masks.")
    anns = {f.stem: parse_voc(f) for f in files}
    uids = [u for u, _ in list_series(study_dir)]
    if series:
        uids = [u for u in uids if u in set(series)]
    if not uids:
        raise DataError(f"No CT series were found in {study_dir}.")
    vols = [load_ct(study_dir, u) for u in uids]
    # where is each annotated slice (series index, slice index, z)?
    located: dict[str, tuple[int, int, float]] = {}
    for vi, v in enumerate(vols):
        for k, sop in enumerate(v.sop_instance_uids):
            if sop in anns:
                located[sop] = (vi, k, float(v.slice_positions_mm[k]))
    unplaced = sorted(set(anns) - set(located))
    pid = patient_id or study_dir.name
    with L.staged_output(out_dir) as stage:
        pdir = L.copy_existing_patient(Path(out_dir), stage, pid)
        for old in list(pdir.glob("series_*")) + list(pdir.glob("masks_*")):
            old.unlink()
        for vi, v in enumerate(vols):
            n, rows, cols = v.shape
            pos = v.slice_positions_mm
            tol = 0.5 * (v.slice_spacing_mm or 1.0)
            masks: dict[int, np.ndarray] = {}
            boxes = []
            for sop, (svi, sk, z) in located.items():
                k = sk if svi == vi else int(np.argmin(np.abs(pos - z)))
                if svi != vi and abs(pos[k] - z) > tol:
                    continue
                m = masks.setdefault(k, np.zeros((rows, cols), np.uint8))
                for b in anns[sop]:
                    if b["name"] and b["name"].upper() not in MALIGNANT_CLASSES:
                        raise DataError(
                            f"The annotation file {ann_dir / (sop + '.xml')} has an unknown class {b['name']!r}."
                        )
                    x0, y0, x1, y1 = b["box"]
                    if x1 >= cols or y1 >= rows:
                        raise DataError(
                            f"The box {b['box']} of {ann_dir / (sop + '.xml')} lies outside the {cols}x{rows} image."
                        )
                    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
                    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
                    ry, rx = max((y1 - y0 + 1) / 2, 0.5), max((x1 - x0 + 1) / 2, 0.5)
                    ell = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
                    sub = m[y0 : y1 + 1, x0 : x1 + 1]
                    sub[(sub == 0)] = L.AVOID_CODE
                    sub[ell] = L.MALIGNANT_CODE
                    boxes.append(
                        {
                            "slice": k,
                            "sop_instance_uid": v.sop_instance_uids[k],
                            "box_px": [x0, y0, x1 + 1, y1 + 1],
                            "class": b["name"],
                            "from_series": vols[svi].series_uid,
                            "carried": svi != vi,
                        }
                    )
            info = series_record(v, study_dir, pid)
            slices = sorted({b["slice"] for b in boxes})
            info.update(
                annotation="voc-boxes",
                annotation_dir=str(ann_dir.resolve()),
                boxes=boxes,
                nodules=[
                    {
                        "nodule": 1,
                        "label": "malignant",
                        "slices": slices,
                        "sop_instance_uids": [v.sop_instance_uids[k] for k in slices],
                    }
                ]
                if slices
                else [],
                unplaced_annotations=unplaced,
            )
            L.write_series(pdir, vi, info, {v.sop_instance_uids[k]: m for k, m in masks.items()})
        L.update_patient_json(pdir, pid, contents=["whole-study"], source_voc=str(study_dir.resolve()))
    return Path(out_dir) / pid
