"""``patches``: the method's 50 x 50 / stride-10 patches, labelled, balanced and stored.

Labelling rule (the core's :func:`lungct_viewer.core.patches.label_grid`, shared with the
viewer's evaluation): on the model-space mask, a window is an ROI patch when its central
30 x 30 square holds at least 8 pixels of that nodule class, Not-ROI when the whole 50 x 50
window holds no marked pixel at all (no nodule of any class, no indeterminate nodule, no
keep-away mark, with a further 5 mm margin), and ambiguous (unused) otherwise.

Every image goes through the core preprocessing (:func:`prepare_slice`: resampling to
0.7 mm pixels, HU window [-1000, 400] -> [0, 1]); masks are resampled nearest-neighbour.

Sources
-------
* ROI patches (benign / malignant): the nodule crops, and the nodules of whole studies.
  All 100 phases of the 10-pixel grid are considered so that a nodule is seen at every
  offset inside the window, then at most ``roi_per_slice`` per slice and
  ``roi_per_nodule`` per nodule are drawn at random.
  Crops smaller than the 60 x 60 model-pixel field are padded by mirroring the crop at its
  border (``numpy.pad(mode="symmetric")``); the mask is padded with zeros.
* Not-ROI patches: the whole studies, away from every mark, sampled with weights that favour
  hard negatives (vessels and airway walls inside the lungs, chest wall, mediastinum,
  diaphragm) and keep some air outside the body; plus crop surroundings with an empty mask;
  optionally (``crop_neg_per_slice``) the crop slices that hold no part of the nodule (above
  and below it), padded exactly like the ROI crops. These come from hundreds of patients and
  scanners, so other patients' lung is seen as Not-ROI and not only around their nodules.
  A share (``mimic_fraction``) of them is cut and mirror-padded exactly like a small crop, so
  that the padding of crops is not a cue for "ROI".
* Nodule size (``min_train_diameter_mm``, training split only): crop nodules smaller than this
  (``nodules.csv`` diameter) give no ROI patch; they stay marked, so no Not-ROI window
  touches them either. On one slice a nodule of 3-5 mm looks like a vessel seen end-on, and
  teaching "small round blob = ROI" makes every vessel an ROI. Validation and test keep all
  nodules, so the evaluation population does not change.
* Balance (training split only): classes below ``per_class`` are filled with augmented
  copies (horizontal flip, zoom-in, 30 and 45 degree rotation, blur: the method's list);
  classes above it are subsampled.

Split: by patient, stratified by patient label (any malignant nodule), fixed seed; forced
assignments with ``--train-patient`` / ``--val-patient`` / ``--test-patient``. Not-ROI
patches of a training patient's whole study are divided by blocks of 10 slices (one block
in five goes to validation) because no further whole study exists for validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungct_viewer.core import constants as C
from lungct_viewer.core.atomic import atomic_path
from lungct_viewer.core.errors import DataError
from lungct_viewer.core.patches import grid_shape, label_grid
from lungct_viewer.core.preprocessing import prepare_slice, resample_to_model_spacing

from . import layout as L

P = C.PATCH_SIZE_PX
S = C.PATCH_STRIDE_PX
SPLITS = ("train", "val", "test")
# where a patch came from (the ``origin`` array holds the index into this tuple)
ORIGINS = ("crop", "whole-study", "crop-surround", "crop-mimic", "mined", "counterfactual", "crop-slice")
AUG_OPS = ("none", "hflip", "zoom", "rot30", "rot45", "blur")
CROP_FIELD_PX = 60
NEG_MARGIN_MM = 5.0


@dataclass
class PatchConfig:
    seed: int = 1234
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    per_class: int | None = 10000
    roi_per_slice: int = 6
    roi_per_nodule: int = 48
    eval_roi_per_nodule: int = 40
    neg_per_slice: int = 40
    crop_neg_per_slice: int = 0  # Not-ROI windows per nodule-free crop slice (0: none)
    min_train_diameter_mm: float = 0.0  # training split: no ROI patches from smaller crop nodules
    mimic_fraction: float = 0.25
    slice_step: int = 1  # use every n-th slice of whole studies (small test runs)
    forced: dict[str, str] = field(default_factory=dict)  # patient -> split


class _Bank:
    def __init__(self) -> None:
        self.x: list[np.ndarray] = []
        self.meta: list[tuple[int, int, int, str, int, int]] = []

    def add(self, patches: np.ndarray, y: int, patient: int, split: int, nodule: str, origin: int, aug: int = 0):
        for p in patches:
            self.x.append(np.asarray(p, np.float32))
            self.meta.append((y, patient, split, nodule, origin, aug))


# --------------------------------------------------------------------------- helpers
def _pad_to(img: np.ndarray, size: int, mode: str) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = img.shape
    ph, pw = max(0, size - h), max(0, size - w)
    pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
    if mode == "zero":
        return np.pad(img, pads, mode="constant"), (pads[0][0], pads[1][0])
    out = img
    # mirror repeatedly for very small inputs (symmetric padding needs pad <= size)
    while out.shape[0] < max(size, h) or out.shape[1] < max(size, w):
        ch, cw = out.shape
        need = ((max(0, size - ch) + 1) // 2, (max(0, size - cw) + 1) // 2)
        step = ((min(need[0], ch),) * 2, (min(need[1], cw),) * 2)
        out = np.pad(out, step, mode="symmetric")
    # crop to exactly max(size, h) centred on the original
    oy = (out.shape[0] - max(size, h)) // 2
    ox = (out.shape[1] - max(size, w)) // 2
    return out[oy : oy + max(size, h), ox : ox + max(size, w)], (pads[0][0], pads[1][0])


def roi_positions(mask: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corners of every ROI window (core rule) at all 100 grid phases."""
    out = []
    for dy in range(S):
        for dx in range(S):
            sub = mask[dy:, dx:]
            if sub.shape[0] < P or sub.shape[1] < P:
                continue
            g = label_grid(sub)
            ii, jj = np.nonzero(g == 1)
            out.extend(zip((dy + S * ii).tolist(), (dx + S * jj).tolist()))
    return out


