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

**Thick slices**: each thin-slice series also enters as its thick-slab reconstructions
(:mod:`training.slabs`), with their own candidates and pasted nodules; a crop pasted into
thick slices is averaged over each slice's thickness (:func:`partial_volume`).

**Regression**: :class:`lungct_viewer.core.second_reading.SecondReading` (standardised
features, L2 penalty, classes weighted equally). **Operating points** (:class:`Calibration`),
one for thin- and one for thick-slice series: the suspicion at which scans raise
:data:`TARGET_FP_PER_SCAN` false-positive lesions per scan when each is scored by a reading
fitted without its study; and at most :data:`MAX_LESIONS_PER_SCAN` findings per scan.
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
from lungct_viewer.core.second_reading import SecondReading, is_thick, transform

from .studies import AnalysedSeries

#: A hit must be localised: a finding's box centre within this margin (mm) of the nodule's box.
HIT_MARGIN_MM = 5.0
#: Operating point: false-positive lesions per scan *not seen in fitting* at the chosen
#: suspicion (:class:`Calibration`), for thin- and thick-slice series apart; and the most
#: findings shown per scan (the most suspicious; the rest stay candidates), a safety net.
#: Leave-one-study-out, 0.5 and 1 per new scan gave the same false positives on the studies
#: without nodules (the pneumonia chest held out: 4 either way) and 1 found more nodules
#: (0.41 of pasted held-back nodules against 0.34; LIDC-IDRI-0005's indeterminate nodule).
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
#: the nodules go anywhere in the lungs, half against the costal pleura (on the lung's outer
#: half, with lung above and below): nodules are often subpleural, and a second reading that
#: never saw a nodule touch the chest wall would learn to reject them. Elsewhere a nodule
#: displaces lung: its centre lies at least its in-plane radius from the lung's edge and at
#: least PASTE_INSIDE_MIN of its voxels lie in the host's lung region. Against the pleura it
#: sits on a broad base or touches it: its centre lies between PLEURAL_BASE_SHARE of its radius
#: and its radius plus SUBPLEURAL_MM from the edge (the part in the chest wall stays wall, as
#: the brighter of host and nodule is kept), with at least PLEURAL_INSIDE_MIN of it in the lung.
PASTE_SITE_MAX_HU = -700.0
SUBPLEURAL_MM = 3.0
#: A costal site has lung at least this far (mm) above and below it along the slice normal.
COSTAL_MARGIN_MM = 3.0
SUBPLEURAL_SHARE = 0.5
PLEURAL_BASE_SHARE = 0.5
PASTE_INSIDE_MIN = 0.9
PLEURAL_INSIDE_MIN = 0.6
#: A host voxel holds part of a pasted nodule when at least this share of it is nodule (after
#: partial volume, :func:`partial_volume`); the nodule's mask is the voxels at least half nodule.
NODULE_SHARE_MIN = 0.05


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


def partial_volume(values: np.ndarray, zoom: Sequence[float]) -> np.ndarray:
    """``values`` averaged over each output voxel's extent along every axis that ``zoom``
    shrinks (factor < 1: host voxels larger than the crop's), before linear sampling: a host
    voxel of 5 mm holds the mean of the 5 mm of tissue it covers (partial volume), so a small
    nodule on thick slices is fainter, not sharper or missing. The box is centred and
    ``1 / zoom - 1`` input voxels wide (fractional ends weighted by their share): the linear
    sampling between two input voxels that follows adds the last voxel's width."""
    out = np.asarray(values, dtype=np.float32)
    for axis, z in enumerate(zoom):
        width = 1.0 / z - 1.0 if z > 0 else 0.0
        if width > 1.0:
            half = 0.5 * width
            taps = np.arange(-int(np.ceil(half - 0.5)), int(np.ceil(half - 0.5)) + 1)
            weights = np.clip(np.minimum(taps + 0.5, half) - np.maximum(taps - 0.5, -half), 0.0, 1.0)
            out = ndimage.convolve1d(out, (weights / weights.sum()).astype(np.float32), axis=axis, mode="nearest")
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
    inside_min: float = PASTE_INSIDE_MIN,
):
    """Paste one crop's nodule into ``hu`` in place at a random site of ``sites`` (centres)
    where at least ``inside_min`` of it lies in the lung region.

    Returns ``(box, original voxels, centre, nodule mask in box)`` so that the caller can
    restore the volume, or ``None`` when the nodule does not fit.
    """
    f = [c / h for c, h in zip(crop_spacing, spacing)]
    # grid_mode: voxel edges map to voxel edges, so the nodule keeps its size in mm
    nod = ndimage.zoom(partial_volume(crop, f), f, order=1, grid_mode=True, mode="nearest")
    share = ndimage.zoom(partial_volume(mask.astype(np.float32), f), f, order=1, grid_mode=True, mode="nearest")
    touched = share > NODULE_SHARE_MIN  # host voxels holding any of the nodule
    if not (share > 0.5).any():
        return None
    idx = np.nonzero(touched)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    sub = tuple(slice(a, b) for a, b in zip(lo, hi))
    nod, touched, m = nod[sub], touched[sub], share[sub] > 0.5
    shape = np.array(m.shape)
    for _ in range(20):
        c = sites[rng.integers(len(sites))]
        o = c - shape // 2
        if (o < 0).any() or (o + shape > np.array(hu.shape)).any():
            continue
        box = tuple(slice(int(o[i]), int(o[i] + shape[i])) for i in range(3))
        if lung.crop(box)[m].mean() >= inside_min:
            break
    else:
        return None
    # the brighter of host and crop over every voxel the nodule touches, softly edged: the
    # crop's own lung around the nodule is no denser than the host's, so no halo is pasted
    weight = np.clip(1.5 * ndimage.gaussian_filter(touched.astype(np.float32), 0.6), 0.0, 1.0)
    host = hu[box].astype(np.float32)
    original = hu[box].copy()
    hu[box] = np.rint(host * (1 - weight) + np.maximum(host, nod) * weight).astype(hu.dtype)
    return box, original, o + shape / 2.0, m


