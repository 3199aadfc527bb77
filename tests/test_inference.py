"""The dense fully convolutional path and the pipeline equal patch-by-patch classification."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lungct_viewer.core import constants as C
from lungct_viewer.core.inference import DenseClassifier, classify_patches_reference, softmax
from lungct_viewer.core.model import LoadedModel, ModelCard, build_model

TOL = 1e-4


@pytest.fixture(scope="module")
def sharp_model():
    """Random weights, with the output layer scaled so probabilities are far from uniform."""
    m = build_model(seed=7)
    fc2 = m.get_layer("fc2")
    k, b = fc2.get_weights()
    fc2.set_weights([k * 60.0, b])
    return m


@pytest.fixture(scope="module")
def sharp_loaded(sharp_model):
    return LoadedModel(sharp_model, ModelCard(version="t"), "m")


def _max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.mark.parametrize("shape", [(50, 50), (60, 70), (59, 121), (131, 97), (200, 240)])
def test_dense_matches_reference_random(sharp_model, shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.random(shape, dtype=np.float32)
    d = DenseClassifier(sharp_model)
    dense, dense_logits = d.predict(img), d.logits(img)
    ref = classify_patches_reference(sharp_model, img)
    ref_logits = classify_patches_reference(sharp_model, img, logits=True)
    assert dense.shape == ref.shape == dense_logits.shape == ((shape[0] - 50) // 10 + 1, (shape[1] - 50) // 10 + 1, 3)
    # the check is meaningful: outputs vary a lot between patches
    assert ref[..., 0].std() > 0.05 or ref.shape[:2] == (1, 1)
    assert _max_diff(dense, ref) <= TOL
    assert _max_diff(dense_logits, ref_logits) <= TOL
    assert _max_diff(softmax(ref_logits), ref) <= 1e-5  # the reference logits are the model's


def test_dense_full_slice_grid_is_47x47(sharp_model):
    img = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    out = DenseClassifier(sharp_model).predict(img)
    assert out.shape == (47, 47, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_dense_batch_equals_single(sharp_model):
    rng = np.random.default_rng(3)
    imgs = rng.random((3, 90, 110), dtype=np.float32)
    d = DenseClassifier(sharp_model)
    batch = d.logits_batch(imgs)
    for k in range(3):
        assert _max_diff(batch[k], d.logits(imgs[k])) <= 1e-5


def test_cells_of_packed_crops_equal_their_own_image(sharp_model):
    """A cell's logits depend on its own window only: crops of several images packed into one
    canvas give the logits each image gives on its own."""
    from lungct_viewer.core.pipeline import pack_boxes

    rng = np.random.default_rng(11)
    imgs = [rng.random((10 * gh + 40, 10 * gw + 40), dtype=np.float32) for gh, gw in [(3, 7), (9, 2), (1, 1), (5, 5)]]
    (ch, cw), corners = pack_boxes([im.shape for im in imgs])
    canvas = np.zeros((1, ch, cw), np.float32)
    cells, owners = [], []
    for k, (im, (y, x)) in enumerate(zip(imgs, corners)):
        canvas[0, y : y + im.shape[0], x : x + im.shape[1]] = im
        gh, gw = (im.shape[0] - 40) // 10, (im.shape[1] - 40) // 10
        for i in range(gh):
            for j in range(gw):
                cells.append((0, y // 10 + i, x // 10 + j))
                owners.append((k, i, j))
    d = DenseClassifier(sharp_model)
    got = d.logits_at(canvas, np.array(cells))
    own = [d.logits(im) for im in imgs]
    want = np.array([own[k][i, j] for k, i, j in owners])
    assert _max_diff(got, want) <= 1e-5
    with pytest.raises(ValueError):
        d.logits_at(canvas, np.array([[0, ch // 10, 0]]))  # window outside the canvas


def test_pack_boxes_places_rectangles_on_the_grid_without_overlap():
    from lungct_viewer.core.pipeline import pack_boxes

    rng = np.random.default_rng(2)
    for width in (None, 600):
        for _ in range(20):
            sizes = [
                (10 * int(a) + 40, 10 * int(b) + 40) for a, b in rng.integers(1, 40, (int(rng.integers(1, 12)), 2))
            ]
            (h, w), corners = pack_boxes(sizes, width)
            if width is not None:
                assert w == max(width, max(s[1] for s in sizes))
            cover = np.zeros((h, w), np.int32)
            for (sh, sw), (y, x) in zip(sizes, corners):
                assert y % 10 == 0 and x % 10 == 0 and y + sh <= h and x + sw <= w
                cover[y : y + sh, x : x + sw] += 1
            assert cover.max() == 1
            if width is None:
                assert h * w <= 1.6 * sum(a * b for a, b in sizes)  # packed, not strung out
    assert pack_boxes([]) == ((0, 0), [])


def _reference(model, vol, i, where):
    """Reference probabilities and logits of slice ``i`` on the cells ``where``."""
    from lungct_viewer.core.preprocessing import prepare_slice

    img = prepare_slice(vol.hu[i], vol.pixel_spacing_mm).image
    return (
        classify_patches_reference(model, img, where=where),
        classify_patches_reference(model, img, logits=True, where=where),
    )


def _check_against_reference(sa, ref_probs, ref_logits, cells=None):
    inside = sa.in_field if cells is None else cells
    assert _max_diff(sa.probs[inside], ref_probs[inside]) <= TOL
    assert _max_diff(sa.logits[inside], ref_logits[inside]) <= TOL
    outside = ~sa.in_field
    assert np.all(sa.probs[outside] == np.array([1.0, 0.0, 0.0], np.float32))
    assert np.all(sa.logits[outside] == np.array([0.0, -np.inf, -np.inf], np.float32))
    assert sa.logits.dtype == sa.probs.dtype == np.float32
    assert _max_diff(softmax(sa.logits)[sa.in_field], sa.probs[sa.in_field]) <= 1e-6


def test_pipeline_equals_reference_on_phantom(sharp_model, sharp_loaded):
    """Every plan (CPU with one or several slices per call, the GPU plan forced onto the CPU)
    gives the reference's logits and probabilities inside the field."""
    from lungct_viewer.core.phantom import phantom_volume
    from lungct_viewer.core.pipeline import Analyzer, gpu_available

    vol = phantom_volume(seed=1, n_slices=4, size=256).volume
    runs = {
        "cpu1": Analyzer(sharp_loaded, batch_slices=1).analyze(vol),
        "cpu3": Analyzer(sharp_loaded, batch_slices=3).analyze(vol, order=[3, 0, 1, 2]),
        "gpu-plan": Analyzer(sharp_loaded, device="GPU", batch_slices=4).analyze(vol),
    }
    assert Analyzer(sharp_loaded, device="GPU").plan.device == "GPU"
    assert runs["gpu-plan"].device == ("GPU" if gpu_available() else "CPU")  # where it really ran
    for i in range(vol.num_slices):
        sa = runs["cpu1"].slices[i]
        assert 0 < sa.in_field.sum() < sa.in_field.size  # something skipped, something kept
        ref_p, ref_l = _reference(sharp_model, vol, i, sa.in_field)
        assert ref_p[sa.in_field][:, 0].std() > 0.05  # outputs differ between patches
        for run in runs.values():
            assert np.array_equal(run.slices[i].in_field, sa.in_field)
            _check_against_reference(run.slices[i], ref_p, ref_l)
    assert 0.0 < runs["cpu1"].skipped_fraction < 1.0


