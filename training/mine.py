"""``mine-negatives``: hard-negative mining with the viewer's own pipeline.

A model runs over the whole studies of *training* patients (the viewer's ``Analyzer``: same
preprocessing, lung field and dense inference). In-field windows that the model calls ROI
(``P(benign) + P(malignant) >= 0.5``) although they hold no marked pixel (5 mm margin) are
false positives: the most confident ones (at most ``per_slice`` per slice) are added to the
training split as Not-ROI patches (origin ``mined``), replacing randomly chosen Not-ROI
patches so that the classes stay balanced (at most ``max_fraction`` of the class is mined).
Slices that belong to the validation blocks are never mined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from lungct_viewer.core import constants as C
from lungct_viewer.core.detection import roi_probability
from lungct_viewer.core.patches import label_grid, patch_windows
from lungct_viewer.core.preprocessing import prepare_slice, resample_to_model_spacing

from . import layout as L
from .patchset import NEG_MARGIN_MM, ORIGINS, load_patch_set, replace_patches, write_derived_patch_set

MINED_ORIGIN = ORIGINS.index("mined")


def mine_negatives(
    model_path: Path,
    patches: Path,
    roots: list[Path],
    out: Path,
    per_slice: int = 20,
    max_fraction: float = 0.4,
    seed: int = 1234,
    log=print,
) -> dict:
    from lungct_viewer.core.model import load_model
    from lungct_viewer.core.pipeline import Analyzer

    from .ctio import load_ct

    rng = np.random.default_rng(seed)
    data = load_patch_set(patches)
    split_of = {str(p): str(s) for p, s in zip(data["patients"], data["patient_split"])}
    pidx = {str(p): i for i, p in enumerate(data["patients"])}
    analyzer = Analyzer(load_model(model_path))
    margin = max(1, int(round(NEG_MARGIN_MM / C.MODEL_PIXEL_SPACING_MM)))
    mined, mined_pat = [], []
    for root in roots:
        for pdir in L.list_patients(root):
            if split_of.get(pdir.name) != "train":
                continue
            for info, masks in L.iter_series(pdir):
                vol = load_ct(info["source"], info["series_uid"])
                u2k = {u: i for i, u in enumerate(vol.sop_instance_uids)}
                full = {u2k[u]: m for u, m in masks.items() if u in u2k}
                order = [k for k in range(vol.num_slices) if (k // 10) % 5 != 2]  # not validation blocks
                analysis = analyzer.analyze(vol, order=order)
                n0 = len(mined)
                for k, sa in analysis.slices.items():
                    p = sa.probs
                    roi = sa.in_field & (roi_probability(p) >= C.DEFAULT_MIN_ROI_PROBABILITY)
                    if not roi.any():
                        continue
                    prep = prepare_slice(vol.hu[k], vol.pixel_spacing_mm)
                    m = full.get(k)
                    marked = np.zeros(prep.image.shape, bool)
                    if m is not None:
                        marked = resample_to_model_spacing(m, vol.pixel_spacing_mm, order=0) > 0
                        if marked.any():
                            marked = ndimage.binary_dilation(marked, iterations=margin)
                    free = label_grid(marked) == 0
                    cand = np.argwhere(roi & free)
                    if not len(cand):
                        continue
                    score = roi_probability(p[cand[:, 0], cand[:, 1]])
                    top = cand[np.argsort(-score)[:per_slice]]
                    win = patch_windows(prep.image)
                    for i, j in top:
                        mined.append(np.array(win[i, j], np.float32))
                        mined_pat.append(pidx[pdir.name])
                log(f"  {pdir.name} {info['series_uid'][-10:]}: {len(mined) - n0} hard negatives")
    tr_neg = np.nonzero((data["split"] == 0) & (data["y"] == C.NOT_ROI))[0]
    n_max = int(max_fraction * len(tr_neg))
    if len(mined) > n_max:
        sel = rng.choice(len(mined), n_max, replace=False)
        mined = [mined[i] for i in sel]
        mined_pat = [mined_pat[i] for i in sel]
    replace = rng.choice(tr_neg, len(mined), replace=False) if mined else np.zeros(0, int)
    new = {k: v.copy() for k, v in data.items()}
    replace_patches(new, replace, mined, mined_pat, MINED_ORIGIN)
    info = {"model": str(model_path), "count": len(mined), "per_slice": per_slice, "max_fraction": max_fraction}
    write_derived_patch_set(Path(patches), Path(out), new, "mined_negatives", info)
    log(f"{len(mined)} hard negatives replace as many random Not-ROI training patches -> {out}")
    return info
