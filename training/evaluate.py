"""``evaluate``: nodule-, patient- and patch-level metrics on held-back patients, and
whole-study detection with the viewer's own pipeline.

Definitions
-----------
* Patch votes follow the viewer's detection rule
  (:func:`lungct_viewer.core.detection.patch_labels`): a patch is an ROI vote when
  ``P(benign) + P(malignant) >= min_roi_probability`` and votes malignant when
  ``P(malignant) > P(benign)``.
* Nodule level: the nodule's ROI patches (ground-truth mask, labelling rule of the patch
  set). Score for the AUC: the mean malignant share ``P(m) / (P(b) + P(m))``; call: the
  malignant vote fraction ``>= t``.
* Patient level: the votes of all the patient's nodules pooled and passed to
  :func:`lungct_viewer.core.voting.diagnose` (the viewer's majority vote); the truth is
  malignant when any of the patient's nodules is malignant.
* The default threshold is chosen on the validation patients (never the test patients):
  the highest validation specificity among thresholds with validation sensitivity >= 0.90.
* Whole studies: :class:`lungct_viewer.core.pipeline.Analyzer` +
  :func:`lungct_viewer.core.detection.detect_study`. A benign/malignant nodule is found when
  a finding's box holds a pixel of its mask on one of its slices. A finding is a false
  positive when its box holds no marked pixel at all (indeterminate nodules, single-reader
  marks and small nodules are not counted as false positives but reported). False
  positives are given per scan as findings (slice-wise) and as 3-D candidates (false
  positive findings on consecutive slices with overlapping boxes count once).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from lungct_viewer.core import constants as C
from lungct_viewer.core.errors import DataError

from . import layout as L
from .metrics import auc, binary_stats, choose_threshold, confusion, plot_curve, threshold_curve
from .patchset import ORIGINS, SPLITS, load_patch_set

THRESHOLDS = np.round(np.arange(0.0, 1.0001, 0.02), 4)


def predict(keras_model, x: np.ndarray, batch: int = 512) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        xb = np.asarray(x[i : i + batch], np.float32)[..., None]
        out.append(np.asarray(keras_model(xb, training=False)))
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


def _votes(probs: np.ndarray, min_roi: float) -> tuple[int, int]:
    roi = probs[:, C.BENIGN] + probs[:, C.MALIGNANT] >= min_roi
    mal = probs[:, C.MALIGNANT] > probs[:, C.BENIGN]
    return int((roi & ~mal).sum()), int((roi & mal).sum())


def _finding(key: str, b: int, m: int, pb: float, pm: float):
    from lungct_viewer.core.detection import Finding

    return Finding(
        slice_index=0, sop_instance_uid=key, bbox_px=(0, 0, 0, 0), centroid_px=(0.0, 0.0),
        centroid_mm=(0.0, 0.0, 0.0), area_mm2=0.0, diameter_mm=0.0, votes_benign=b,
        votes_malignant=m, p_benign=pb, p_malignant=pm,
    )


def nodule_table(data: dict, probs: np.ndarray, sel: np.ndarray, min_roi: float) -> list[dict]:
    """One row per held-back nodule crop: truth, votes, scores."""
    rows = []
    idx = np.nonzero(sel & (data["origin"] <= 1) & (data["y"] > 0))[0]
    groups: dict[str, list[int]] = defaultdict(list)
    for i in idx:
        key = str(data["nodule"][i])
        if key.split("/")[-1].startswith("study"):  # whole-study ROI patches: one group per class
            key = f"{key.split('/')[0]}/study-{C.CLASS_NAMES[int(data['y'][i])]}"
        groups[key].append(int(i))
    for key, ii in sorted(groups.items()):
        p = probs[ii]
        b, m = _votes(p, min_roi)
        share = p[:, C.MALIGNANT] / np.maximum(p[:, C.BENIGN] + p[:, C.MALIGNANT], 1e-9)
        rows.append({
            "nodule": key,
            "patient": key.split("/")[0],
            "malignant": int(data["y"][ii[0]] == C.MALIGNANT),
            "patches": len(ii),
            "roi_votes": b + m,
            "votes_benign": b,
            "votes_malignant": m,
            "vote_fraction": m / (b + m) if b + m else float(np.mean(share >= 0.5)),
            "score": float(share.mean()),
            "p_benign": float(p[:, C.BENIGN].mean()),
            "p_malignant": float(p[:, C.MALIGNANT].mean()),
        })
    return rows


def patient_table(nodules: list[dict], threshold: float) -> list[dict]:
    from lungct_viewer.core.voting import diagnose

    by: dict[str, list[dict]] = defaultdict(list)
    for n in nodules:
        by[n["patient"]].append(n)
    rows = []
    for pid, ns in sorted(by.items()):
        fs = [_finding(n["nodule"], n["votes_benign"], n["votes_malignant"], n["p_benign"], n["p_malignant"]) for n in ns]
        d = diagnose(fs, threshold)
        if d.malignant_fraction is None:  # no ROI vote at all: fall back to the patch shares
            w = np.array([n["patches"] for n in ns], float)
            frac = float(np.average([n["vote_fraction"] for n in ns], weights=w))
        else:
            frac = float(d.malignant_fraction)
        rows.append({
            "patient": pid, "malignant": int(any(n["malignant"] for n in ns)), "nodules": len(ns),
            "votes_benign": d.votes_benign, "votes_malignant": d.votes_malignant,
            "malignant_fraction": frac,
            "max_nodule_fraction": max(n["vote_fraction"] for n in ns),
        })
    return rows


def level_metrics(rows: list[dict], frac_key: str, score_key: str, threshold: float) -> dict:
    y = np.array([r["malignant"] for r in rows])
    f = np.array([r[frac_key] for r in rows])
    s = np.array([r[score_key] for r in rows])
    out = binary_stats(y, f >= threshold)
    out["auc"] = auc(y, s)
    out["auc_vote_fraction"] = auc(y, f)
    out["n_malignant"] = int(y.sum())
    out["n_benign"] = int((1 - y).sum())
    return out


# ------------------------------------------------------------------ whole-study detection
def _box_hits(f, mask2d: np.ndarray) -> bool:
    x0, y0, x1, y1 = f.bbox_px
    return bool(mask2d[y0:y1, x0:x1].any())


SWEEP_MIN_ROI_PROBABILITY = (0.5, 0.7, 0.8, 0.9, 0.95)
SWEEP_MIN_VOTES = (1, 4, 8, 12, 16)


def _study_targets(info: dict, vol, full: dict[int, np.ndarray]) -> list[dict]:
    """Ground-truth objects of one series: ``{"label", "masks": {slice: bool mask}}``."""
    targets = []
    if info.get("annotation") == "voc-boxes":
        for nd in info.get("nodules", []):
            tm = {k: np.zeros(vol.shape[1:], bool) for k in nd["slices"]}
            for b in info["boxes"]:
                x0, y0, x1, y1 = b["box_px"]
                tm[b["slice"]][y0:y1, x0:x1] = True
            targets.append({"label": "malignant", "masks": tm})
    else:
        for nd in info.get("nodules", []):
            if nd["label"] not in ("benign", "malignant", "indeterminate"):
                continue
            code = L.LABEL_TO_CODE[nd["label"]]
            tm = {k: full[k] == code for k in nd["slices"] if k in full}
            targets.append({"label": nd["label"], "masks": tm})
    return targets


def _score_findings(findings, targets: list[dict], full: dict[int, np.ndarray], threshold: float) -> dict:
    """Targets found, false-positive findings and 3-D candidates for one series' findings."""
    from lungct_viewer.core.detection import group_lesions
    from lungct_viewer.core.voting import diagnose

    found, hit_ids = [], set()
    for t in targets:
        hits = [f for f in findings if f.slice_index in t["masks"] and _box_hits(f, t["masks"][f.slice_index])]
        hit_ids |= {id(f) for f in hits}
        d = diagnose(hits, threshold)
        found.append({
            "label": t["label"], "slices": len(t["masks"]),
            "slices_detected": len({f.slice_index for f in hits}), "found": bool(hits),
            "findings": len(hits), "malignant_fraction": d.malignant_fraction, "call": d.label,
        })
    fps, other = [], 0
    for f in findings:
        if id(f) in hit_ids:
            continue
        m = full.get(f.slice_index)
        if m is not None and _box_hits(f, m > 0):
            other += 1
        else:
            fps.append(f)
    return {
        "targets": found,
        "tumours": sum(1 for t in found if t["label"] in ("benign", "malignant")),
        "tumours_found": sum(1 for t in found if t["label"] in ("benign", "malignant") and t["found"]),
        "findings": len(findings), "false_positive_findings": len(fps),
        "false_positive_candidates_3d": len(group_lesions(fps)), "findings_on_other_marks": other,
    }


