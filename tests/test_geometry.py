"""Preprocessing, patch geometry and the labelling rule."""

from __future__ import annotations

import numpy as np
import pytest

from lungct_viewer.core import constants as C
from lungct_viewer.core.patches import coverage_counts, extract_patches, grid_shape, label_grid, label_patch, patch_box
from lungct_viewer.core.preprocessing import (
    hu_to_network_input,
    model_shape,
    model_to_native,
    native_per_model_px,
    prepare_slice,
    resample_to_model_spacing,
)


def test_hu_to_network_input_range_and_monotonic():
    hu = np.array([-3000, -1000, -300, 400, 3000], dtype=np.int16)
    x = hu_to_network_input(hu)
    assert x.dtype == np.float32
    assert x[0] == 0.0 and x[1] == 0.0 and x[3] == 1.0 and x[4] == 1.0
    assert 0.0 < x[2] < 1.0
    assert x[2] == pytest.approx(700 / 1400)


def test_grid_shape_512():
    assert grid_shape(512, 512) == (47, 47)
    assert grid_shape(49, 600) == (0, 0)
    assert extract_patches(np.zeros((512, 512), np.float32)).shape == (47 * 47, 50, 50)


def test_no_resampling_near_model_spacing():
    assert native_per_model_px((0.703125, 0.703125)) == (1.0, 1.0)
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert resample_to_model_spacing(img, (0.7, 0.7)) is img


def test_resampling_keeps_physical_size():
    # 0.84 mm pixels: a 512 px field of 430 mm becomes ~614 model px at 0.7 mm
    f = native_per_model_px((0.841796875, 0.841796875))
    h, w = model_shape((512, 512), f)
    assert abs(h * C.MODEL_PIXEL_SPACING_MM - 512 * 0.841796875) < 1.0
    # a bright square of 21 x 21 mm stays 21 mm wide after resampling
    img = np.full((512, 512), -800.0, np.float32)
    img[200:225, 300:325] = 100.0  # 25 px * 0.8418 mm = 21 mm
    out = resample_to_model_spacing(img, (0.841796875, 0.841796875))
    width_px = (out[int(212 / f[0])] > -350).sum()
    assert abs(width_px * C.MODEL_PIXEL_SPACING_MM - 25 * 0.841796875) <= 1.5


def test_model_to_native_round_trip_of_a_region():
    sp = (0.5, 0.5)
    f = native_per_model_px(sp)
    mask = np.zeros((300, 300), bool)
    mask[100:150, 60:90] = True
    m = resample_to_model_spacing(mask.astype(np.uint8), sp, order=0)
    back = model_to_native(m, mask.shape, f)
    assert back.shape == mask.shape
    agree = (back.astype(bool) == mask).mean()
    assert agree > 0.995


def test_prepare_slice_shapes():
    hu = np.full((400, 380), -1000, np.int16)
    p = prepare_slice(hu, (0.9, 0.6))
    assert p.image.shape == model_shape((400, 380), p.native_per_model)
    assert p.native_shape == (400, 380)
    with pytest.raises(ValueError):
        prepare_slice(hu, (0.0, 0.7))


def test_label_grid_matches_single_patch_rule():
    rng = np.random.default_rng(0)
    mask = np.zeros((150, 170), bool)
    mask[40:58, 60:75] = True
    mask[rng.integers(0, 150, 30), rng.integers(0, 170, 30)] = True
    grid = label_grid(mask)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            y0, x0, y1, x1 = patch_box(i, j)
            want = label_patch(mask[y0:y1, x0:x1])
            assert grid[i, j] == (-1 if want is None else want)
    assert (grid == 1).any() and (grid == 0).any() and (grid == -1).any()


def test_coverage_counts_matches_brute_force():
    rng = np.random.default_rng(1)
    flags = rng.random((8, 9)) < 0.3
    shape = (120, 130)
    got = coverage_counts(flags, shape)
    want = np.zeros(shape, np.int32)
    for i, j in zip(*np.nonzero(flags)):
        y0, x0, y1, x1 = patch_box(i, j)
        want[y0:y1, x0:x1] += 1
    np.testing.assert_array_equal(got, want)
    assert got.max() <= 25