def test_pipeline_without_field_mask_analyses_every_patch(sharp_model, sharp_loaded):
    from lungct_viewer.core.phantom import phantom_volume
    from lungct_viewer.core.pipeline import Analyzer
    from lungct_viewer.core.preprocessing import prepare_slice

    vol = phantom_volume(seed=4, n_slices=2, size=160).volume
    full = Analyzer(sharp_loaded, use_field_mask=False).analyze(vol)
    d = DenseClassifier(sharp_model)
    for i in range(vol.num_slices):
        sa = full.slices[i]
        assert sa.in_field.all()
        img = prepare_slice(vol.hu[i], vol.pixel_spacing_mm).image
        assert _max_diff(sa.logits, d.logits(img)) <= 1e-5
        assert np.isfinite(sa.roi_logit).all()


def _real_slices(folder, picks):
    from lungct_viewer.core.dicom import load_study

    vol, _ = load_study(folder)
    return vol, [int(p * (vol.num_slices - 1)) for p in picks]


@pytest.mark.realdata
@pytest.mark.slow
def test_pipeline_equals_reference_on_real_slices(sharp_model, lidc_0001, lung_dx_a0001):
    """Real slices (one needs resampling to model spacing), the shipped model and a sharp
    random one, slices packed several to a call: in-field results equal patch-by-patch on the
    most ROI-like cells and a random sample of the others (the reference is slow)."""
    from lungct_viewer.core.model import load_model
    from lungct_viewer.core.pipeline import Analyzer, default_model_path

    models = [LoadedModel(sharp_model, ModelCard(version="t"), "m")]
    if default_model_path().is_file():
        models.append(load_model(default_model_path()))
    for folder, picks in ((lidc_0001, (0.45, 0.6)), (lung_dx_a0001, (0.5,))):
        vol, idx = _real_slices(folder, picks)
        for lm in models:
            res = Analyzer(lm, batch_slices=2).analyze(vol, order=[max(idx[0] - 1, 0), *idx])
            for i in idx:
                sa = res.slices[i]
                assert sa.in_field.sum() > 300
                cells = np.zeros_like(sa.in_field)
                top = np.argsort(sa.roi_logit, axis=None)[::-1][:20]
                cells.flat[top] = True
                field = np.flatnonzero(sa.in_field)
                cells.flat[np.random.default_rng(i).choice(field, 130, replace=False)] = True
                ref_p, ref_l = _reference(lm.keras_model, vol, i, cells)
                _check_against_reference(sa, ref_p, ref_l, cells)


