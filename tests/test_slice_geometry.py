"""Slice geometry shared by the loader and the volume (:mod:`lungct_viewer.core.geometry`)."""

from __future__ import annotations

import numpy as np
import pytest

from lungct_viewer.core import geometry
from lungct_viewer.core.study import CTVolume


def test_slice_normal_is_unit_row_cross_column() -> None:
    np.testing.assert_allclose(geometry.slice_normal([1, 0, 0, 0, 1, 0]), [0, 0, 1])
    np.testing.assert_allclose(geometry.slice_normal([1, 0, 0, 0, 0, -1]), [0, 1, 0])  # coronal
    # cosines that are not quite unit length (rounded in the header) still give a unit normal
    n = geometry.slice_normal([0.999, 0.0, 0.0, 0.0, 0.7, -0.7])
    assert np.linalg.norm(n) == pytest.approx(1.0)
    np.testing.assert_allclose(n, [0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)


@pytest.mark.parametrize(
    "bad", [[1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1], [1, 0, 0, 0, float("nan"), 0], "abc"]
)
def test_slice_normal_rejects_orientations_without_a_plane(bad) -> None:
    assert geometry.slice_normal(bad) is None


def test_projected_positions_spacing_and_axial() -> None:
    normal = geometry.slice_normal([1, 0, 0, 0, 1, 0])
    pos = np.array([[3.0, 4.0, z] for z in (-10.0, -12.5, -12.5, -12.5, -15.0)])
    proj = geometry.projected_positions(pos, normal)
    np.testing.assert_allclose(proj, [-10.0, -12.5, -12.5, -12.5, -15.0])
    assert geometry.slice_spacing(proj) == pytest.approx(2.5)  # the duplicates are ignored
    assert geometry.slice_spacing(proj[:1]) is None
    assert geometry.slice_spacing([1.0, 1.0]) is None
    assert geometry.is_axial(normal)
    assert not geometry.is_axial(geometry.slice_normal([1, 0, 0, 0, 0, -1]))


def test_volume_uses_the_shared_geometry() -> None:
    hu = np.zeros((4, 8, 8), np.int16)
    vol = CTVolume.from_array(hu, slice_spacing_mm=1.25)
    np.testing.assert_allclose(vol.normal, [0, 0, 1])
    np.testing.assert_allclose(vol.slice_positions_mm, [0.0, -1.25, -2.5, -3.75])
    assert vol.slice_spacing_mm == pytest.approx(1.25)
    # a tilted gantry: unit normal, positions measured along it
    c = np.sqrt(0.5)
    tilted = CTVolume(
        hu=hu,
        pixel_spacing_mm=(1.0, 1.0),
        orientation=np.array([1, 0, 0, 0, c, -c]),
        image_positions_mm=np.array([[0, k * c, k * c] for k in (0, -1, -2, -3)], dtype=float),
        sop_instance_uids=("1", "2", "3", "4"),
        series_uid="2.25.9",
    )
    np.testing.assert_allclose(tilted.slice_positions_mm, [0, -1, -2, -3], atol=1e-12)
    with pytest.raises(ValueError, match="orientation"):
        CTVolume(
            hu=hu,
            pixel_spacing_mm=(1.0, 1.0),
            orientation=np.zeros(6),
            image_positions_mm=np.zeros((4, 3)),
            sop_instance_uids=("1", "2", "3", "4"),
            series_uid="x",
        )
