"""The project's training layout: one folder per patient under a data root.

::

    ROOT/
      <patient_id>/
        patient.json               patient id, sources, what the folder holds
        series_<n>.json            a whole study's series: source folder, SeriesInstanceUID,
                                   SOPInstanceUIDs (head to feet), spacing, annotated nodules
        masks_<n>.npz              per-slice label masks keyed by SOPInstanceUID (only slices
                                   that carry a mark), uint8 (rows, cols), codes below
        nodules.npz / nodules.json nodule crops (HU int16 (z, rows, cols) + mask) and labels

Mask codes (:data:`MASK_CODES`): 0 nothing, 1 benign nodule, 2 malignant nodule,
3 indeterminate nodule (left out of the ROI classes), 4 "keep away" (marks that are not a
consensus ROI: single readers, nodules < 3 mm, non-nodules, the corners of VOC boxes).
Not-ROI patches are only taken where the whole 50 x 50 window holds code 0.

Every writer stages its output in a temporary folder inside ``ROOT`` and renames the
patient folders into place only when everything succeeded, so a failure leaves no partial
output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lungct_viewer.core.errors import DataError

BACKGROUND, BENIGN_CODE, MALIGNANT_CODE, INDETERMINATE_CODE, AVOID_CODE = 0, 1, 2, 3, 4
MASK_CODES = {
    BACKGROUND: "background",
    BENIGN_CODE: "benign",
    MALIGNANT_CODE: "malignant",
    INDETERMINATE_CODE: "indeterminate",
    AVOID_CODE: "keep-away",
}
LABEL_TO_CODE = {"benign": BENIGN_CODE, "malignant": MALIGNANT_CODE, "indeterminate": INDETERMINATE_CODE}


@contextlib.contextmanager
def staged_output(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging folder; on success move each patient folder in it into ``out_dir``.

    An existing patient folder of the same name is replaced. On error the staging folder is
    removed and ``out_dir`` is left untouched.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield stage
        for child in sorted(stage.iterdir()):
            target = out / child.name
            old = None
            if target.exists():
                old = out / f".old-{child.name}-{os.getpid()}"
                os.replace(target, old)
            os.replace(child, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"The training file {path} could not be read: {exc}") from exc


def update_patient_json(pdir: Path, patient_id: str, **entries: Any) -> None:
    pj = pdir / "patient.json"
    info = read_json(pj) if pj.exists() else {"patient_id": patient_id, "contents": []}
    for k, v in entries.items():
        if k == "contents":
            info["contents"] = sorted(set(info.get("contents", [])) | set(v))
        else:
            info[k] = v
    write_json(pj, info)


def write_series(pdir: Path, index: int, series_info: dict[str, Any], masks: dict[str, np.ndarray]) -> None:
    """Write ``series_<index>.json`` and ``masks_<index>.npz`` (masks keyed by SOP UID)."""
    pdir.mkdir(parents=True, exist_ok=True)
    write_json(pdir / f"series_{index}.json", series_info)
    keep = {uid: m.astype(np.uint8) for uid, m in masks.items() if np.any(m)}
    np.savez_compressed(pdir / f"masks_{index}.npz", **keep)


def copy_existing_patient(out_dir: Path, stage: Path, patient_id: str) -> Path:
    """Start the staged patient folder from the existing one (other imports are kept)."""
    src = Path(out_dir) / patient_id
    dst = stage / patient_id
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.mkdir(parents=True)
    return dst


def list_patients(root: str | os.PathLike[str]) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"The training data folder {root} does not exist.")
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "patient.json").exists())


def iter_series(pdir: Path) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """Yield ``(series_info, masks_by_sop_uid)`` for each whole series of a patient."""
    for sj in sorted(pdir.glob("series_*.json")):
        idx = sj.stem.split("_", 1)[1]
        info = read_json(sj)
        mp = pdir / f"masks_{idx}.npz"
        if not mp.exists():
            raise DataError(f"The series {sj} has no masks file ({mp.name}).")
        try:
            with np.load(mp) as z:
                masks = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"The masks file {mp} could not be read: {exc}") from exc
        yield info, masks


def read_nodules(pdir: Path) -> list[dict[str, Any]]:
    """Nodule crops of a patient: dicts with ``image`` (z, rows, cols) HU, ``mask``, metadata."""
    jp, npzp = pdir / "nodules.json", pdir / "nodules.npz"
    if not jp.exists():
        return []
    meta = read_json(jp)
    try:
        with np.load(npzp) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"The nodule crops file {npzp} could not be read: {exc}") from exc
    out = []
    for m in meta["nodules"]:
        key = m["key"]
        if f"image_{key}" not in arrays or f"mask_{key}" not in arrays:
            raise DataError(f"The nodule crops file {npzp} lacks the arrays of nodule {key}.")
        out.append({**m, "image": arrays[f"image_{key}"], "mask": arrays[f"mask_{key}"]})
    return out
