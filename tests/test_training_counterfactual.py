"""Counterfactual Not-ROI patches: the nodule is removed, everything else is kept."""

from __future__ import annotations

import numpy as np

from training.counterfactual import counterfactual_patches, remove_nodule


def _crop(rng, size=44, radius=5.0):
    yy, xx = np.mgrid[:size, :size]
    hu = rng.normal(-850, 25, (size, size)).astype(np.float32)
    hu[:, :6] = 40.0  # chest wall along one side
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2
    hu[mask] = 30.0
    return hu, mask


def test_remove_nodule_fills_with_lung_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    hu, mask = _crop(rng)
    clean = remove_nodule(hu, mask, np.random.default_rng(1))
    assert clean is not None
    assert clean[mask].mean() < -700  # the nodule is gone, lung-like values instead
    assert 5 < clean[mask].std() < 80  # with noise, not a flat patch
    far = np.ones_like(mask)
    far[12:32, 12:32] = False
    assert np.array_equal(clean[far], hu[far])  # nothing else changed
    assert np.array_equal(clean[:, :6], hu[:, :6])


def test_remove_nodule_refuses_without_surrounding_lung():
    hu = np.full((20, 20), 40.0, np.float32)
    mask = np.zeros((20, 20), bool)
    mask[8:12, 8:12] = True
    assert remove_nodule(hu, mask, np.random.default_rng(0)) is None


def test_counterfactual_patches_are_windows_of_the_cleaned_crop():
    rng = np.random.default_rng(2)
    hu, mask = _crop(rng)
    nod = {"image": np.stack([hu, hu]), "mask": np.stack([mask, mask]), "pixel_spacing_mm": (0.7, 0.7)}
    p = counterfactual_patches(nod, np.random.default_rng(3), per_nodule=4)
    assert p.shape[1:] == (50, 50) and 1 <= len(p) <= 4
    assert p.dtype == np.float32 and p.min() >= 0.0 and p.max() <= 1.0
    # no nodule-bright pixel left in the patch centre (input 30 HU -> 0.74 in network units)
    assert (p[:, 20:30, 20:30] < 0.4).all()
