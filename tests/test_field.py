"""The lung field: its fast computation equals the rule written with plain morphology."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungct_viewer.core import constants as C
from lungct_viewer.core.field import (
    LUNG_MARGIN_PX,
    MIN_LUNG_AREA_PX,
    field_grid,
    lung_mask,
)
from lungct_viewer.core.lung import AIR_HU as LUNG_HU
from lungct_viewer.core.lung import BODY_HU
from lungct_viewer.core.patches import grid_shape
from lungct_viewer.core.preprocessing import prepare_slice


def lung_mask_by_rule(hu: np.ndarray) -> np.ndarray:
    """The module's rule with whole-slice morphology (fill holes, label)."""
    lab, n = ndimage.label(hu > BODY_HU)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)))
    lab, n = ndimage.label(body & (hu < LUNG_HU))
    sizes = np.bincount(lab.ravel())
    keep = sizes >= MIN_LUNG_AREA_PX
    keep[0] = False
    return keep[lab]


def field_grid_by_rule(hu: np.ndarray) -> np.ndarray:
    """Dilate the lungs, then look for a dilated pixel in every patch's central core."""
    gh, gw = grid_shape(*hu.shape)
    lungs = lung_mask_by_rule(hu)
    if lungs.any():
        lungs = ndimage.binary_dilation(lungs, iterations=LUNG_MARGIN_PX)
    a = (C.PATCH_SIZE_PX - C.ROI_CORE_PX) // 2
    out = np.zeros((gh, gw), dtype=bool)
    for i in range(gh):
        for j in range(gw):
            y, x = i * C.PATCH_STRIDE_PX + a, j * C.PATCH_STRIDE_PX + a
            out[i, j] = lungs[y : y + C.ROI_CORE_PX, x : x + C.ROI_CORE_PX].any()
    return out


def _blobs(rng, shape, n):
    """Random HU slice: soft tissue, air and lung-like blobs, some touching the border."""
    hu = np.full(shape, -1000.0, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n):
        cy, cx = rng.uniform(-10, shape[0] + 10), rng.uniform(-10, shape[1] + 10)
        ry, rx = rng.uniform(5, shape[0] / 2), rng.uniform(5, shape[1] / 2)
        hu[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = rng.choice([40.0, -850.0, -1000.0, -450.0])
    return hu


def test_field_equals_rule_on_random_slices():
    rng = np.random.default_rng(0)
    checked = 0
    for k in range(60):
        shape = [(50, 50), (64, 97), (160, 160), (203, 251)][k % 4]
        hu = _blobs(rng, shape, int(rng.integers(1, 12)))
        assert np.array_equal(lung_mask(hu), lung_mask_by_rule(hu))
        f = field_grid(hu)
        assert np.array_equal(f, field_grid_by_rule(hu))
        checked += int(0 < f.sum() < f.size)
    assert checked >= 10  # many slices have a partial field: the comparison means something


def test_field_edge_cases():
    assert field_grid(np.zeros((40, 80), np.float32)).shape == (0, 0)
    assert not field_grid(np.full((120, 120), -1000.0, np.float32)).any()  # no body
    assert not field_grid(np.full((120, 120), 40.0, np.float32)).any()  # body, no lungs
    hu = np.full((120, 120), 40.0, np.float32)
    hu[:, :20] = -850.0  # air along the border of the body: not lungs (outside after filling)
    hu[50:70, 50:70] = -850.0  # an enclosed air pocket large enough to count as lung
    assert np.array_equal(field_grid(hu), field_grid_by_rule(hu))
    assert field_grid(hu).any()


def test_field_equals_rule_on_phantom():
    from lungct_viewer.core.phantom import phantom_volume

    vol = phantom_volume(seed=3, n_slices=6, size=256).volume
    for i in range(vol.num_slices):
        hu = prepare_slice(vol.hu[i], vol.pixel_spacing_mm).hu_model
        assert np.array_equal(field_grid(hu), field_grid_by_rule(hu))


@pytest.mark.realdata
def test_field_equals_rule_on_real_studies(lidc_0001, lung_dx_a0001):
    from lungct_viewer.core.dicom import load_study

    for folder, step in ((lidc_0001, 3), (lung_dx_a0001, 2)):
        vol, _ = load_study(folder)
        for i in range(0, vol.num_slices, step):
            hu = prepare_slice(vol.hu[i], vol.pixel_spacing_mm).hu_model
            assert np.array_equal(lung_mask(hu), lung_mask_by_rule(hu))
            assert np.array_equal(field_grid(hu), field_grid_by_rule(hu))
