"""``import-nodules``: the LIDC NIfTI nodule crops with the labels of ``nodules.csv``.

Each crop is stored as HU int16 ``(z, rows, cols)`` with its binary mask, in-plane pixel
spacing ``(dy, dx)`` mm and slice spacing. Orientation: NIfTI voxel ``[i, j, k]`` is column
``i``, row ``j``, slice ``k`` (the crops' affines have the DICOM row/column directions with
the usual RAS sign flips), so ``data.transpose(2, 1, 0)`` is ``(slice, row, col)`` as in a
DICOM slice. The label is the csv's ``Diagnosis`` (``Benign``/``Malign``, the majority of
the LIDC readers' malignancy ratings; not pathology).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from lungct_viewer.core.errors import DataError

from . import layout as L

DIAGNOSIS = {"benign": "benign", "malign": "malignant", "malignant": "malignant"}


def read_csv(csv_path: Path) -> list[dict[str, str]]:
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"The nodule table {csv_path} could not be read: {exc}") from exc
    need = {"patient_id", "nodule_id", "Diagnosis"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"The nodule table {csv_path} is empty or lacks the columns {sorted(need)}.")
    return rows


def load_crop(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float], float]:
    """``(hu (z,r,c) int16, mask (z,r,c) uint8, (dy, dx), dz)`` of one crop; DataError if bad."""
    import nibabel as nib

    arrays = []
    zooms = None
    for p in (image_path, mask_path):
        if not p.is_file():
            raise DataError(f"The nodule file {p} is missing.")
        try:
            img = nib.load(str(p))
            a = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as exc:
            raise DataError(f"The NIfTI file {p} is damaged or unreadable: {exc}") from exc
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or min(a.shape) < 1:
            raise DataError(f"The NIfTI file {p} is not a 3-D volume (shape {a.shape}).")
        if not np.isfinite(a).all():
            raise DataError(f"The NIfTI file {p} holds non-finite values.")
        arrays.append(a)
        if zooms is None:
            zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    img, msk = arrays
    if img.shape != msk.shape:
        raise DataError(f"The mask {mask_path} is {msk.shape} but its image {image_path.name} is {img.shape}.")
    dx, dy, dz = zooms if len(zooms) == 3 else (*zooms, 1.0)
    if not (dx > 0 and dy > 0):
        raise DataError(f"The NIfTI file {image_path} has no valid voxel spacing.")
    hu = np.clip(np.rint(img.transpose(2, 1, 0)), -32768, 32767).astype(np.int16)
    mask = (msk.transpose(2, 1, 0) > 0.5).astype(np.uint8)
    return hu, mask, (dy, dx), dz


def import_nodules(
    src: str | Path, out_dir: str | Path, patients: list[str] | None = None, limit: int | None = None
) -> list[Path]:
    """Import crops (all, the listed patients, or the first ``limit`` patients)."""
    src = Path(src)
    csv_path = src / "nodules.csv"
    if not csv_path.is_file():
        raise DataError(f"The nodule table {csv_path} is missing.")
    rows = read_csv(csv_path)
    by_patient: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_patient[r["patient_id"]].append(r)
    pids = sorted(by_patient)
    if patients:
        missing = [p for p in patients if p not in by_patient]
        if missing:
            raise DataError(f"The nodule table {csv_path} has no patient {', '.join(missing)}.")
        pids = [p for p in pids if p in set(patients)]
    if limit:
        pids = pids[:limit]
    written = []
    with L.staged_output(out_dir) as stage:
        for pid in pids:
            pdir = L.copy_existing_patient(Path(out_dir), stage, pid)
            arrays: dict[str, np.ndarray] = {}
            meta = []
            for r in by_patient[pid]:
                diag = DIAGNOSIS.get(r["Diagnosis"].strip().lower())
                if diag is None:
                    raise DataError(
                        f"The nodule table {csv_path} has an unknown Diagnosis {r['Diagnosis']!r} "
                        f"for {pid} nodule {r['nodule_id']}."
                    )
                key = f"{int(r['nodule_id'])}"
                name = f"{pid}_R_{key}.nii.gz"
                hu, mask, spacing, dz = load_crop(src / "image" / name, src / "nodule_mask" / name)
                if not mask.any():
                    raise DataError(f"The nodule mask {src / 'nodule_mask' / name} is empty.")
                arrays[f"image_{key}"] = hu
                arrays[f"mask_{key}"] = mask
                mv = r.get("Malignancy_value", "")
                meta.append(
                    {
                        "key": key,
                        "nodule_id": key,
                        "file": name,
                        "label": diag,
                        "malignancy_value": int(mv) if mv.strip().isdigit() else None,
                        "diameter_mm": float(r["diameter_mm"]) if r.get("diameter_mm") else None,
                        "pixel_spacing_mm": list(spacing),
                        "slice_spacing_mm": dz,
                        "shape": list(hu.shape),
                    }
                )
            np.savez_compressed(pdir / "nodules.npz", **arrays)
            L.write_json(pdir / "nodules.json", {"patient_id": pid, "source": str(src.resolve()), "nodules": meta})
            L.update_patient_json(pdir, pid, contents=["nodule-crops"], source_crops=str(src.resolve()))
            written.append(Path(out_dir) / pid)
    return written