def detect_whole_studies(loaded, roots: list[Path], split_of: dict[str, str], threshold: float,
                         studies: list[str] | None, log=print, sweep: bool = False) -> tuple[list[dict], list[dict]]:
    """Run the viewer's pipeline on every whole study; score the default detection settings
    and, with ``sweep``, every pair of :data:`SWEEP_MIN_ROI_PROBABILITY` x
    :data:`SWEEP_MIN_VOTES` (the network runs once per series). Returns ``(results, sweep_rows)``."""
    from lungct_viewer.core.detection import DetectionParams, all_findings, detect_study
    from lungct_viewer.core.pipeline import Analyzer
    from lungct_viewer.core.voting import diagnose

    from .ctio import load_ct

    analyzer = Analyzer(loaded)
    results, sweep_rows = [], []
    for root in roots:
        for pdir in L.list_patients(root):
            if studies and pdir.name not in studies:
                continue
            for info, masks in L.iter_series(pdir):
                vol = load_ct(info["source"], info["series_uid"])
                u2k = {u: i for i, u in enumerate(vol.sop_instance_uids)}
                full = {u2k[u]: m for u, m in masks.items() if u in u2k}
                analysis = analyzer.analyze(vol)
                params = loaded.detection_params()
                p_roi = np.concatenate([s.probs[s.in_field][:, 1] + s.probs[s.in_field][:, 2]
                                        for s in analysis.slices.values()])
                targets = _study_targets(info, vol, full)
                findings = all_findings(detect_study(analysis, vol, params))
                score = _score_findings(findings, targets, full, threshold)
                dpat = diagnose(findings, threshold)
                split = split_of.get(pdir.name, "not in the patch set")
                r = {
                    "patient": pdir.name, "series_uid": info["series_uid"], "description": info.get("description", ""),
                    "split": split, "slices": vol.num_slices, **score,
                    "patient_call": dpat.label, "patient_malignant_fraction": dpat.malignant_fraction,
                    # share of the analysed (lung-field) windows the model calls ROI
                    "roi_window_fraction": float((p_roi >= params.min_roi_probability).mean()) if p_roi.size else 0.0,
                    "inference_s": round(analysis.inference_s, 1),
                }
                log(f"  {pdir.name} {info['series_uid'][-10:]} ({split}): tumours found {r['tumours_found']}/{r['tumours']}, "
                    f"FP findings {r['false_positive_findings']}, FP 3-D candidates {r['false_positive_candidates_3d']}, "
                    f"call {dpat.label}")
                results.append(r)
                if sweep:
                    for mrp in SWEEP_MIN_ROI_PROBABILITY:
                        for mv in SWEEP_MIN_VOTES:
                            fs = all_findings(detect_study(analysis, vol, DetectionParams(mrp, mv, params.min_area_mm2)))
                            sc = _score_findings(fs, targets, full, threshold)
                            sweep_rows.append({
                                "patient": pdir.name, "series_uid": info["series_uid"], "split": split,
                                "min_roi_probability": mrp, "min_votes": mv,
                                "tumours": sc["tumours"], "tumours_found": sc["tumours_found"],
                                "targets": len(sc["targets"]), "targets_found": sum(t["found"] for t in sc["targets"]),
                                "false_positive_findings": sc["false_positive_findings"],
                                "false_positive_candidates_3d": sc["false_positive_candidates_3d"],
                            })
    return results, sweep_rows


