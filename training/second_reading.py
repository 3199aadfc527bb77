"""Fitting the second reading: examples, pasted nodules, logistic regression, operating point.

**Negatives** are the candidates the pipeline itself raises on whole studies (the viewer's
:class:`~lungct_viewer.core.session.ReadingSession`, model defaults), minus those on an
annotated nodule or within 5 mm of another reader's mark.

**Positives** are the LIDC nodule crops, *pasted into the lungs of the whole studies* and found
there by the same core and object steps a CNN seed starts
(:mod:`lungct_viewer.core.candidates`); a nodule counts when the object found is that nodule
(:data:`MIN_PASTE_OVERLAP`). A crop is 30-60 mm wide and holds one nodule slice above and below
it: features computed on the crop itself would tell crops from whole studies (borders, padding,
noise, pixel size) instead of nodules from vessels. Pasted, each nodule sits in a real lung of
a real scanner, between real vessels and against real pleura, resampled to that scanner's
voxels: only the nodule's own voxels (its mask, softly edged) come from the crop and the
brighter of host and nodule is kept, so vessels it touches stay. Crops of the whole studies'
own patients are never pasted, nor calcified nodules (benign-appearing; not what the reading
looks for). The annotated nodules of the training studies join the positives.

**Regression**: :class:`lungct_viewer.core.second_reading.SecondReading` (standardised
features, L2 penalty, classes weighted equally). **Operating point**: the suspicion at which
the training scans raise :data:`TARGET_FP_PER_SCAN` false-positive lesions per scan, and at
most :data:`MAX_LESIONS_PER_SCAN` findings per scan.
Everything is scored leave-one-study-out by :mod:`training.evaluate_studies`.
"""

from __future__ import annotations

import csv
import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungct_viewer.core.candidates import FEATURE_NAMES, Seed, find_core, segment_object
from lungct_viewer.core.errors import DataError
from lungct_viewer.core.lung import LungRegion
from lungct_viewer.core.second_reading import SecondReading, transform

from .studies import AnalysedSeries

#: A hit must be localised: a finding's box centre within this margin (mm) of the nodule's box.
HIT_MARGIN_MM = 5.0
#: Operating point: false-positive lesions per training scan at the chosen suspicion, and the
#: most findings shown per scan (the most suspicious; the rest stay candidates). A scan the
#: second reading never saw raises about three times its training scans' rate (thick slices,
#: another kernel: more vessel cross-sections pass): leave-one-study-out over the five
#: studies, a threshold at 1 per training scan gave 3.2 per held-out scan and one at 2 gave
#: 6.8 (``evaluate-pasted``'s operating-point table). So the threshold is set at 1, where a
#: new scan stays within the target of 4 before the cap, and the cap is a safety net.
TARGET_FP_PER_SCAN = 1.0
MAX_LESIONS_PER_SCAN = 4
L2_PENALTY = 1.0
#: Features are clipped to these percentiles of the fitting examples (no extrapolation).
CLIP_PERCENTILES = (0.5, 99.5)
#: Nodule crops pasted into each host study.
PASTES_PER_HOST = 300
#: Standard deviation (mm) of the offset between a pasted nodule's centre and its seed.
SEED_JITTER_MM = 2.5
#: A pasted nodule is a positive example only when the object found from its seed is that
#: nodule (intersection over union at least this): when the object step returns a vessel
#: instead, the example would teach the regression that vessels are nodules.
MIN_PASTE_OVERLAP = 0.3
#: Paste sites: lung voxels at most this dense (HU), so a nodule replaces aerated lung. Half
#: the nodules go anywhere in the lungs, half against the costal pleura (within
#: SUBPLEURAL_MM of the lung's edge, on its outer half, with lung above and below): nodules are
#: often subpleural, and a second reading that never saw a nodule touch the chest wall would
#: learn to reject them.
PASTE_SITE_MAX_HU = -700.0
SUBPLEURAL_MM = 6.0
SUBPLEURAL_SHARE = 0.5


@dataclass
class Example:
    """One candidate (or pasted nodule) for fitting and scoring."""

    study: str
    series: str
    features: np.ndarray  # raw, in FEATURE_NAMES order
    positive: bool
    nodules: tuple[int, ...] = ()  # annotated nodules it hits (whole-study candidates)
    other_mark: bool = False
    pasted: str = ""  # crop name for pasted nodules
    candidate_id: int = 0  # stable across settings (lesion numbers are not)
    max_roi_logit: float = 0.0


