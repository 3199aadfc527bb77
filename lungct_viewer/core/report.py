"""``report.json``: the study's findings and diagnosis as plain JSON (viewer and headless)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from .. import RESEARCH_NOTICE, __version__
from .atomic import write_json_atomic
from .detection import DetectionParams, SliceDetection, all_findings, group_lesions
from .results import StudyAnalysis
from .study import CTVolume
from .voting import Diagnosis

REPORT_NAME = "report.json"


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def build_report(
    volume: CTVolume,
    analysis: StudyAnalysis,
    detections: dict[int, SliceDetection],
    diagnosis: Diagnosis,
    params: DetectionParams,
    *,
    load_s: float = 0.0,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (no patient name or id)."""
    found = all_findings(detections)
    lesions = group_lesions(found)
    lesion_of = {id(f): les.id for les in lesions for f in les.findings}
    findings = []
    for f in found:
        findings.append(
            {
                "lesion_id": lesion_of[id(f)],
                "slice_index": f.slice_index,
                "sop_instance_uid": f.sop_instance_uid,
                "bbox_px": list(f.bbox_px),
                "centroid_px": [_r(v, 1) for v in f.centroid_px],
                "centroid_mm": [_r(v, 2) for v in f.centroid_mm],
                "area_mm2": _r(f.area_mm2, 1),
                "diameter_mm": _r(f.diameter_mm, 1),
                "label": f.label(diagnosis.threshold),
                "p_benign": _r(f.p_benign, 4),
                "p_malignant": _r(f.p_malignant, 4),
                "votes": {"benign": f.votes_benign, "malignant": f.votes_malignant},
            }
        )
    frac = diagnosis.malignant_fraction
    return {
        "notice": RESEARCH_NOTICE,
        "software": {"name": "LungCT Viewer", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "diagnosis": {
            "label": diagnosis.label,
            "malignant_fraction": None if frac is None else _r(frac, 4),
            "threshold": diagnosis.threshold,
            "votes": {"benign": diagnosis.votes_benign, "malignant": diagnosis.votes_malignant},
            "n_findings": diagnosis.n_findings,
        },
        "detection": {
            "min_roi_probability": params.min_roi_probability,
            "min_votes": params.min_votes,
            "min_area_mm2": params.min_area_mm2,
            "patches_analysed": analysis.patches_analysed,
            "patches_total": analysis.patches_total,
            "patches_skipped_outside_lung_field": analysis.patches_total - analysis.patches_analysed,
        },
        "series": {
            "uid": volume.series_uid,
            "description": volume.description,
            "slices": volume.num_slices,
            "slices_analysed": len(analysis.slices),
            "rows": int(volume.hu.shape[1]),
            "cols": int(volume.hu.shape[2]),
            "pixel_spacing_mm": [float(v) for v in volume.pixel_spacing_mm],
            "slice_spacing_mm": volume.slice_spacing_mm,
        },
        "findings": findings,
        "lesions": [
            {
                "id": les.id,
                "slices": list(les.slices),
                "n_findings": len(les.findings),
                "diameter_mm": _r(les.diameter_mm, 1),
                "centroid_mm": [_r(v, 2) for v in les.largest.centroid_mm],
                "label": les.label(diagnosis.threshold),
                "malignant_fraction": _r(les.malignant_fraction, 4),
                "votes": {"benign": les.votes_benign, "malignant": les.votes_malignant},
            }
            for les in lesions
        ],
        "timing": {
            "load_s": _r(load_s),
            "inference_s": _r(analysis.inference_s),
            "slices": len(analysis.slices),
            "device": analysis.device,
        },
        "model": {"version": analysis.model_version, "path": analysis.model_path},
        "warnings": list(warnings if warnings is not None else volume.warnings),
    }


def write_report(out_dir: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` into ``out_dir`` atomically."""
    target = Path(out_dir) / REPORT_NAME
    write_json_atomic(target, report)
    return target