# ------------------------------------------------------------------ command
def evaluate(model_path: Path, patches: Path, out: Path, split: str = "test", threshold: float | None = None,
             roots: list[Path] | None = None, studies: list[str] | None = None, detection: bool = True,
             log=print, sweep: bool = False) -> dict:
    from lungct_viewer.core.model import load_model

    loaded = load_model(model_path)
    data = load_patch_set(patches)
    min_roi = C.DEFAULT_MIN_ROI_PROBABILITY
    si, vi = SPLITS.index(split), SPLITS.index("val")
    sel_eval = data["split"] == si
    sel_val = data["split"] == vi
    if not sel_eval.any():
        raise DataError(f"The patch set {patches} has no {split} patches.")
    probs = np.zeros((len(data["y"]), 3), np.float32)
    need = np.nonzero(sel_eval | sel_val)[0]
    probs[need] = predict(loaded.keras_model, data["x"][need])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # threshold from validation
    val_nod = nodule_table(data, probs, sel_val, min_roi)
    val_pat = patient_table(val_nod, 0.5)
    val_curve = threshold_curve([r["malignant"] for r in val_pat], [r["malignant_fraction"] for r in val_pat], THRESHOLDS) if val_pat else []
    if threshold is None and not val_curve:
        threshold, why = C.DEFAULT_VOTING_THRESHOLD, "no validation patients with nodules: the viewer's default"
    elif threshold is None:
        threshold, why = choose_threshold(val_curve, 0.9)
    else:
        why = "given on the command line"
    nod = nodule_table(data, probs, sel_eval, min_roi)
    pat = patient_table(nod, threshold)
    curve = threshold_curve([r["malignant"] for r in pat], [r["malignant_fraction"] for r in pat], THRESHOLDS)
    yv = data["y"][sel_eval]
    pred = probs[sel_eval].argmax(1)
    patch = {
        "n": int(sel_eval.sum()), "accuracy": float((pred == yv).mean()),
        "confusion_matrix": {"rows_true_cols_pred": list(C.CLASS_NAMES), "counts": confusion(yv, pred)},
        "per_class_recall": {C.CLASS_NAMES[c]: float((pred[yv == c] == c).mean()) if (yv == c).any() else None for c in range(3)},
        "roi_detection_recall": float(((probs[sel_eval][:, 1] + probs[sel_eval][:, 2]) >= min_roi)[yv > 0].mean()) if (yv > 0).any() else None,
        "not_roi_specificity": float(((probs[sel_eval][:, 1] + probs[sel_eval][:, 2]) < min_roi)[yv == 0].mean()) if (yv == 0).any() else None,
    }
    # Not-ROI specificity by where the patch came from: whole-study background vs the
    # nodule-free slices of other patients' crops (many patients and scanners)
    org = data["origin"][sel_eval]
    neg_roi = (probs[sel_eval][:, 1] + probs[sel_eval][:, 2]) >= min_roi
    patch["not_roi_specificity_by_origin"] = {
        ORIGINS[o]: {"n": int(((yv == 0) & (org == o)).sum()), "specificity": float(1 - neg_roi[(yv == 0) & (org == o)].mean())}
        for o in np.unique(org[yv == 0]).tolist()
    }
    nod_m = level_metrics(nod, "vote_fraction", "score", threshold)
    nod_m["confusion_matrix"] = confusion([r["malignant"] for r in nod], [int(r["vote_fraction"] >= threshold) for r in nod], 2)
    pat_m = level_metrics(pat, "malignant_fraction", "malignant_fraction", threshold)
    pat_m["confusion_matrix"] = confusion([r["malignant"] for r in pat], [int(r["malignant_fraction"] >= threshold) for r in pat], 2)
    pat_max = level_metrics(pat, "max_nodule_fraction", "max_nodule_fraction", threshold)
    val_pat_m = level_metrics(patient_table(val_nod, threshold), "malignant_fraction", "malignant_fraction", threshold) if val_pat else None
    split_of = {str(p): str(s) for p, s in zip(data["patients"], data["patient_split"])}
    whole = []
    if detection and roots:
        log("whole-study detection (viewer pipeline):")
        whole, sweep_rows = detect_whole_studies(loaded, roots, split_of, threshold, studies, log, sweep)
        _write_csv(out / "whole_study_sweep.csv", sweep_rows)
    metrics = {
        "model": str(Path(model_path).resolve()),
        "model_version": loaded.version,
        "split": split,
        "threshold": threshold,
        "threshold_reason": why,
        "min_roi_probability": min_roi,
        "patients": {s: int((data["patient_split"] == s).sum()) for s in SPLITS},
        "patch_level": patch,
        "nodule_level": nod_m,
        "patient_level": pat_m,
        "patient_level_max_nodule_vote": pat_max,
        "validation_patient_level": val_pat_m,
        "whole_studies": whole,
    }
    if whole:
        scans = [w for w in whole]
        metrics["whole_study_summary"] = {
            "scans": len(scans),
            "tumours": sum(w["tumours"] for w in scans),
            "tumours_found": sum(w["tumours_found"] for w in scans),
            "false_positive_findings_per_scan": float(np.mean([w["false_positive_findings"] for w in scans])),
            "false_positive_candidates_3d_per_scan": float(np.mean([w["false_positive_candidates_3d"] for w in scans])),
        }
    _write_csv(out / "patient_threshold_curve.csv", curve)
    if val_curve:
        _write_csv(out / "validation_patient_threshold_curve.csv", val_curve)
    _write_csv(out / "nodules.csv", nod)
    _write_csv(out / "patients.csv", pat)
    plot_curve(curve, out / "patient_threshold_curve.png",
               f"Patient level, {split} patients (n={len(pat)}): sensitivity / specificity vs threshold", threshold)
    L.write_json(out / "metrics.json", metrics)
    log(format_table(metrics))
    return metrics


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _f(v) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def format_table(m: dict) -> str:
    lines = [f"split: {m['split']}   voting threshold: {m['threshold']:.2f} ({m['threshold_reason']})", "",
             "level        n    accuracy  sensitivity  specificity  AUC"]
    for name, key in (("nodule", "nodule_level"), ("patient", "patient_level"), ("patient-max", "patient_level_max_nodule_vote")):
        r = m[key]
        lines.append(f"{name:<11}{r['n']:>4}    {_f(r['accuracy'])}    {_f(r['sensitivity'])}      {_f(r['specificity'])}    {_f(r['auc'])}")
    p = m["patch_level"]
    lines += ["", f"patches: {p['n']}, accuracy {p['accuracy']:.3f}, ROI recall {_f(p['roi_detection_recall'])}, "
              f"Not-ROI specificity {_f(p['not_roi_specificity'])}",
              "confusion (rows true, cols predicted: not_roi, benign, malignant):"]
    lines += [f"  {C.CLASS_NAMES[i]:<10} {row}" for i, row in enumerate(p["confusion_matrix"]["counts"])]
    for name, r in p.get("not_roi_specificity_by_origin", {}).items():
        lines.append(f"Not-ROI specificity, {name} patches ({r['n']}): {r['specificity']:.3f}")
    for w in m.get("whole_studies", []):
        lines.append(f"{w['patient']} {w['description']} [{w['split']}]: tumours {w['tumours_found']}/{w['tumours']}, "
                     f"FP findings {w['false_positive_findings']}, FP 3-D {w['false_positive_candidates_3d']}, call {w['patient_call']}, "
                     f"ROI windows {w.get('roi_window_fraction', 0):.3f}")
    return "\n".join(lines)


def run_evaluate(args) -> dict:
    return evaluate(args.model, args.patches, args.out, args.split, args.threshold, args.data,
                    args.studies, not args.no_detection, log=lambda s: print(s, flush=True),
                    sweep=args.detection_sweep)
