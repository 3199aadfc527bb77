"""The synthetic phantom in the training layout (tests and quick experiments).

:func:`import_phantom` writes a :func:`lungct_viewer.core.phantom.phantom_volume` as a DICOM
series (outside the layout) and its per-pixel labels as the layout's masks: benign (1) and
malignant (2) nodule codes are the phantom's classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import layout as L


def import_phantom(
    out_dir: Path, dicom_dir: Path, patient_id: str, seed: int, n_slices: int = 12, size: int = 192
) -> Path:
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    from .ctio import load_ct, series_record

    ph = phantom_volume(seed=seed, n_slices=n_slices, size=size)
    series_dir = Path(dicom_dir) / patient_id
    write_phantom_dicom(ph, series_dir)
    vol = load_ct(series_dir)
    by_uid = {u: ph.labels[k].astype(np.uint8) for k, u in enumerate(ph.volume.sop_instance_uids)}
    masks = {u: by_uid[u] for u in vol.sop_instance_uids}
    nodules = []
    for i, n in enumerate(ph.nodules):
        code = int(n.cls)
        slices = [k for k, u in enumerate(vol.sop_instance_uids) if (masks[u] == code).any()]
        nodules.append(
            {
                "nodule": i + 1,
                "label": L.MASK_CODES[code],
                "slices": slices,
                "sop_instance_uids": [vol.sop_instance_uids[k] for k in slices],
            }
        )
    with L.staged_output(out_dir) as stage:
        pdir = L.copy_existing_patient(Path(out_dir), stage, patient_id)
        info = series_record(vol, series_dir, patient_id)
        info.update(annotation="phantom", nodules=nodules)
        L.write_series(pdir, 0, info, masks)
        L.update_patient_json(pdir, patient_id, contents=["whole-study"], source_phantom=seed)
    return Path(out_dir) / patient_id
