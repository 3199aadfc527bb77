"""Thick-slab reconstructions of thin-slice series, and partial volume when a nodule is pasted
into thick slices."""

from __future__ import annotations

import numpy as np
import pytest

from lungct_viewer.core.study import CTVolume
from training.ground_truth import StudyTruth, TruthNodule
from training.second_reading import partial_volume
from training.slabs import slab_factors, slab_truth, thick_slab


def test_slab_factors_make_thick_series_only_from_thin_ones():
    assert slab_factors(2.5, (5.0, 7.5)) == [2, 3]
    assert slab_factors(2.0, (5.0, 7.5)) == [2, 4]  # 4 mm and 8 mm
    assert slab_factors(1.0, (5.0,)) == [5]
    assert slab_factors(5.0, (5.0, 7.5)) == [2]  # 7.5 / 5 rounds to 2: a 10 mm series
    assert slab_factors(8.0, (5.0, 7.5)) == []  # already thick
    assert slab_factors(None) == [] and slab_factors(0.0) == []


def test_a_slab_is_the_mean_of_its_thin_slices_at_their_mean_position():
    hu = np.arange(7 * 4 * 4, dtype=np.int16).reshape(7, 4, 4)
    vol = CTVolume.from_array(hu, pixel_spacing_mm=(0.7, 0.8), slice_spacing_mm=2.5, series_uid="2.25.9")
    thick = thick_slab(vol, 3)
    assert thick.num_slices == 2  # the seventh slice does not fill a slab
    assert thick.hu.dtype == np.int16
    np.testing.assert_array_equal(thick.hu[0], np.rint(hu[0:3].mean(axis=0)))
    np.testing.assert_array_equal(thick.hu[1], np.rint(hu[3:6].mean(axis=0)))
    assert thick.slice_spacing_mm == pytest.approx(7.5)
    np.testing.assert_allclose(thick.image_positions_mm[0], vol.image_positions_mm[0:3].mean(axis=0))
    assert thick.pixel_spacing_mm == (0.7, 0.8)
    assert thick.series_uid == "2.25.9.slab3" and thick.sop_instance_uids[1] == vol.sop_instance_uids[3] + ".slab3"
    assert set(thick.sop_instance_uids).isdisjoint(vol.sop_instance_uids)  # never mistaken for the source
    with pytest.raises(ValueError):
        thick_slab(vol, 1)


def test_truth_moves_to_the_slab_holding_each_slice():
    nod = TruthNodule(1, "malignant", 4, {4: (10, 10, 20, 20), 5: (8, 12, 18, 24), 6: (9, 9, 15, 15)})
    truth = StudyTruth([nod], [(5, 30.0, 40.0), (9, 1.0, 1.0)], "lidc-xml")
    moved = slab_truth(truth, 2, n_slabs=4)
    assert moved.nodules[0].boxes == {2: (8, 10, 20, 24), 3: (9, 9, 15, 15)}
    assert moved.nodules[0].label == "malignant" and moved.nodules[0].id == 1
    assert moved.other_marks == [(2, 30.0, 40.0)]  # slice 9 would be slab 4, past the last slab


def test_partial_volume_makes_a_small_nodule_faint_on_thick_slices_not_missing():
    """3 mm of nodule on 1 mm slices sampled onto slices five times thicker, at several
    positions: sampled point-wise the nodule is at full density on one and missing on another;
    averaged over each thick slice it is always there, fainter than the nodule."""
    from scipy import ndimage

    zoom = (0.2, 1.0, 1.0)
    point, averaged = [], []
    for shift in range(5):
        col = np.full((20, 1, 1), -850.0)
        col[8 + shift : 11 + shift] = 50.0
        point.append(ndimage.zoom(col, zoom, order=1).max())
        averaged.append(ndimage.zoom(partial_volume(col, zoom), zoom, order=1).max())
    assert min(point) == -850.0 and max(point) == 50.0  # missed, or sharp
    assert all(-850.0 + 0.2 * 900 < p < 50.0 for p in averaged)  # always there, never sharp
    # the box is centred: a symmetric input stays symmetric
    col = np.full((21, 1, 1), -850.0)
    col[9:12] = 50.0
    out = partial_volume(col, zoom)[:, 0, 0]
    np.testing.assert_allclose(out, out[::-1], atol=1e-3)
    # along axes that are not shrunk nothing changes
    np.testing.assert_array_equal(partial_volume(col, (1.0, 1.0, 1.0)), col.astype(np.float32))
