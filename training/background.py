"""``import-study``: a whole study with nothing annotated, as background (Not-ROI) only.

For chest CTs read as having no nodule (a normal chest, a pneumonia): every window away from
the body's edge is lung, vessel, airway, mediastinum or chest wall, the Not-ROI class. The
study's series record lists no nodule and its masks file is empty, so ``patches`` samples
Not-ROI windows from it exactly as from the background of an annotated study.
"""

from __future__ import annotations

from pathlib import Path

from lungct_viewer.core.errors import DataError

from . import layout as L


def import_study(
    study_dir: str | Path, out_dir: str | Path, patient_id: str | None = None, note: str = "no nodule annotated"
) -> Path:
    from .ctio import load_ct, series_record

    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise DataError(f"The study folder {study_dir} does not exist.")
    vol = load_ct(study_dir)
    pid = patient_id or study_dir.name
    with L.staged_output(out_dir) as stage:
        pdir = L.copy_existing_patient(Path(out_dir), stage, pid)
        for old in list(pdir.glob("series_*")) + list(pdir.glob("masks_*")):
            old.unlink()
        info = series_record(vol, study_dir, pid)
        info.update(annotation="none", annotation_note=note, nodules=[])
        L.write_series(pdir, 0, info, {})
        L.update_patient_json(pdir, pid, contents=["whole-study"], source_study=str(study_dir.resolve()))
    return Path(out_dir) / pid