# ------------------------------------------------------------------------ whole studies
def finding_hits(
    truth_boxes: dict[int, tuple[int, int, int, int]],
    slice_index: int,
    bbox_px: Sequence[int],
    spacing: Sequence[float],
    margin_mm: float = HIT_MARGIN_MM,
) -> bool:
    """True when the centre of a finding's box lies inside the nodule's box on that slice,
    grown by ``margin_mm`` (the localised-hit rule)."""
    b = truth_boxes.get(slice_index)
    if b is None:
        return False
    dy, dx = spacing
    cx, cy = (bbox_px[0] + bbox_px[2] - 1) / 2.0, (bbox_px[1] + bbox_px[3] - 1) / 2.0
    return (b[0] - margin_mm / dx <= cx <= b[2] + margin_mm / dx) and (
        b[1] - margin_mm / dy <= cy <= b[3] + margin_mm / dy
    )


def lesion_hits(les, series: AnalysedSeries) -> tuple[tuple[int, ...], bool]:
    """Annotated nodules a lesion hits (localised), and whether it lies on another mark."""
    vol, truth = series.volume, series.truth
    sp = vol.pixel_spacing_mm
    hits = tuple(
        n.id for n in truth.nodules if any(finding_hits(n.boxes, f.slice_index, f.bbox_px, sp) for f in les.findings)
    )
    other = False
    for k, r, c in truth.other_marks:
        for f in les.findings:
            if f.slice_index == k:
                x0, y0, x1, y1 = f.bbox_px
                m = HIT_MARGIN_MM / min(sp)
                if x0 - m <= c <= x1 + m and y0 - m <= r <= y1 + m:
                    other = True
    return hits, other


def study_examples(series: AnalysedSeries, card, second_reading=None):
    """``(session, examples)``: the pipeline's lesions on one series as examples."""
    from lungct_viewer.core.session import ReadingSession

    session = ReadingSession(series.volume, card, second_reading)
    session.set_analysis(series.analysis)
    out = []
    for les in session.lesions():
        hits, other = lesion_hits(les, series)
        out.append(
            Example(
                series.spec.name,
                series.key,
                les.candidate.feature_vector(),
                bool(hits),
                hits,
                other,
                candidate_id=les.candidate.id,
                max_roi_logit=les.candidate.max_roi_logit,
            )
        )
    return session, out


