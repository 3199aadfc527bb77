"""``add-counterfactuals``: Not-ROI patches from the nodule crops with the nodule removed.

Why: the ROI classes come from the crops of hundreds of patients and scanners, but the whole
studies that supply Not-ROI background come from very few patients. A network can then learn
"this patient's lung texture" instead of "a nodule is here", and on a new patient it calls the
whole lung an ROI. A counterfactual negative is the *same* crop window (same patient, scanner,
reconstruction and mirror padding) with the nodule replaced by lung parenchyma, so the only
difference between an ROI patch and its Not-ROI twin is the nodule itself.

Nodule removal (per crop slice, in HU, before the shared preprocessing): the mask dilated by
2 px is filled by harmonic (diffusion) interpolation from the surrounding pixels, with
surrounding pixels denser than -500 HU (vessels, pleura) replaced by the local lung value so
that no soft-tissue blob is smeared into the hole, then CT-like noise (the crop's own lung
noise level, slightly correlated) is added. Windows are taken at the positions where the
original crop gave ROI patches; mirror padding is the same as for ROI crop patches.

The new patches replace randomly chosen Not-ROI patches of the same split (training and
validation), so class counts stay as they were; ``--fraction`` of each split's Not-ROI class is
replaced at most.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from lungct_viewer.core import constants as C
from lungct_viewer.core.errors import DataError
from lungct_viewer.core.preprocessing import prepare_slice, resample_to_model_spacing

from . import layout as L
from .patchset import (
    CROP_FIELD_PX,
    ORIGINS,
    SPLITS,
    _pad_to,
    _take,
    load_patch_set,
    replace_patches,
    roi_positions,
    write_derived_patch_set,
)

COUNTERFACTUAL_ORIGIN = ORIGINS.index("counterfactual")
LUNG_MAX_HU = -500.0


def remove_nodule(
    hu: np.ndarray, mask: np.ndarray, rng: np.random.Generator, iterations: int = 200
) -> np.ndarray | None:
    """One crop slice (HU) with the masked nodule replaced by lung-like parenchyma.

    Returns ``None`` when too little lung surrounds the nodule to estimate its texture.
    """
    hu = np.asarray(hu, np.float32)
    hole = ndimage.binary_dilation(np.asarray(mask, bool), iterations=2)
    ring = ndimage.binary_dilation(hole, iterations=3) & ~hole
    lung = ring & (hu < LUNG_MAX_HU)
    if hole.all() or lung.sum() < 8:
        return None
    lung_value = float(np.median(hu[lung]))
    src = hu.copy()
    src[~hole & (hu >= LUNG_MAX_HU)] = lung_value  # boundary without vessels or pleura
    out = src.copy()
    out[hole] = lung_value
    for _ in range(iterations):  # Jacobi iterations of the Laplace equation inside the hole
        avg = ndimage.uniform_filter(out, size=3, mode="nearest")
        out[hole] = avg[hole]
    background = (~hole) & (hu < LUNG_MAX_HU)
    resid = hu - ndimage.gaussian_filter(hu, 1.5)
    sigma = float(np.std(resid[background])) if background.sum() > 20 else 30.0
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, hu.shape).astype(np.float32), 0.7)
    noise *= sigma / max(float(noise.std()), 1e-6)
    result = hu.copy()
    result[hole] = out[hole] + noise[hole]
    return result


def counterfactual_patches(nod: dict, rng: np.random.Generator, per_nodule: int) -> np.ndarray:
    """Up to ``per_nodule`` model-space 50 x 50 Not-ROI windows of one crop, nodule removed."""
    hu, mask = nod["image"], nod["mask"]
    spacing = tuple(nod["pixel_spacing_mm"])
    if hu.shape != mask.shape:
        raise DataError(f"The crop {nod.get('file')} has a mask of the wrong size.")
    ks = [k for k in range(hu.shape[0]) if mask[k].any()]
    out = []
    for k in rng.permutation(ks)[: max(1, per_nodule // 2)]:
        clean = remove_nodule(hu[k], mask[k], rng)
        if clean is None:
            continue
        img = prepare_slice(clean, spacing).image
        m = resample_to_model_spacing(mask[k], spacing, order=0).astype(np.uint8)
        pimg, _ = _pad_to(img, CROP_FIELD_PX, "mirror")
        pm, _ = _pad_to(m, CROP_FIELD_PX, "zero")
        pos = roi_positions(pm)  # the windows that were ROI patches before removal
        if pos:
            sel = rng.choice(len(pos), min(2, len(pos)), replace=False)
            out.append(_take(pimg, [pos[i] for i in sel]))
    if not out:
        return np.zeros((0, C.PATCH_SIZE_PX, C.PATCH_SIZE_PX), np.float32)
    patches = np.concatenate(out)
    return patches[:per_nodule]


def add_counterfactuals(
    patches: Path, roots: list[Path], out: Path, per_nodule: int = 8, fraction: float = 0.5, seed: int = 1234, log=print
) -> dict:
    """Write ``out``: ``patches`` with counterfactual negatives replacing random Not-ROI ones."""
    rng = np.random.default_rng(seed)
    data = load_patch_set(patches)
    split_of = {str(p): str(s) for p, s in zip(data["patients"], data["patient_split"])}
    pidx = {str(p): i for i, p in enumerate(data["patients"])}
    made: dict[int, list[tuple[np.ndarray, int]]] = {i: [] for i in range(len(SPLITS))}
    n_crops = 0
    for root in roots:
        for pdir in L.list_patients(root):
            sp = split_of.get(pdir.name)
            if sp not in ("train", "val"):
                continue
            for nod in L.read_nodules(pdir):
                n_crops += 1
                for p in counterfactual_patches(nod, rng, per_nodule):
                    made[SPLITS.index(sp)].append((p, pidx[pdir.name]))
    if n_crops == 0:
        raise DataError("No nodule crops were found for the training or validation patients.")
    new = {k: v.copy() for k, v in data.items()}
    counts = {}
    for sp, items in made.items():
        neg = np.nonzero((data["split"] == sp) & (data["y"] == C.NOT_ROI))[0]
        n = min(len(items), int(fraction * len(neg)))
        counts[SPLITS[sp]] = n
        if n == 0:
            continue
        pick = rng.choice(len(items), n, replace=False)
        replace = rng.choice(neg, n, replace=False)
        replace_patches(new, replace, [items[i][0] for i in pick], [items[i][1] for i in pick], COUNTERFACTUAL_ORIGIN)
    info = {"count": counts, "per_nodule": per_nodule, "fraction": fraction, "crops": n_crops}
    write_derived_patch_set(Path(patches), Path(out), new, "counterfactual_negatives", info)
    log(f"counterfactual negatives (nodule removed from its crop) replace random Not-ROI patches: {counts} -> {out}")
    return info