def test_iter_analyze_yields_in_order_and_cancels_between_calls(sharp_loaded):
    from lungct_viewer.core.phantom import phantom_volume
    from lungct_viewer.core.pipeline import Analyzer, slice_order_from

    assert slice_order_from(2, 5) == [2, 3, 1, 4, 0]
    assert slice_order_from(9, 3) == [2, 1, 0]
    vol = phantom_volume(seed=2, n_slices=6, size=160).volume
    an = Analyzer(sharp_loaded, batch_slices=2)
    it = an.iter_analyze(vol, order=slice_order_from(3, 6))
    first = next(it)
    assert first.index == 3
    assert [sa.index for sa in it] == [4, 2, 5, 1, 0]
    with pytest.raises(IndexError):
        list(an.iter_analyze(vol, order=[0, 6]))
    assert list(an.iter_analyze(vol, order=[])) == []
    # leaving the iteration early stops the helper thread that prepares the next slices
    it = an.iter_analyze(vol)
    next(it)
    assert any(t.name.startswith("lungct-prepare") for t in threading.enumerate())
    it.close()
    assert not any(t.name.startswith("lungct-prepare") for t in threading.enumerate())

    seen = []
    res = an.analyze(vol, order=slice_order_from(3, 6), on_slice=lambda sa, d, n: seen.append((sa.index, d, n)))
    assert [s[0] for s in seen] == [3, 4, 2, 5, 1, 0]
    assert [s[1] for s in seen] == [1, 2, 3, 4, 5, 6] and all(s[2] == 6 for s in seen)
    assert res.complete and not res.cancelled

    def cancel_on_poll(n):
        calls = []

        def poll():
            calls.append(1)
            return len(calls) >= n

        return poll

    # polled before each network call: the first slice alone, then batch_slices per call
    one = Analyzer(sharp_loaded, batch_slices=1).analyze(vol, should_cancel=cancel_on_poll(3))
    assert one.cancelled and sorted(one.slices) == [0, 1] and not one.complete
    three = Analyzer(sharp_loaded, batch_slices=3).analyze(vol, should_cancel=cancel_on_poll(3))
    assert three.cancelled and sorted(three.slices) == [0, 1, 2, 3]
    assert not Analyzer(sharp_loaded, batch_slices=3).analyze(vol, should_cancel=lambda: False).cancelled


