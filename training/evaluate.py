"""``evaluate``: patch-, nodule- and patient-level metrics of the CNN on held-back patients.

Definitions
-----------
* Patch votes follow the viewer's rule (:func:`lungct_viewer.core.detection.patch_labels`): a
  patch is an ROI vote when ``P(benign) + P(malignant) >= min_roi_probability`` and votes
  malignant when ``P(malignant) > P(benign)``.
* Nodule level: the nodule's ROI patches (ground-truth mask, labelling rule of the patch
  set). Score for the AUC: the mean malignant share ``P(m) / (P(b) + P(m))``; call: the
  malignant vote fraction ``>= t``.
* Patient level: the votes of all the patient's nodules pooled (the viewer's majority vote);
  the truth is malignant when any of the patient's nodules is malignant.
* The default threshold is chosen on the validation patients (never the test patients): the
  maximum of Youden's J (sensitivity + specificity - 1), or with ``--min-sensitivity S`` the
  highest validation specificity among thresholds with validation sensitivity >= S.
* 95 % intervals of the AUCs: percentile bootstrap over *patients* (all of a patient's nodules
  are drawn together), :data:`BOOTSTRAP_ROUNDS` rounds, fixed seed.
* ``--tta``: each patch is also classified flipped left-right and the two probability
  vectors are averaged (test-time augmentation; the viewer does not do this).

Whole studies (detection, false positives, FROC, patient calls on scans) are evaluated by
``evaluate-studies`` (:mod:`training.evaluate_studies`) with the viewer's reading session.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from lungct_viewer.core import constants as C
from lungct_viewer.core.detection import roi_probability
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
    roi = roi_probability(probs) >= min_roi
    mal = probs[:, C.MALIGNANT] > probs[:, C.BENIGN]
    return int((roi & ~mal).sum()), int((roi & mal).sum())


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
        share = p[:, C.MALIGNANT] / np.maximum(roi_probability(p), 1e-9)
        rows.append(
            {
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
            }
        )
    return rows


def patient_table(nodules: list[dict]) -> list[dict]:
    """One row per patient: the votes of all its nodules pooled (the method's majority vote)."""
    by: dict[str, list[dict]] = defaultdict(list)
    for n in nodules:
        by[n["patient"]].append(n)
    rows = []
    for pid, ns in sorted(by.items()):
        b = sum(n["votes_benign"] for n in ns)
        m = sum(n["votes_malignant"] for n in ns)
        if b + m:
            frac = m / (b + m)
        else:  # no ROI vote at all: fall back to the patch shares
            w = np.array([n["patches"] for n in ns], float)
            frac = float(np.average([n["vote_fraction"] for n in ns], weights=w))
        rows.append(
            {
                "patient": pid,
                "malignant": int(any(n["malignant"] for n in ns)),
                "nodules": len(ns),
                "votes_benign": b,
                "votes_malignant": m,
                "malignant_fraction": frac,
                "max_nodule_fraction": max(n["vote_fraction"] for n in ns),
            }
        )
    return rows


BOOTSTRAP_ROUNDS = 2000


def bootstrap_auc(
    rows: list[dict], score_key: str, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> list[float] | None:
    """95 % percentile interval of the AUC of ``score_key``, resampling patients."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["patient"]].append(r)
    patients = sorted(by)
    if len(patients) < 5:
        return None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(rounds):
        pick = rng.integers(len(patients), size=len(patients))
        sample = [r for k in pick for r in by[patients[k]]]
        a = auc([r["malignant"] for r in sample], [r[score_key] for r in sample])
        if a is not None:
            vals.append(a)
    if not vals:
        return None
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return [float(lo), float(hi)]


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


# ------------------------------------------------------------------ command
def predict_tta(keras_model, x: np.ndarray) -> np.ndarray:
    """Probabilities averaged over the patches and their left-right mirror images."""
    return 0.5 * (predict(keras_model, x) + predict(keras_model, np.asarray(x)[:, :, ::-1]))


def evaluate(
    model_path: Path,
    patches: Path,
    out: Path,
    split: str = "test",
    threshold: float | None = None,
    log=print,
    tta: bool = False,
    min_sensitivity: float | None = None,
) -> dict:
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
    probs[need] = (predict_tta if tta else predict)(loaded.keras_model, data["x"][need])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # threshold from validation
    val_nod = nodule_table(data, probs, sel_val, min_roi)
    val_pat = patient_table(val_nod)
    val_curve = (
        threshold_curve([r["malignant"] for r in val_pat], [r["malignant_fraction"] for r in val_pat], THRESHOLDS)
        if val_pat
        else []
    )
    if threshold is None and not val_curve:
        threshold, why = C.DEFAULT_VOTING_THRESHOLD, "no validation patients with nodules: the viewer's default"
    elif threshold is None:
        threshold, why = choose_threshold(val_curve, min_sensitivity)
    else:
        why = "given on the command line"
    nod = nodule_table(data, probs, sel_eval, min_roi)
    pat = patient_table(nod)
    curve = threshold_curve([r["malignant"] for r in pat], [r["malignant_fraction"] for r in pat], THRESHOLDS)
    yv = data["y"][sel_eval]
    pred = probs[sel_eval].argmax(1)
    patch = {
        "n": int(sel_eval.sum()),
        "accuracy": float((pred == yv).mean()),
        "confusion_matrix": {"rows_true_cols_pred": list(C.CLASS_NAMES), "counts": confusion(yv, pred)},
        "per_class_recall": {
            C.CLASS_NAMES[c]: float((pred[yv == c] == c).mean()) if (yv == c).any() else None for c in range(3)
        },
        "roi_detection_recall": float((roi_probability(probs[sel_eval]) >= min_roi)[yv > 0].mean())
        if (yv > 0).any()
        else None,
        "not_roi_specificity": float((roi_probability(probs[sel_eval]) < min_roi)[yv == 0].mean())
        if (yv == 0).any()
        else None,
    }
    # Not-ROI specificity by where the patch came from: whole-study background vs the
    # nodule-free slices of other patients' crops (many patients and scanners)
    org = data["origin"][sel_eval]
    neg_roi = roi_probability(probs[sel_eval]) >= min_roi
    patch["not_roi_specificity_by_origin"] = {
        ORIGINS[o]: {
            "n": int(((yv == 0) & (org == o)).sum()),
            "specificity": float(1 - neg_roi[(yv == 0) & (org == o)].mean()),
        }
        for o in np.unique(org[yv == 0]).tolist()
    }
    nod_m = level_metrics(nod, "vote_fraction", "score", threshold)
    nod_m["confusion_matrix"] = confusion(
        [r["malignant"] for r in nod], [int(r["vote_fraction"] >= threshold) for r in nod], 2
    )
    pat_m = level_metrics(pat, "malignant_fraction", "malignant_fraction", threshold)
    pat_m["confusion_matrix"] = confusion(
        [r["malignant"] for r in pat], [int(r["malignant_fraction"] >= threshold) for r in pat], 2
    )
    pat_max = level_metrics(pat, "max_nodule_fraction", "max_nodule_fraction", threshold)
    val_pat_m = level_metrics(val_pat, "malignant_fraction", "malignant_fraction", threshold) if val_pat else None
    nod_m["auc_95ci"] = bootstrap_auc(nod, "score")
    pat_m["auc_95ci"] = bootstrap_auc(pat, "malignant_fraction")
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
        "test_time_augmentation": "left-right flip, probabilities averaged" if tta else None,
        "patient_threshold_curve": {
            "split": split,
            "n": len(pat),
            "points": [{k: c[k] for k in ("threshold", "sensitivity", "specificity")} for c in curve],
        },
    }
    _write_csv(out / "patient_threshold_curve.csv", curve)
    if val_curve:
        _write_csv(out / "validation_patient_threshold_curve.csv", val_curve)
    _write_csv(out / "nodules.csv", nod)
    _write_csv(out / "patients.csv", pat)
    plot_curve(
        curve,
        out / "patient_threshold_curve.png",
        f"Patient level, {split} patients (n={len(pat)}): sensitivity / specificity vs threshold",
        threshold,
    )
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
    lines = [
        f"split: {m['split']}   voting threshold: {m['threshold']:.2f} ({m['threshold_reason']})",
        "",
        "level        n    accuracy  sensitivity  specificity  AUC",
    ]
    for name, key in (
        ("nodule", "nodule_level"),
        ("patient", "patient_level"),
        ("patient-max", "patient_level_max_nodule_vote"),
    ):
        r = m[key]
        ci = r.get("auc_95ci")
        ci_text = f"  (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        lines.append(
            f"{name:<11}{r['n']:>4}    {_f(r['accuracy'])}    {_f(r['sensitivity'])}      "
            f"{_f(r['specificity'])}    {_f(r['auc'])}{ci_text}"
        )
    p = m["patch_level"]
    lines += [
        "",
        f"patches: {p['n']}, accuracy {p['accuracy']:.3f}, ROI recall {_f(p['roi_detection_recall'])}, "
        f"Not-ROI specificity {_f(p['not_roi_specificity'])}",
        "confusion (rows true, cols predicted: not_roi, benign, malignant):",
    ]
    lines += [f"  {C.CLASS_NAMES[i]:<10} {row}" for i, row in enumerate(p["confusion_matrix"]["counts"])]
    for name, r in p.get("not_roi_specificity_by_origin", {}).items():
        lines.append(f"Not-ROI specificity, {name} patches ({r['n']}): {r['specificity']:.3f}")
    return "\n".join(lines)


def run_evaluate(args) -> dict:
    return evaluate(
        args.model,
        args.patches,
        args.out,
        args.split,
        args.threshold,
        log=lambda s: print(s, flush=True),
        tta=args.tta,
        min_sensitivity=args.min_sensitivity,
    )