def _take(img: np.ndarray, pos: list[tuple[int, int]]) -> np.ndarray:
    return np.stack([img[y : y + P, x : x + P] for y, x in pos]) if pos else np.zeros((0, P, P), np.float32)


def _box_sums(a: np.ndarray, gh: int, gw: int, off: int, size: int, dy: int = 0, dx: int = 0) -> np.ndarray:
    ii = np.zeros((a.shape[0] + 1, a.shape[1] + 1), np.float64)
    ii[1:, 1:] = np.cumsum(np.cumsum(a, 0), 1)
    y0 = dy + np.arange(gh) * S + off
    x0 = dx + np.arange(gw) * S + off
    Y, X = np.meshgrid(y0, x0, indexing="ij")
    return ii[Y + size, X + size] - ii[Y, X + size] - ii[Y + size, X] + ii[Y, X]


def body_and_lung(hu_model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rough body and lung masks of a model-space HU slice (for negative sampling only)."""
    dense = hu_model > -500
    dense = ndimage.binary_opening(dense, iterations=2)
    lab, n = ndimage.label(dense)
    if n == 0:
        z = np.zeros_like(dense)
        return z, z
    sizes = ndimage.sum(dense, lab, range(1, n + 1))
    body = ndimage.binary_fill_holes(lab == (int(np.argmax(sizes)) + 1))
    lung = body & (hu_model < -400)
    lung = ndimage.binary_opening(lung, iterations=2)
    # lungs also reach the edge of the body outline where fill_holes closed them
    return body, lung


# --------------------------------------------------------------------------- augmentation
def augment(p: np.ndarray, op: str, rng: np.random.Generator) -> np.ndarray:
    """One of the method's augmentations of a 50 x 50 model-space patch."""
    p = np.asarray(p, np.float32)
    if op == "hflip":
        return p[:, ::-1].copy()
    if op == "zoom":
        z = rng.uniform(1.1, 1.35)
        big = ndimage.zoom(p, z, order=1, mode="nearest")
        o = (big.shape[0] - P) // 2
        return big[o : o + P, o : o + P].copy()
    if op in ("rot30", "rot45"):
        ang = (30.0 if op == "rot30" else 45.0) * rng.choice([-1.0, 1.0])
        return np.clip(ndimage.rotate(p, ang, reshape=False, order=1, mode="reflect"), 0, 1)
    if op == "blur":
        return ndimage.gaussian_filter(p, rng.uniform(0.6, 1.2), mode="reflect")
    raise ValueError(op)


def balance(x: np.ndarray, y: np.ndarray, target: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``x`` (subsampled or repeated) and augmentation op ids to reach ``target``."""
    n = len(x)
    if n == 0:
        raise DataError("cannot balance an empty class")
    if n >= target:
        return rng.choice(n, target, replace=False), np.zeros(target, np.int8)
    extra = target - n
    src = rng.choice(n, extra, replace=extra > n)
    ops = (np.arange(extra) % (len(AUG_OPS) - 1) + 1).astype(np.int8)
    rng.shuffle(ops)
    return np.concatenate([np.arange(n), src]), np.concatenate([np.zeros(n, np.int8), ops])


# --------------------------------------------------------------------------- split
def split_patients(labels: dict[str, int], cfg: PatchConfig) -> dict[str, str]:
    """Patient -> split; stratified by patient label, fixed seed, forced assignments kept."""
    rng = np.random.default_rng(cfg.seed)
    out: dict[str, str] = {}
    for lab in sorted(set(labels.values())):
        pids = sorted(p for p, v in labels.items() if v == lab)
        pids = [pids[i] for i in rng.permutation(len(pids))]
        n_test = int(round(cfg.test_fraction * len(pids)))
        n_val = int(round(cfg.val_fraction * len(pids)))
        for i, p in enumerate(pids):
            out[p] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    for p, s in cfg.forced.items():
        if s not in SPLITS:
            raise DataError(f"Unknown split {s!r} for patient {p}.")
        out[p] = s
    return out


# --------------------------------------------------------------------------- builders
def crop_slice_negatives(img: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Not-ROI windows of a model-space crop slice that holds no part of the nodule: padded to
    the crop field exactly like an ROI crop slice, windows at random offsets."""
    if n <= 0:
        return np.zeros((0, P, P), np.float32)
    pimg, _ = _pad_to(img, CROP_FIELD_PX, "mirror")
    h, w = pimg.shape
    offs = [(y, x) for y in range(h - P + 1) for x in range(w - P + 1)]
    sel = rng.choice(len(offs), min(n, len(offs)), replace=False)
    return _take(pimg, [offs[i] for i in sel])


def crop_patches(nod: dict, rng: np.random.Generator, cap: int, per_slice: int, empty_per_slice: int = 0):
    """ROI patches, crop-surround Not-ROI patches and nodule-free-slice Not-ROI patches of one
    nodule crop: ``(rois, surround, slice_negatives)``."""
    hu, mask = nod["image"], nod["mask"]
    spacing = tuple(nod["pixel_spacing_mm"])
    if hu.shape != mask.shape:
        raise DataError(f"The crop {nod.get('file')} has a mask of the wrong size.")
    ks = [k for k in range(hu.shape[0]) if mask[k].any()]
    per = max(2, math.ceil(cap / max(1, len(ks))))
    per = min(per, per_slice * 2)
    rois, negs = [], []
    for k in ks:
        img = prepare_slice(hu[k].astype(np.float32), spacing).image
        m = resample_to_model_spacing(mask[k], spacing, order=0).astype(np.uint8)
        h, w = img.shape
        pimg, (oy, ox) = _pad_to(img, CROP_FIELD_PX, "mirror")
        pm, _ = _pad_to(m, CROP_FIELD_PX, "zero")
        pos = roi_positions(pm)
        if pos:
            sel = rng.choice(len(pos), min(per, len(pos)), replace=False)
            rois.append(_take(pimg, [pos[i] for i in sel]))
        if h >= P and w >= P:  # surroundings with an empty mask, inside the real crop
            g = label_grid(m)
            ii, jj = np.nonzero(g == 0)
            if len(ii):
                sel = rng.choice(len(ii), min(2, len(ii)), replace=False)
                negs.append(_take(img, [(S * ii[i], S * jj[i]) for i in sel]))
    r = np.concatenate(rois) if rois else np.zeros((0, P, P), np.float32)
    if len(r) > cap:
        r = r[rng.choice(len(r), cap, replace=False)]
    n = np.concatenate(negs) if negs else np.zeros((0, P, P), np.float32)
    empty = [
        crop_slice_negatives(prepare_slice(hu[k].astype(np.float32), spacing).image, rng, empty_per_slice)
        for k in range(hu.shape[0])
        if empty_per_slice > 0 and ks and not mask[k].any()
    ]
    e = np.concatenate(empty) if empty else np.zeros((0, P, P), np.float32)
    return r, n, e


def mimic_crop(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Not-ROI patch cut to a crop-like size and mirror-padded like a small crop."""
    sh, sw = rng.integers(34, 50, size=2)
    y, x = rng.integers(0, P - sh + 1), rng.integers(0, P - sw + 1)
    sub = p[y : y + sh, x : x + sw]
    pad, _ = _pad_to(sub, CROP_FIELD_PX, "mirror")
    oy, ox = rng.integers(0, CROP_FIELD_PX - P + 1, size=2)
    return pad[oy : oy + P, ox : ox + P].copy()


def whole_study_patches(
    vol_hu: np.ndarray,
    spacing,
    masks_by_index: dict[int, np.ndarray],
    rng: np.random.Generator,
    neg_per_slice: int,
    roi_per_slice: int,
    slice_split,
    nodule_of_code,
):
    """Yield ``(split, class, patches, origin, nodule)`` from one whole series."""
    margin = max(1, int(round(NEG_MARGIN_MM / C.MODEL_PIXEL_SPACING_MM)))
    for k in range(vol_hu.shape[0]):
        split = slice_split(k)
        if split is None:
            continue
        prep = prepare_slice(vol_hu[k], spacing)
        img, hu_m = prep.image, prep.hu_model
        nm = masks_by_index.get(k)
        m = resample_to_model_spacing(nm, spacing, order=0) if nm is not None else np.zeros(img.shape, np.uint8)
        for code in (L.BENIGN_CODE, L.MALIGNANT_CODE):
            if not (m == code).any():
                continue
            pos = roi_positions((m == code).astype(np.uint8))
            if pos:
                sel = rng.choice(len(pos), min(roi_per_slice, len(pos)), replace=False)
                yield split, code, _take(img, [pos[i] for i in sel]), 1, nodule_of_code(code)
        if neg_per_slice <= 0:
            continue
        marked = m > 0
        if marked.any():
            marked = ndimage.binary_dilation(marked, iterations=margin)
        dy, dx = rng.integers(0, S, size=2)
        sub = marked[dy:, dx:]
        gh, gw = grid_shape(*sub.shape)
        free = _box_sums(marked.astype(np.float32), gh, gw, 0, P, dy, dx) == 0
        body, lung = body_and_lung(hu_m)
        core_off, core = (P - C.ROI_CORE_PX) // 2, C.ROI_CORE_PX
        body_frac = _box_sums(body.astype(np.float32), gh, gw, 0, P, dy, dx) / (P * P)
        lung_core = _box_sums(lung.astype(np.float32), gh, gw, core_off, core, dy, dx) / core**2
        dense_in_lung = (
            _box_sums(
                ((hu_m > -500) & ndimage.binary_dilation(lung, iterations=3)).astype(np.float32),
                gh,
                gw,
                core_off,
                core,
                dy,
                dx,
            )
            / core**2
        )
        w = np.where(body_frac <= 0.02, 0.05, 1.0)  # air outside the body: a few
        w = w + 3.0 * (lung_core > 0.2) + 6.0 * np.clip(dense_in_lung * 4, 0, 1) * (lung_core > 0.1)
        w = w * free
        ii, jj = np.nonzero(w > 0)
        if len(ii) == 0:
            continue
        pw = w[ii, jj] / w[ii, jj].sum()
        sel = rng.choice(len(ii), min(neg_per_slice, len(ii)), replace=False, p=pw)
        pos = [(dy + S * ii[i], dx + S * jj[i]) for i in sel]
        yield split, 0, _take(img, pos), 1, ""


def build_patch_set(roots: list[Path], out: Path, cfg: PatchConfig, log=print) -> dict:
    """Build the patch set from training-layout roots; write ``out`` (npz) atomically."""
    from .ctio import load_ct

    rng = np.random.default_rng(cfg.seed)
    pdirs = [p for r in roots for p in L.list_patients(r)]
    if not pdirs:
        raise DataError(f"No patient folders were found in {', '.join(map(str, roots))}.")
    # patient labels for the stratified split
    labels: dict[str, int] = {}
    crops: dict[str, list[dict]] = {}
    series: dict[str, list] = {}
    for pd in pdirs:
        pid = pd.name
        crops[pid] = L.read_nodules(pd)
        series[pid] = list(L.iter_series(pd))
        if not crops[pid] and not series[pid]:
            raise DataError(f"The patient folder {pd} holds neither nodule crops nor a whole study.")
        labs = [n["label"] for n in crops[pid]] + [
            n["label"] for info, _ in series[pid] for n in info.get("nodules", [])
        ]
        labels[pid] = max(labels.get(pid, 0), int("malignant" in labs))
    split_of = split_patients(labels, cfg)
    patients = sorted(labels)
    pidx = {p: i for i, p in enumerate(patients)}
    bank = _Bank()
    for pid in patients:
        sp = SPLITS.index(split_of[pid])
        for nod in crops[pid]:
            cls = {"benign": C.BENIGN, "malignant": C.MALIGNANT}.get(nod["label"])
            if cls is None:
                continue
            cap = cfg.roi_per_nodule if sp == 0 else cfg.eval_roi_per_nodule
            r, n, e = crop_patches(nod, rng, cap, cfg.roi_per_slice, cfg.crop_neg_per_slice)
            small = sp == 0 and (nod.get("diameter_mm") or np.inf) < cfg.min_train_diameter_mm
            if not small:  # evaluation splits keep every nodule
                bank.add(r, cls, pidx[pid], sp, f"{pid}/{nod['key']}", 0)
            bank.add(n, C.NOT_ROI, pidx[pid], sp, "", ORIGINS.index("crop-surround"))
            bank.add(e, C.NOT_ROI, pidx[pid], sp, "", ORIGINS.index("crop-slice"))
        for info, masks in series[pid]:
            uids = info["sop_instance_uids"]
            vol = load_ct(info["source"], info["series_uid"])
            if vol.shape[1:] != tuple(info["shape"][1:]):
                raise DataError(f"The study {info['source']} no longer matches its record for {pid}.")
            u2k = {u: i for i, u in enumerate(vol.sop_instance_uids)}
            mk: dict[int, np.ndarray] = {}
            for uid, m in masks.items():
                if uid not in u2k:
                    raise DataError(f"The mask for slice {uid} of {pid} matches no slice of {info['source']}.")
                if m.shape != vol.shape[1:]:
                    raise DataError(
                        f"The mask for slice {uid} of {pid} is {m.shape}, the slice is {vol.shape[1:]} "
                        f"(masks of the wrong size)."
                    )
                mk[u2k[uid]] = m
            del uids

            def slice_split(k: int, sp=sp) -> int | None:
                if k % max(1, cfg.slice_step):
                    return None
                if sp == 0 and (k // 10) % 5 == 2:
                    return 1
                return sp

            n_before = len(bank.x)
            for s_, cls, arr, _origin, nd in whole_study_patches(
                vol.hu,
                vol.pixel_spacing_mm,
                mk,
                rng,
                cfg.neg_per_slice,
                cfg.roi_per_slice,
                slice_split,
                lambda code, pid=pid: f"{pid}/study-{L.MASK_CODES[code]}",
            ):
                y = {L.BENIGN_CODE: C.BENIGN, L.MALIGNANT_CODE: C.MALIGNANT}.get(cls, C.NOT_ROI) if cls else C.NOT_ROI
                if y == C.NOT_ROI and cfg.mimic_fraction > 0:
                    arr = np.stack([mimic_crop(p, rng) if rng.random() < cfg.mimic_fraction else p for p in arr])
                    bank.add(arr, y, pidx[pid], s_, nd, 1)
                else:
                    bank.add(arr, y, pidx[pid], s_, nd, 1)
            log(f"  {pid} series {info['series_uid'][-12:]}: {len(bank.x) - n_before} patches")
    x = np.stack(bank.x).astype(np.float32)
    meta = bank.meta
    y = np.array([m[0] for m in meta], np.int8)
    pat = np.array([m[1] for m in meta], np.int32)
    spl = np.array([m[2] for m in meta], np.int8)
    nod = np.array([m[3] for m in meta])
    org = np.array([m[4] for m in meta], np.int8)
    aug = np.array([m[5] for m in meta], np.int8)
    raw_counts = {s: [int(((spl == i) & (y == c)).sum()) for c in range(3)] for i, s in enumerate(SPLITS)}
    log(f"raw patch counts (not-roi, benign, malignant): {raw_counts}")
    for c in range(3):
        if ((spl == 0) & (y == c)).sum() == 0:
            raise DataError(f"The training split has no {C.CLASS_LABELS[c]} patch (an empty class).")
    # balance the training split
    tr = np.nonzero(spl == 0)[0]
    target = cfg.per_class or int(max(((y[tr] == c).sum()) for c in range(3)))
    keep_idx, keep_aug = [], []
    for c in range(3):
        ic = tr[y[tr] == c]
        idx, ops = balance(x[ic], y[ic], target, rng)
        keep_idx.append(ic[idx])
        keep_aug.append(ops)
    ktr = np.concatenate(keep_idx)
    atr = np.concatenate(keep_aug)
    xtr = x[ktr].copy()
    for i in np.nonzero(atr)[0]:
        xtr[i] = augment(xtr[i], AUG_OPS[atr[i]], rng)
        if rng.random() < 0.5 and AUG_OPS[atr[i]] != "hflip":
            xtr[i] = xtr[i][:, ::-1]
    rest = np.nonzero(spl != 0)[0]
    order = np.concatenate([np.arange(len(ktr)), len(ktr) + np.arange(len(rest))])
    X = np.concatenate([xtr, x[rest]])[order].astype(np.float16)
    arrays = dict(
        x=X,
        y=np.concatenate([y[ktr], y[rest]]),
        patient=np.concatenate([pat[ktr], pat[rest]]),
        split=np.concatenate([spl[ktr], spl[rest]]),
        nodule=np.concatenate([nod[ktr], nod[rest]]),
        origin=np.concatenate([org[ktr], org[rest]]),
        aug=np.concatenate([org[ktr] * 0 + atr, aug[rest]]).astype(np.int8),
        patients=np.array(patients),
        patient_split=np.array([split_of[p] for p in patients]),
        patient_label=np.array([labels[p] for p in patients], np.int8),
    )
    counts = {
        s: [int(((arrays["split"] == i) & (arrays["y"] == c)).sum()) for c in range(3)] for i, s in enumerate(SPLITS)
    }
    summary = {
        "patients": {s: int(sum(1 for p in patients if split_of[p] == s)) for s in SPLITS},
        "raw_counts": raw_counts,
        "counts": counts,
        "per_class": int(target),
        "augmented": int((atr > 0).sum()),
        "config": {k: v for k, v in cfg.__dict__.items()},
    }
    out = Path(out)
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    L.write_json(out.with_suffix(".json"), {**summary, "split": split_of})
    return summary


def replace_patches(arrays: dict[str, np.ndarray], idx: np.ndarray, patches, patients, origin: int) -> None:
    """Overwrite the patches at ``idx`` in place (label unchanged) with new, un-augmented ones."""
    if len(idx) == 0:
        return
    arrays["x"][idx] = np.stack(list(patches)).astype(np.float16)
    arrays["patient"][idx] = np.asarray(patients)
    arrays["origin"][idx] = origin
    arrays["aug"][idx] = 0
    arrays["nodule"][idx] = ""


def write_derived_patch_set(src: Path, out: Path, arrays: dict[str, np.ndarray], key: str, info: dict) -> None:
    """Write ``arrays`` to ``out`` (atomically) with ``src``'s summary plus ``info`` under ``key``."""
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    summary = L.read_json(Path(src).with_suffix(".json"))
    summary[key] = info
    L.write_json(Path(out).with_suffix(".json"), summary)


def load_patch_set(path: Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The patch set {path} does not exist (run the patches command first).")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"The patch set {path} could not be read: {exc}") from exc
