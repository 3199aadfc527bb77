"""The dense fully convolutional path equals patch-by-patch classification."""

from __future__ import annotations

import numpy as np
import pytest

from lungct_viewer.core.inference import DenseClassifier, classify_patches_reference
from lungct_viewer.core.model import build_model


@pytest.fixture(scope="module")
def sharp_model():
    """Random weights, with the output layer scaled so probabilities are far from uniform."""
    m = build_model(seed=7)
    fc2 = m.get_layer("fc2")
    k, b = fc2.get_weights()
    fc2.set_weights([k * 60.0, b])
    return m


@pytest.mark.parametrize("shape", [(50, 50), (60, 70), (59, 121), (131, 97), (200, 240)])
def test_dense_matches_reference_random(sharp_model, shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.random(shape, dtype=np.float32)
    dense = DenseClassifier(sharp_model).predict(img)
    ref = classify_patches_reference(sharp_model, img)
    assert dense.shape == ref.shape == ((shape[0] - 50) // 10 + 1, (shape[1] - 50) // 10 + 1, 3)
    # the check is meaningful: outputs vary a lot between patches
    assert ref[..., 0].std() > 0.05 or ref.shape[:2] == (1, 1)
    assert np.abs(dense - ref).max() <= 1e-4


def test_dense_full_slice_grid_is_47x47(sharp_model):
    img = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    out = DenseClassifier(sharp_model).predict(img)
    assert out.shape == (47, 47, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_dense_batch_equals_single(sharp_model):
    rng = np.random.default_rng(3)
    imgs = rng.random((3, 90, 110), dtype=np.float32)
    d = DenseClassifier(sharp_model)
    batch = d.predict_batch(imgs)
    for k in range(3):
        assert np.abs(batch[k] - d.predict(imgs[k])).max() <= 1e-5


@pytest.mark.realdata
def test_dense_matches_reference_on_real_slice(sharp_model, lidc_0001):
    from lungct_viewer.core.dicom import load_study
    from lungct_viewer.core.preprocessing import prepare_slice

    vol, _ = load_study(lidc_0001)
    prep = prepare_slice(vol.hu[70], vol.pixel_spacing_mm)
    img = prep.image[150:350, 60:300]  # a lung region, keeps the reference path quick
    dense = DenseClassifier(sharp_model).predict(img)
    ref = classify_patches_reference(sharp_model, img)
    assert ref[..., 0].std() > 0.01
    assert np.abs(dense - ref).max() <= 1e-4


def test_pipeline_field_mask_is_exact_inside_field(sharp_model, tmp_path):
    from lungct_viewer.core.model import LoadedModel, ModelCard
    from lungct_viewer.core.phantom import phantom_volume
    from lungct_viewer.core.pipeline import Analyzer
    from lungct_viewer.core.preprocessing import prepare_slice

    ph = phantom_volume(seed=1, n_slices=4, size=256)
    vol = ph.volume
    lm = LoadedModel(sharp_model, ModelCard(version="t"), str(tmp_path / "m.keras"))
    masked = Analyzer(lm, use_field_mask=True).analyze(vol)
    full = Analyzer(lm, use_field_mask=False).analyze(vol)
    d = DenseClassifier(sharp_model)
    for i in range(vol.num_slices):
        sa, sf = masked.slices[i], full.slices[i]
        assert sf.in_field.all()
        assert 0 < sa.in_field.sum() < sa.in_field.size  # something skipped, something kept
        inside = sa.in_field
        assert np.abs(sa.probs[inside] - sf.probs[inside]).max() <= 1e-4
        assert np.all(sa.probs[~inside] == np.array([1.0, 0.0, 0.0], np.float32))
        ref = d.predict(prepare_slice(vol.hu[i], vol.pixel_spacing_mm).image)
        assert np.abs(sf.probs - ref).max() <= 1e-4
    assert 0.0 < masked.skipped_fraction < 1.0


def test_analyze_order_progress_and_cancel(sharp_model, tmp_path):
    from lungct_viewer.core.model import LoadedModel, ModelCard
    from lungct_viewer.core.phantom import phantom_volume
    from lungct_viewer.core.pipeline import Analyzer, slice_order_from

    assert slice_order_from(2, 5) == [2, 3, 1, 4, 0]
    assert slice_order_from(9, 3) == [2, 1, 0]
    vol = phantom_volume(seed=2, n_slices=6, size=160).volume
    an = Analyzer(LoadedModel(sharp_model, ModelCard(version="t"), "m"))
    seen = []
    res = an.analyze(vol, order=slice_order_from(3, 6), on_slice=lambda sa, d, n: seen.append((sa.index, d, n)))
    assert [s[0] for s in seen] == [3, 4, 2, 5, 1, 0]
    assert [s[1] for s in seen] == [1, 2, 3, 4, 5, 6] and all(s[2] == 6 for s in seen)
    assert res.complete and not res.cancelled
    calls = []

    def cancel_after_two():
        calls.append(1)
        return len(calls) > 2

    part = an.analyze(vol, should_cancel=cancel_after_two)
    assert part.cancelled and sorted(part.slices) == [0, 1] and not part.complete


def test_field_boxes_cover_every_in_field_patch():
    from lungct_viewer.core.pipeline import _box_cost, field_boxes

    rng = np.random.default_rng(5)
    for _ in range(20):
        f = np.zeros((47, 47), bool)
        for _ in range(rng.integers(1, 4)):
            i, j = rng.integers(0, 40, 2)
            f[i : i + rng.integers(2, 20), j : j + rng.integers(2, 20)] = True
        boxes = field_boxes(f)
        cov = np.zeros_like(f)
        for i0, i1, j0, j1 in boxes:
            cov[i0:i1, j0:j1] = True
        assert not (f & ~cov).any()
        assert sum(_box_cost(b) for b in boxes) <= _box_cost((0, 47, 0, 47))
    two = np.zeros((47, 47), bool)
    two[10:30, 2:14] = two[10:30, 33:45] = True  # two lungs far apart: two boxes
    assert sorted(field_boxes(two)) == [(10, 30, 2, 14), (10, 30, 33, 45)]
    assert field_boxes(np.zeros((47, 47), bool)) == []
