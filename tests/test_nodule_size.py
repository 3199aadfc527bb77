"""Long axis, short axis and mean diameter of a cross-section (the Fleischner measure)."""

from __future__ import annotations

import numpy as np
import pytest

from lungct_viewer.core.nodule_size import largest_section_axes, slice_axes


def _ellipse(a_mm, b_mm, angle_deg, spacing=(0.5, 0.5), size=200):
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    y = (yy + 0.5 - size / 2) * spacing[0]
    x = (xx + 0.5 - size / 2) * spacing[1]
    t = np.deg2rad(angle_deg)
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    return (u / a_mm) ** 2 + (v / b_mm) ** 2 <= 1.0


@pytest.mark.parametrize("angle", [0, 30, 72])
def test_an_ellipse_measures_its_axes_whatever_its_orientation(angle):
    ax = slice_axes(_ellipse(10.0, 5.0, angle), (0.5, 0.5))  # 20 x 10 mm
    assert ax.long_mm == pytest.approx(20.0, abs=1.0)
    assert ax.short_mm == pytest.approx(10.0, abs=1.0)
    assert ax.mean_mm == pytest.approx(15.0, abs=1.0)


def test_a_disc_measures_its_diameter_on_anisotropic_pixels():
    ax = slice_axes(_ellipse(4.0, 4.0, 0, spacing=(0.6, 0.9), size=40), (0.6, 0.9))
    assert ax.long_mm == pytest.approx(8.0, abs=1.2) and ax.short_mm == pytest.approx(8.0, abs=1.2)


def test_small_and_empty_objects():
    one = np.zeros((5, 5), bool)
    one[2, 2] = True
    ax = slice_axes(one, (0.7, 0.7))
    assert ax.long_mm == pytest.approx(0.7) and ax.short_mm == pytest.approx(0.7)
    line = np.zeros((5, 9), bool)
    line[2, 1:8] = True  # 7 pixels in a row
    ax = slice_axes(line, (1.0, 1.0))
    assert ax.long_mm == pytest.approx(7.0) and ax.short_mm == pytest.approx(1.0)
    square = np.zeros((12, 12), bool)
    square[2:9, 2:9] = True  # 7 x 7 pixels: its diagonal is its long axis
    ax = slice_axes(square, (1.0, 1.0))
    assert ax.long_mm == pytest.approx(6 * np.sqrt(2) + 1) and ax.short_mm == pytest.approx(6 * np.sqrt(2) + 1)
    assert slice_axes(np.zeros((4, 4), bool), (1.0, 1.0)).long_mm == 0.0


def test_a_3d_object_measures_its_largest_cross_section():
    small, big = _ellipse(3.0, 3.0, 0, size=40), _ellipse(8.0, 4.0, 45, size=40)
    ax = largest_section_axes([small, big, small], (0.5, 0.5))
    assert ax.long_mm == pytest.approx(16.0, abs=1.0) and ax.short_mm == pytest.approx(8.0, abs=1.0)


def test_the_short_axis_is_never_longer_than_the_long_axis():
    """One pixel on 0.8 x 0.7 mm pixels measures 0.8 by 0.7 mm; a diamond measures its two
    equal diagonals, the short axis not a rounding error above the long one."""
    one = np.zeros((3, 3), bool)
    one[1, 1] = True
    a = slice_axes(one, (0.8, 0.7))
    assert (a.long_mm, a.short_mm) == pytest.approx((0.8, 0.7))
    yy, xx = np.mgrid[0:41, 0:41]
    for spacing in ((0.7, 0.7), (0.6640625, 0.6640625), (0.9, 0.5)):
        for r in range(1, 20):
            a = slice_axes(np.abs(yy - 20) + np.abs(xx - 20) <= r, spacing)
            assert a.short_mm <= a.long_mm
