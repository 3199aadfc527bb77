"""Small, dependency-free metrics and the threshold-curve plot (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def auc(y_true, score) -> float | None:
    """ROC AUC (Mann-Whitney, ties counted half); ``None`` when a class is missing."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def binary_stats(y_true, y_pred) -> dict:
    y, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp, tn = int((y & p).sum()), int((~y & ~p).sum())
    fp, fn = int((~y & p).sum()), int((y & ~p).sum())
    n = len(y)
    return {
        "n": n,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "accuracy": (tp + tn) / n if n else None,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
    }


def threshold_curve(y_true, frac, thresholds) -> list[dict]:
    """Sensitivity/specificity/accuracy of ``frac >= t`` for each threshold ``t``."""
    frac = np.asarray(frac, dtype=np.float64)
    return [{"threshold": round(float(t), 4), **binary_stats(y_true, frac >= t)} for t in thresholds]


def choose_threshold(curve: list[dict], min_sensitivity: float | None = 0.9) -> tuple[float, str]:
    """Highest specificity among thresholds with sensitivity >= ``min_sensitivity`` (then
    accuracy, then the larger threshold); Youden's J (sensitivity + specificity - 1, then the
    larger threshold) if none reaches it or when ``min_sensitivity`` is None."""
    ok = (
        []
        if min_sensitivity is None
        else [c for c in curve if c["sensitivity"] is not None and c["sensitivity"] >= min_sensitivity]
    )
    if ok:
        best = max(ok, key=lambda c: (c["specificity"] or 0, c["accuracy"] or 0, c["threshold"]))
        return best["threshold"], (
            f"highest validation specificity ({_fmt(best['specificity'])}) among thresholds keeping "
            f"validation malignant sensitivity >= {min_sensitivity:.2f} (it is {_fmt(best['sensitivity'])})"
        )
    best = max(curve, key=lambda c: ((c["sensitivity"] or 0) + (c["specificity"] or 0), c["threshold"]))
    why = "maximum Youden's J (sensitivity + specificity - 1) on the validation patients"
    if min_sensitivity is not None:
        why += " (no threshold reached the sensitivity target)"
    return best["threshold"], f"{why}: sensitivity {_fmt(best['sensitivity'])}, specificity {_fmt(best['specificity'])}"


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def confusion(y_true, y_pred, k: int = 3) -> list[list[int]]:
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m.tolist()