@dataclass(frozen=True)
class PasteSites:
    """Where nodules may be pasted into one series: aerated lung voxels ``(slice, row, col)``,
    each with its in-plane distance (mm) to the lung region's edge and whether it lies against
    the costal pleura's side (outer half of the lung, lung above and below)."""

    voxels: np.ndarray  # (n, 3) int
    depth_mm: np.ndarray  # (n,)
    costal: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.voxels)

    def take(self, keep: np.ndarray) -> PasteSites:
        return PasteSites(self.voxels[keep], self.depth_mm[keep], self.costal[keep])

    def away_from(self, centre: np.ndarray, spacing: Sequence[float], radius_mm: float) -> PasteSites:
        """The sites farther than ``radius_mm`` from ``centre`` (voxel coordinates)."""
        d = (self.voxels - np.asarray(centre)[None, :]) * np.asarray(spacing)[None, :]
        return self.take((d**2).sum(axis=1) > radius_mm**2)

    def for_nodule(self, radius_mm: float, against_pleura: bool) -> np.ndarray:
        """Centres for a nodule of in-plane ``radius_mm``: deep enough that it displaces lung
        rather than overlapping the chest wall; against the pleura, from a broad base
        (:data:`PLEURAL_BASE_SHARE` of the radius deep) to touching it."""
        if not against_pleura:
            return self.voxels[self.depth_mm >= radius_mm]
        ok = self.costal & (self.depth_mm >= PLEURAL_BASE_SHARE * radius_mm)
        return self.voxels[ok & (self.depth_mm <= radius_mm + SUBPLEURAL_MM)]