def test_analyze_slice_equals_analyze(sharp_loaded):
    from lungct_viewer.core.phantom import phantom_volume
    from lungct_viewer.core.pipeline import Analyzer

    vol = phantom_volume(seed=6, n_slices=3, size=160).volume
    an = Analyzer(sharp_loaded)
    an.warm_up()
    whole = an.analyze(vol)
    one = an.analyze_slice(vol, 1)
    assert one.index == 1
    assert _max_diff(one.logits[one.in_field], whole.slices[1].logits[one.in_field]) <= 1e-5


def test_analyzer_rejects_bad_settings(sharp_loaded):
    from lungct_viewer.core.pipeline import Analyzer

    with pytest.raises(ValueError):
        Analyzer(sharp_loaded, device="TPU")
    with pytest.raises(ValueError):
        Analyzer(sharp_loaded, batch_slices=0)


def test_roi_logit_ranks_where_probabilities_saturate():
    from lungct_viewer.core.results import SliceAnalysis

    logits = np.zeros((2, 3, 3), np.float32)
    logits[0, 0] = (0.0, 20.0, 1.0)  # P(ROI) rounds to 1.0 in float32 ...
    logits[0, 1] = (0.0, 30.0, 2.0)  # ... for both: only the logit tells them apart
    logits[0, 2] = (0.0, -2.0, -3.0)
    logits[1, :] = (0.0, -np.inf, -np.inf)
    in_field = np.array([[True, True, True], [False, False, False]])
    probs = softmax(logits)
    sa = SliceAnalysis(0, probs, in_field, (100, 120), (1.0, 1.0), logits=logits)
    p_roi = probs[..., C.BENIGN] + probs[..., C.MALIGNANT]
    assert p_roi[0, 0] == p_roi[0, 1] == np.float32(1.0)
    r = sa.roi_logit
    assert r.dtype == np.float32 and r.shape == (2, 3)
    assert r[0, 1] > r[0, 0] > r[0, 2]
    np.testing.assert_allclose(r[0], np.logaddexp(logits[0, :, 1], logits[0, :, 2]) - logits[0, :, 0], rtol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-r[0, 2])), p_roi[0, 2], rtol=1e-5)
    assert np.all(r[1] == -np.inf)
    in_field[0, 2] = False
    assert sa.roi_logit[0, 2] == -np.inf  # outside the field even where logits are finite


def test_slice_analysis_without_logits_derives_them_from_probs():
    from lungct_viewer.core.results import SliceAnalysis

    probs = np.zeros((2, 2, 3), np.float32)
    probs[..., 0] = 1.0
    probs[0, 0] = (0.2, 0.3, 0.5)
    sa = SliceAnalysis(0, probs, np.ones((2, 2), bool), (60, 60), (1.0, 1.0))
    assert sa.logits.shape == (2, 2, 3) and sa.logits.dtype == np.float32
    assert _max_diff(softmax(sa.logits), probs) <= 1e-6
    assert sa.roi_logit[0, 0] == pytest.approx(np.log(0.8 / 0.2), rel=1e-5)
    assert sa.roi_logit[1, 1] == -np.inf


def test_field_boxes_cover_every_in_field_patch():
    from lungct_viewer.core.pipeline import _box_cost, field_boxes

    rng = np.random.default_rng(5)
    for _ in range(20):
        f = np.zeros((47, 47), bool)
        for _ in range(rng.integers(1, 4)):
            i, j = rng.integers(0, 40, 2)
            f[i : i + rng.integers(2, 20), j : j + rng.integers(2, 20)] = True
        boxes = field_boxes(f)
        cov = np.zeros(f.shape, np.int32)
        for i0, i1, j0, j1 in boxes:
            cov[i0:i1, j0:j1] += 1
        assert not (f & (cov == 0)).any()
        assert cov.max() == 1  # boxes do not overlap: no patch is computed twice
        assert sum(_box_cost(b) for b in boxes) <= _box_cost((0, 47, 0, 47))
    two = np.zeros((47, 47), bool)
    two[10:30, 2:14] = two[10:30, 33:45] = True  # two lungs far apart: two boxes
    assert sorted(field_boxes(two)) == [(10, 30, 2, 14), (10, 30, 33, 45)]
    assert field_boxes(np.zeros((47, 47), bool)) == []