# ------------------------------------------------------------------------ pasted nodules
def load_crop(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A nodule crop as ``(hu (z, row, col), mask, (dz, dy, dx) mm)``; NIfTI voxel [i, j, k] is
    column i, row j, slice k."""
    import nibabel as nib

    try:
        im, mk = nib.load(str(image_path)), nib.load(str(mask_path))
        hu = np.asarray(im.dataobj, dtype=np.float32).transpose(2, 1, 0)
        mask = np.asarray(mk.dataobj).transpose(2, 1, 0) > 0
    except Exception as exc:  # nibabel raises many types for damaged files
        raise DataError(f"The nodule crop {image_path} could not be read: {exc}") from exc
    sx, sy, sz = (float(v) for v in im.header.get_zooms()[:3])
    return hu, mask, (sz, sy, sx)


#: ``nodules.csv`` Calcification_value of a nodule without calcification (LIDC scale: 1-5
#: are calcification patterns, 6 absent). Calcified nodules are benign-appearing (Lung-RADS
#: 1) and are not what the second reading looks for, so they are not pasted as positives.
CALCIFICATION_ABSENT = "6"


def crop_files(nodules_dir: Path, exclude_patients: set[str]) -> list[tuple[str, Path, Path]]:
    """``(name, image, mask)`` of every non-calcified crop whose patient is not excluded."""
    rows = list(csv.DictReader(open(nodules_dir / "nodules.csv", newline="")))
    out = []
    for r in rows:
        if (
            r["patient_id"] in exclude_patients
            or r.get("Calcification_value", CALCIFICATION_ABSENT) != CALCIFICATION_ABSENT
        ):
            continue
        name = f"{r['patient_id']}_R_{r['nodule_id']}"
        img, msk = nodules_dir / "image" / f"{name}.nii.gz", nodules_dir / "nodule_mask" / f"{name}.nii.gz"
        if img.is_file() and msk.is_file():
            out.append((name, img, msk))
    if not out:
        raise DataError(f"No nodule crops were found in {nodules_dir}.")
    return out


def paste_nodule(
    hu: np.ndarray,
    lung: LungRegion,
    spacing: Sequence[float],
    crop: np.ndarray,
    mask: np.ndarray,
    crop_spacing: Sequence[float],
    rng: np.random.Generator,
    sites: np.ndarray,
):
    """Paste one crop's nodule into ``hu`` in place at a random lung site.

    Returns ``(box, original voxels, centre, nodule mask in box)`` so that the caller can
    restore the volume, or ``None`` when the nodule does not fit.
    """
    f = [c / h for c, h in zip(crop_spacing, spacing)]
    nod = ndimage.zoom(crop, f, order=1)
    m = ndimage.zoom(mask.astype(np.float32), f, order=1) > 0.5
    if not m.any():
        return None
    idx = np.nonzero(m)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    nod, m = nod[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    shape = np.array(m.shape)
    for _ in range(20):
        c = sites[rng.integers(len(sites))]
        o = c - shape // 2
        if (o >= 0).all() and (o + shape <= np.array(hu.shape)).all():
            break
    else:
        return None
    box = tuple(slice(int(o[i]), int(o[i] + shape[i])) for i in range(3))
    weight = np.clip(1.5 * ndimage.gaussian_filter(m.astype(np.float32), 0.6), 0.0, 1.0)
    host = hu[box].astype(np.float32)
    original = hu[box].copy()
    hu[box] = np.rint(host * (1 - weight) + np.maximum(host, nod) * weight).astype(hu.dtype)
    return box, original, o + shape / 2.0, m


def paste_crop(
    hu: np.ndarray,
    lung: LungRegion,
    spacing: Sequence[float],
    crop: tuple[str, Path, Path],
    rng: np.random.Generator,
    anywhere: np.ndarray,
    subpleural: np.ndarray,
):
    """Paste one crop ``(name, image, mask)`` into ``hu`` in place, against the costal pleura
    with probability :data:`SUBPLEURAL_SHARE` (when there is such a site), else anywhere in
    aerated lung. Returns ``(paste_nodule's result, against the pleura)``; the result is
    ``None`` when the nodule does not fit."""
    _name, img, msk = crop
    c_hu, c_mask, c_sp = load_crop(img, msk)
    against_pleura = bool(len(subpleural)) and rng.random() < SUBPLEURAL_SHARE
    done = paste_nodule(hu, lung, spacing, c_hu, c_mask, c_sp, rng, subpleural if against_pleura else anywhere)
    return done, against_pleura


def paste_sites(hu: np.ndarray, lung: LungRegion, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(anywhere, subpleural)`` voxel indices of aerated lung where a nodule may be pasted."""
    full = (slice(0, hu.shape[0]), slice(0, hu.shape[1]), slice(0, hu.shape[2]))
    region = lung.crop(full)
    aerated = region & (hu < PASTE_SITE_MAX_HU)
    near = np.zeros_like(aerated)
    cols = np.arange(hu.shape[2])
    # costal pleura only: lung above and below the site, so that no pasted nodule sits on the
    # diaphragm or the apex (their look-alikes there are the dome's cap and the apical pleura)
    k = max(int(round(SUBPLEURAL_MM / max(spacing[0], 1e-3))), 1)
    inner = np.zeros_like(region)
    inner[k:-k] = region[: -2 * k] & region[2 * k :]
    for z in range(hu.shape[0]):
        if not aerated[z].any() or lung.midline_col is None or not np.isfinite(lung.midline_col[z]):
            continue
        depth = ndimage.distance_transform_edt(region[z], sampling=spacing[1:])
        lateral = np.abs(cols - lung.midline_col[z])
        outer = lateral >= 0.5 * lateral[region[z].any(axis=0)].max()
        near[z] = aerated[z] & inner[z] & (depth <= SUBPLEURAL_MM) & outer[None, :]
    return np.argwhere(aerated), np.argwhere(near)


def _overlap(
    obj_box: tuple[slice, slice, slice], obj: np.ndarray, nod_box: tuple[slice, slice, slice], nodule: np.ndarray
) -> float:
    """Intersection over union of a segmented object and the pasted nodule (volume voxels)."""
    lo = [min(a.start, b.start) for a, b in zip(obj_box, nod_box)]
    hi = [max(a.stop, b.stop) for a, b in zip(obj_box, nod_box)]
    a = np.zeros([h - low for low, h in zip(lo, hi)], dtype=bool)
    b = np.zeros_like(a)
    a[tuple(slice(s.start - low, s.stop - low) for s, low in zip(obj_box, lo))] = obj
    b[tuple(slice(s.start - low, s.stop - low) for s, low in zip(nod_box, lo))] = nodule
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else 0.0


def pasted_examples(
    series: AnalysedSeries,
    lung: LungRegion,
    crops: Sequence[tuple[str, Path, Path]],
    rng: np.random.Generator,
    n: int = PASTES_PER_HOST,
) -> tuple[list[Example], int]:
    """Features of ``n`` crops pasted into one host series; returns ``(examples, attempts)``."""
    vol = series.volume
    hu = vol.hu.copy()
    spacing = (vol.slice_spacing_mm or 1.0, *vol.pixel_spacing_mm)
    sites, subpleural = paste_sites(hu, lung, spacing)
    if len(sites) == 0:
        return [], 0
    out: list[Example] = []
    pick = rng.choice(len(crops), size=min(n, len(crops)), replace=False)
    for k in pick:
        name = crops[int(k)][0]
        pasted, _against_pleura = paste_crop(hu, lung, spacing, crops[int(k)], rng, sites, subpleural)
        if pasted is None:
            continue
        box, original, centre, nodule = pasted
        try:
            jitter = rng.normal(0.0, SEED_JITTER_MM, 2)
            seed = Seed(
                int(round(centre[0] - 0.5)),
                centre[1] - 0.5 + jitter[0] / spacing[1],
                centre[2] - 0.5 + jitter[1] / spacing[2],
                0.0,
            )
            core = find_core(seed, hu, lung, spacing)
            seg = segment_object(core[0], core[1], hu, lung, spacing) if core is not None else None
            if seg is not None and _overlap(seg[0], seg[1], box, nodule) >= MIN_PASTE_OVERLAP:
                feats = seg[2]
                out.append(
                    Example(
                        series.spec.name, series.key, np.array([feats[f] for f in FEATURE_NAMES]), True, pasted=name
                    )
                )
        finally:
            hu[box] = original
    return out, len(pick)


# ---------------------------------------------------------------------------- fitting
def fit_regression(
    positives: np.ndarray, negatives: np.ndarray, l2: float = L2_PENALTY, features: Sequence[str] = FEATURE_NAMES
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Logistic regression (Newton steps, L2 on the weights, both classes weighted equally)
    on raw feature rows; returns ``(mean, scale, coef, intercept)`` of standardised inputs."""
    cols = [FEATURE_NAMES.index(f) for f in features]
    x = transform(features, np.vstack([positives[:, cols], negatives[:, cols]]))
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    w = np.r_[
        np.full(len(positives), 0.5 / max(len(positives), 1)), np.full(len(negatives), 0.5 / max(len(negatives), 1))
    ]
    w *= len(y)
    mean, scale = x.mean(0), x.std(0) + 1e-9
    z = np.c_[np.ones(len(x)), (x - mean) / scale]
    beta = np.zeros(z.shape[1])
    penalty = l2 * np.eye(z.shape[1])
    penalty[0, 0] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -50, 50)))
        grad = z.T @ (w * (p - y)) + penalty @ beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    return mean, scale, beta[1:], float(beta[0])


def operating_threshold(scores_negative: np.ndarray, n_scans: int, target_fp: float = TARGET_FP_PER_SCAN) -> float:
    """The lowest suspicion at which the negatives of ``n_scans`` scans raise at most
    ``target_fp`` false positives per scan."""
    allowed = int(np.floor(target_fp * n_scans))
    s = np.sort(np.asarray(scores_negative, dtype=np.float64))[::-1]
    if len(s) <= allowed:
        return 0.0
    return float(np.nextafter(s[allowed], 1.0))


def fit_second_reading(
    positives: Sequence[Example], negatives: Sequence[Example], n_scans: int, version: str, training: dict | None = None
) -> SecondReading:
    """A :class:`SecondReading` fitted on the examples, its threshold at the operating point."""
    if not positives or not negatives:
        raise DataError("The second reading needs positive and negative examples.")
    pos = np.stack([e.features for e in positives])
    neg = np.stack([e.features for e in negatives])
    both = np.vstack([pos, neg])
    lower, upper = np.percentile(both, CLIP_PERCENTILES[0], axis=0), np.percentile(both, CLIP_PERCENTILES[1], axis=0)
    pos, neg = np.clip(pos, lower, upper), np.clip(neg, lower, upper)
    mean, scale, coef, intercept = fit_regression(pos, neg)
    reading = SecondReading(
        version=version,
        features=list(FEATURE_NAMES),
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=coef.tolist(),
        intercept=intercept,
        threshold=0.5,
        max_lesions=MAX_LESIONS_PER_SCAN,
        lower=lower.tolist(),
        upper=upper.tolist(),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        training=dict(training or {}),
    )
    reading.threshold = operating_threshold(reading.score_matrix(neg), n_scans)
    return reading