def _in_plane_radius_mm(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Half the largest in-plane extent (mm) of a crop's nodule mask."""
    idx = np.nonzero(mask)
    if not len(idx[0]):
        return 0.0
    return 0.5 * max((int(i.max()) - int(i.min()) + 1) * float(s) for i, s in zip(idx[1:], spacing[1:]))


def paste_crop(
    hu: np.ndarray,
    lung: LungRegion,
    spacing: Sequence[float],
    crop: tuple[str, Path, Path],
    rng: np.random.Generator,
    sites: PasteSites,
):
    """Paste one crop ``(name, image, mask)`` into ``hu`` in place, against the costal pleura
    with probability :data:`SUBPLEURAL_SHARE` (when the nodule fits there), else anywhere in
    aerated lung. Returns ``(paste_nodule's result, against the pleura)``; the result is
    ``None`` when the nodule does not fit."""
    _name, img, msk = crop
    c_hu, c_mask, c_sp = load_crop(img, msk)
    radius = _in_plane_radius_mm(c_mask, c_sp)
    against_pleura = rng.random() < SUBPLEURAL_SHARE
    centres = sites.for_nodule(radius, against_pleura)
    if against_pleura and not len(centres):
        against_pleura, centres = False, sites.for_nodule(radius, False)
    if not len(centres):
        return None, against_pleura
    inside = PLEURAL_INSIDE_MIN if against_pleura else PASTE_INSIDE_MIN
    done = paste_nodule(hu, lung, spacing, c_hu, c_mask, c_sp, rng, centres, inside)
    return done, against_pleura


def paste_sites(hu: np.ndarray, lung: LungRegion, spacing: Sequence[float]) -> PasteSites:
    """The :class:`PasteSites` of a series: aerated lung (below :data:`PASTE_SITE_MAX_HU`)."""
    full = (slice(0, hu.shape[0]), slice(0, hu.shape[1]), slice(0, hu.shape[2]))
    region = lung.crop(full)
    aerated = region & (hu < PASTE_SITE_MAX_HU)
    depth = np.zeros(hu.shape, dtype=np.float32)
    costal = np.zeros_like(aerated)
    cols = np.arange(hu.shape[2])
    # costal pleura only: lung above and below the site, so that no pasted nodule sits on the
    # diaphragm or the apex (their look-alikes there are the dome's cap and the apical pleura)
    k = max(int(round(COSTAL_MARGIN_MM / max(spacing[0], 1e-3))), 1)
    inner = np.zeros_like(region)
    inner[k:-k] = region[: -2 * k] & region[2 * k :]
    for z in range(hu.shape[0]):
        if not aerated[z].any():
            continue
        depth[z] = ndimage.distance_transform_edt(region[z], sampling=spacing[1:])
        if lung.midline_col is None or not np.isfinite(lung.midline_col[z]):
            continue
        lateral = np.abs(cols - lung.midline_col[z])
        outer = lateral >= 0.5 * lateral[region[z].any(axis=0)].max()
        costal[z] = inner[z] & outer[None, :]
    voxels = np.argwhere(aerated)
    at = tuple(voxels.T)
    return PasteSites(voxels, depth[at], costal[at])


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
    spacing = vol.voxel_spacing_mm
    sites = paste_sites(hu, lung, spacing)
    if len(sites) == 0:
        return [], 0
    out: list[Example] = []
    pick = rng.choice(len(crops), size=min(n, len(crops)), replace=False)
    for k in pick:
        name = crops[int(k)][0]
        pasted, _against_pleura = paste_crop(hu, lung, spacing, crops[int(k)], rng, sites)
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
    positives: Sequence[Example], negatives: Sequence[Example], version: str, training: dict | None = None
) -> SecondReading:
    """A :class:`SecondReading` fitted on the examples; its operating points are set apart,
    from scans it was not fitted on (:class:`Calibration`)."""
    if not positives or not negatives:
        raise DataError("The second reading needs positive and negative examples.")
    pos = np.stack([e.features for e in positives])
    neg = np.stack([e.features for e in negatives])
    both = np.vstack([pos, neg])
    lower, upper = np.percentile(both, CLIP_PERCENTILES[0], axis=0), np.percentile(both, CLIP_PERCENTILES[1], axis=0)
    pos, neg = np.clip(pos, lower, upper), np.clip(neg, lower, upper)
    mean, scale, coef, intercept = fit_regression(pos, neg)
    return SecondReading(
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


#: The two kinds of series that have their own operating point (see
#: :data:`lungct_viewer.core.second_reading.THICK_SLICE_MM`).
BANDS = ("thin", "thick")


def band_of(slice_spacing_mm: float | None) -> str:
    return "thick" if is_thick(slice_spacing_mm) else "thin"


@dataclass
class Calibration:
    """Suspicions of the false-positive candidates of scans, per band, each scored by a second
    reading fitted *without that scan's study* (cross-fitted): the false positives per scan a
    new scan raises at a given suspicion. In-sample scores flatter (a scan the reading was fitted
    on raised about a third of a new scan's false positives at the same suspicion), so the
    operating points come from these."""

    negatives: dict[str, np.ndarray]  # band -> suspicions, descending
    scans: dict[str, int]  # band -> scans
    cross_fitted: bool = True

    def fp_rate(self, score: float, band: str) -> float:
        """False positives per scan of ``band`` at suspicion ``score`` (lower = more
        suspicious): the common scale on which folds are pooled."""
        band = band if self.scans.get(band) else next(b for b in BANDS if self.scans.get(b))
        neg = self.negatives.get(band, np.zeros(0))
        return float(np.searchsorted(-neg, -score, side="right")) / self.scans[band]

    def threshold(self, band: str, target_fp: float = TARGET_FP_PER_SCAN) -> float | None:
        """The suspicion at which scans of ``band`` raise ``target_fp`` false positives per scan
        (``None`` without scans of that band)."""
        if not self.scans.get(band):
            return None
        return operating_threshold(self.negatives.get(band, np.zeros(0)), self.scans[band], target_fp)

    def apply(self, reading: SecondReading, target_fp: float = TARGET_FP_PER_SCAN) -> SecondReading:
        """Set ``reading``'s operating points: one per band (the thin one also where a band has no
        scans)."""
        thin, thick = self.threshold("thin", target_fp), self.threshold("thick", target_fp)
        if thin is None and thick is None:
            raise DataError("The operating point needs at least one scan.")
        reading.threshold = thin if thin is not None else thick
        reading.thick_threshold = thick
        return reading


def calibration(scored: Sequence[tuple[str, np.ndarray]], cross_fitted: bool = True) -> Calibration:
    """A :class:`Calibration` from ``(band, suspicions of one scan's false-positive candidates)``
    per scan."""
    negatives = {b: np.sort(np.concatenate([s for bb, s in scored if bb == b] or [np.zeros(0)]))[::-1] for b in BANDS}
    scans = {b: sum(1 for bb, _ in scored if bb == b) for b in BANDS}
    return Calibration(negatives, scans, cross_fitted)