def plot_curve(curve: list[dict], path: Path, title: str, marker: float | None = None) -> None:
    """Sensitivity and specificity against the voting threshold, as a PNG (Pillow only)."""
    from PIL import Image, ImageDraw

    W, H, L, R, T, B = 720, 480, 70, 20, 40, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    pw, ph = W - L - R, H - T - B

    def xy(t, v):
        return L + t * pw, T + (1 - v) * ph

    for i in range(11):
        v = i / 10
        x, _ = xy(v, 0)
        _, y = xy(0, v)
        d.line([(L, y), (L + pw, y)], fill=(230, 230, 230))
        d.line([(x, T), (x, T + ph)], fill=(230, 230, 230))
        d.text((L - 30, y - 6), f"{v:.1f}", fill="black")
        d.text((x - 8, T + ph + 6), f"{v:.1f}", fill="black")
    d.rectangle([L, T, L + pw, T + ph], outline="black")
    for key, col in (("sensitivity", (200, 30, 30)), ("specificity", (30, 80, 200)), ("accuracy", (40, 140, 40))):
        pts = [xy(c["threshold"], c[key]) for c in curve if c[key] is not None]
        if len(pts) > 1:
            d.line(pts, fill=col, width=3)
    if marker is not None:
        x, _ = xy(marker, 0)
        d.line([(x, T), (x, T + ph)], fill=(120, 120, 120), width=2)
        d.text((x + 4, T + 4), f"default {marker:.2f}", fill=(80, 80, 80))
    d.text((L, 12), title, fill="black")
    d.text((L + pw // 2 - 120, H - 22), "voting threshold (malignant vote fraction >= t)", fill="black")
    for i, (name, col) in enumerate(
        (
            ("sensitivity (malignant)", (200, 30, 30)),
            ("specificity (benign)", (30, 80, 200)),
            ("accuracy", (40, 140, 40)),
        )
    ):
        y = T + ph - 60 + 18 * i
        d.line([(L + 10, y + 6), (L + 40, y + 6)], fill=col, width=3)
        d.text((L + 46, y), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


#: False positives per scan at which a FROC curve is read (LUNA16).
FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def froc(scans: list[dict], rates=FROC_RATES) -> dict:
    """Free-response ROC over scans, 3-D lesions as the unit (LUNA16's convention).

    Each scan is ``{"n_nodules": int, "lesions": [(score, hit_nodule_ids), ...]}``: a lesion
    hitting no nodule is a false positive; a nodule counts once however many lesions hit it.
    Returns the curve (``threshold``, ``fp_per_scan``, ``sensitivity`` at every distinct
    score), the sensitivity at each rate in ``rates`` (the best sensitivity whose false
    positives per scan do not exceed the rate) and their mean, the CPM.
    """
    n_scans = len(scans)
    n_nod = sum(s["n_nodules"] for s in scans)
    events = []  # (score, scan, hit ids)
    for k, s in enumerate(scans):
        for score, hits in s["lesions"]:
            events.append((float(score), k, tuple(hits)))
    events.sort(key=lambda e: -e[0])
    found: set[tuple[int, int]] = set()
    fp = 0
    curve = []
    i = 0
    while i < len(events):
        t = events[i][0]
        while i < len(events) and events[i][0] == t:
            _, k, hits = events[i]
            if hits:
                found |= {(k, h) for h in hits}
            else:
                fp += 1
            i += 1
        curve.append(
            {"threshold": t, "fp_per_scan": fp / max(n_scans, 1), "sensitivity": len(found) / n_nod if n_nod else None}
        )
    at = {}
    for r in rates:
        ok = [c["sensitivity"] for c in curve if c["fp_per_scan"] <= r and c["sensitivity"] is not None]
        at[str(r)] = max(ok) if ok else 0.0
    cpm = float(np.mean(list(at.values()))) if n_nod else None
    return {"scans": n_scans, "nodules": n_nod, "curve": curve, "sensitivity_at": at, "cpm": cpm}


def plot_froc(result: dict, path: Path, title: str, marker: float | None = None) -> None:
    """The FROC curve (sensitivity against false positives per scan, log axis) as a PNG."""
    from PIL import Image, ImageDraw

    W, H, L, R, T, B = 720, 480, 70, 20, 40, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    pw, ph = W - L - R, H - T - B
    lo, hi = np.log2(FROC_RATES[0]), np.log2(FROC_RATES[-1] * 2)

    def xy(fp, v):
        x = (np.log2(max(fp, FROC_RATES[0])) - lo) / (hi - lo)
        return L + min(max(x, 0), 1) * pw, T + (1 - v) * ph

    for r in (*FROC_RATES, FROC_RATES[-1] * 2):
        x, _ = xy(r, 0)
        d.line([(x, T), (x, T + ph)], fill=(230, 230, 230))
        d.text((x - 10, T + ph + 6), f"{r:g}", fill="black")
    for i in range(11):
        _, y = xy(1, i / 10)
        d.line([(L, y), (L + pw, y)], fill=(230, 230, 230))
        d.text((L - 30, y - 6), f"{i / 10:.1f}", fill="black")
    d.rectangle([L, T, L + pw, T + ph], outline="black")
    pts = []
    prev = 0.0
    for c in result["curve"]:
        if c["sensitivity"] is None:
            continue
        pts += [xy(c["fp_per_scan"], prev), xy(c["fp_per_scan"], c["sensitivity"])]
        prev = c["sensitivity"]
    if len(pts) > 1:
        d.line(pts, fill=(200, 30, 30), width=3)
    if marker is not None:
        x, _ = xy(marker, 0)
        d.line([(x, T), (x, T + ph)], fill=(120, 120, 120), width=2)
        d.text((x + 4, T + 4), f"operating point {marker:.2f} FP/scan", fill=(80, 80, 80))
    d.text((L, 12), title, fill="black")
    d.text((L + pw // 2 - 140, H - 22), "false-positive lesions per scan (log scale)", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
