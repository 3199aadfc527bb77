"""``report.json``: one study's reading as plain JSON (the viewer and ``analyze`` alike).

No patient name, patient ID or file path is written unless the caller opts in
(``include_identifiers``): the study and series UIDs and the model version identify the
reading. Slices are given both as ``slice_number`` (1 = the top slice, as on screen and in
the PNG file names) and ``slice_index`` (the same minus one).

``findings`` holds one entry per slice of every lesion that passes the second reading (its
box, centroid, area); ``lesions`` the passing lesions in 3-D with their votes, suspicion, the
features the second reading scored, texture and whether they vote in the patient call;
``candidates`` the lesions below the suspicion threshold, which are not findings.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any

from .. import RESEARCH_NOTICE, __version__
from .atomic import write_json_atomic
from .candidates import FEATURE_NAMES
from .lesions import Lesion
from .session import ReadingSession
from .voting import enters_call

REPORT_NAME = "report.json"


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def _lesion(les: Lesion, threshold: float, call_min_mm: float) -> dict[str, Any]:
    frac = les.malignant_fraction
    return {
        "id": les.id,
        "slice_numbers": [les.slices[0] + 1, les.slices[1] + 1],
        "central_slice_number": les.central.slice_index + 1,
        "centroid_mm": [_r(v, 2) for v in les.centroid_mm],
        "diameter_mm": _r(les.diameter_mm, 1),
        "long_axis_mm": _r(les.long_axis_mm, 1),
        "short_axis_mm": _r(les.short_axis_mm, 1),
        "volume_mm3": _r(les.volume_mm3, 0),
        "label": les.label(threshold).value,
        "probability": _r(les.probability(threshold), 4),
        "malignant_fraction": None if frac is None else _r(frac, 4),
        "votes": {"benign": les.votes_benign, "malignant": les.votes_malignant},
        "p_benign": _r(les.p_benign, 4),
        "p_malignant": _r(les.p_malignant, 4),
        "suspicion": None if les.suspicion is None else _r(les.suspicion, 4),
        "passes_second_reading": les.passes,
        "texture": les.texture.value,
        "solid_core_mm": _r(les.candidate.features.get("solid_core_mm", 0.0), 1),
        "in_patient_call": enters_call(les, call_min_mm),
        "max_roi_probability": _r(1.0 / (1.0 + math.exp(-min(les.candidate.max_roi_logit, 700.0))), 6),
        # what the second reading scored (descriptors such as the solid core are listed above)
        "features": {k: _r(v, 4) for k, v in les.candidate.features.items() if k in FEATURE_NAMES},
    }


def build_report(
    session: ReadingSession,
    *,
    warnings: list[str] | None = None,
    include_identifiers: bool = False,
    source: str | None = None,
    model_path: str | None = None,
) -> dict[str, Any]:
    """The report of ``session`` at its current settings, as a JSON-ready dict."""
    vol, analysis, p = session.volume, session.analysis, session.params
    threshold = session.voting_threshold
    lesions = session.lesions()
    cs = session.ensure_candidates()
    d = session.diagnosis()
    findings = []
    for les in lesions:
        if not les.passes:
            continue
        lab = les.label(threshold)
        for f in les.findings:
            findings.append(
                {
                    "lesion_id": les.id,
                    "slice_number": f.slice_index + 1,
                    "slice_index": f.slice_index,
                    "sop_instance_uid": f.sop_instance_uid,
                    "bbox_px": list(f.bbox_px),
                    "centroid_px": [_r(v, 1) for v in f.centroid_px],
                    "centroid_mm": [_r(v, 2) for v in f.centroid_mm],
                    "area_mm2": _r(f.area_mm2, 1),
                    "diameter_mm": _r(f.diameter_mm, 1),
                    "long_axis_mm": _r(f.long_axis_mm, 1),
                    "short_axis_mm": _r(f.short_axis_mm, 1),
                    "label": lab.value,
                    "probability": _r(les.probability(threshold), 4),
                    "suspicion": None if les.suspicion is None else _r(les.suspicion, 4),
                }
            )
    findings.sort(key=lambda f: (f["slice_index"], f["lesion_id"]))
    series: dict[str, Any] = {
        "study_uid": vol.study_uid,
        "series_uid": vol.series_uid,
        "description": vol.description,
        "slices": vol.num_slices,
        "slices_analysed": len(analysis.slices),
        "rows": int(vol.hu.shape[1]),
        "cols": int(vol.hu.shape[2]),
        "pixel_spacing_mm": [float(v) for v in vol.pixel_spacing_mm],
        "slice_spacing_mm": vol.slice_spacing_mm,
    }
    if include_identifiers:
        series["patient_name"] = vol.patient_name
        series["patient_id"] = vol.patient_id
        if source is not None:
            series["source"] = source
    model: dict[str, Any] = {
        "version": session.card.version,
        "second_reading": None if session.second_reading is None else session.second_reading.version,
    }
    if include_identifiers and model_path is not None:
        model["path"] = model_path
    call_min = p.call_min_diameter_mm
    return {
        "notice": RESEARCH_NOTICE,
        "software": {"name": "LungCT Viewer", "version": __version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "series": series,
        "model": model,
        "diagnosis": {
            "label": d.label.value,
            "display": d.display,
            "malignant_fraction": None if d.malignant_fraction is None else _r(d.malignant_fraction, 4),
            "threshold": d.threshold,
            "votes": {"benign": d.votes_benign, "malignant": d.votes_malignant},
            "lesions_in_call": d.n_lesions,
            "small_lesions_not_in_call": d.n_small,
            "ground_glass_lesions_not_in_call": d.n_ground_glass,
        },
        "detection": {
            "min_roi_probability": p.min_roi_probability,
            "min_votes": p.min_votes,
            "suspicion_threshold": p.suspicion_threshold,
            # the second reading's own operating point for this series' slice spacing
            "suspicion_operating_point": None
            if session.second_reading is None
            else session.second_reading.threshold_for(vol.slice_spacing_mm),
            "thick_slice_series": None
            if session.second_reading is None or session.second_reading.thick_threshold is None
            else session.second_reading.reads_as_thick(vol.slice_spacing_mm),
            "candidate_min_roi_probability": cs.floor,
            "call_min_diameter_mm": call_min,
            "patches_analysed": analysis.patches_analysed,
            "patches_total": analysis.patches_total,
            "patches_skipped_outside_lung_field": analysis.patches_total - analysis.patches_analysed,
            "candidates": len(lesions),
        },
        "findings": findings,
        "lesions": [_lesion(les, threshold, call_min) for les in lesions if les.passes],
        "candidates": [_lesion(les, threshold, call_min) for les in lesions if not les.passes],
        "timing": {
            "load_s": _r(session.load_s),
            "inference_s": _r(analysis.inference_s),
            "lung_region_s": _r(session.lung_s) if session.lung_s is not None else None,
            "candidates_s": _r(cs.seconds),
            "slices": len(analysis.slices),
            "device": analysis.device,
        },
        "warnings": list(warnings if warnings is not None else vol.warnings),
    }


def write_report(out_dir: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` into ``out_dir`` atomically."""
    target = Path(out_dir) / REPORT_NAME
    write_json_atomic(target, report)
    return target
