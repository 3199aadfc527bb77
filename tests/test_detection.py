"""The method's per-patch rules on hand-made patch probabilities: patch labels, the vote map,
the ROI mask (the red overlay), heatmaps, the lesion votes and the patient-level vote."""

from __future__ import annotations

import numpy as np
import pytest

from lungct_viewer.core import constants as C
from lungct_viewer.core.candidates import Candidate, Seed, logit
from lungct_viewer.core.detection import DetectionParams, class_heatmap, patch_labels, roi_mask, vote_map
from lungct_viewer.core.labels import Label
from lungct_viewer.core.lesions import Lesion, read_lesion
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.study import CTVolume
from lungct_viewer.core.texture import Texture
from lungct_viewer.core.voting import call_exclusion, diagnose, enters_call


def _slice(index=0, size=200, rois=(), npm=(1.0, 1.0)):
    """rois: iterable of ((i0, i1, j0, j1), p_benign, p_malignant) blocks of grid cells."""
    from lungct_viewer.core.patches import grid_shape
    from lungct_viewer.core.preprocessing import model_shape

    gh, gw = grid_shape(*model_shape((size, size), npm))
    probs = np.zeros((gh, gw, 3), np.float32)
    probs[..., 0] = 1.0
    for (i0, i1, j0, j1), pb, pm in rois:
        probs[i0:i1, j0:j1] = (1 - pb - pm, pb, pm)
    return SliceAnalysis(index, probs, np.ones((gh, gw), bool), (size, size), npm)


def test_patch_labels_rule():
    sa = _slice(
        rois=[((2, 3, 2, 3), 0.2, 0.3), ((4, 5, 4, 5), 0.3, 0.2), ((6, 7, 6, 7), 0.2, 0.29), ((8, 9, 8, 9), 0.45, 0.45)]
    )
    lab = patch_labels(sa, 0.5)
    assert lab[2, 2] == C.MALIGNANT  # P(ROI) 0.5 reaches the threshold; malignant > benign
    assert lab[4, 4] == C.BENIGN
    assert lab[6, 6] == C.NOT_ROI  # P(ROI) 0.49
    assert lab[8, 8] == C.BENIGN  # a tie is benign (malignant must be larger)
    assert (lab > 0).sum() == 3
    assert patch_labels(sa, 0.95).max() == C.NOT_ROI
    sa.in_field[2, 2] = False  # patches outside the analysed field never vote
    assert patch_labels(sa, 0.5)[2, 2] == C.NOT_ROI


def test_vote_map_counts_overlapping_patches():
    sa = _slice(rois=[((5, 8, 5, 8), 0.1, 0.8)])  # 3x3 ROI patches
    votes = vote_map(sa, 0.5)
    assert votes.max() == 9  # centre pixels lie in all 9 windows
    assert votes[75, 75] == 9 and votes[0, 0] == 0
    assert votes[50, 50] == 1  # only patch (5, 5) covers its top-left corner
    assert votes[119, 119] == 1 and votes[120, 120] == 0


def test_roi_mask_follows_min_votes_and_sensitivity_without_the_network():
    sa = _slice(rois=[((5, 8, 5, 8), 0.2, 0.25)])  # P(ROI) = 0.45
    assert not roi_mask(sa, DetectionParams(min_roi_probability=0.5)).any()
    area = {k: int(roi_mask(sa, DetectionParams(min_roi_probability=0.4, min_votes=k)).sum()) for k in (1, 4, 9)}
    # per axis the 3 windows from 50 px give coverage 1,2,3,2,1 on [50,60,70,100,110,120)
    assert area == {1: 70 * 70, 4: 50 * 50, 9: 30 * 30}
    mask = roi_mask(sa, DetectionParams(min_roi_probability=0.4, min_votes=4))
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (60, 110, 60, 110)


def test_roi_mask_is_in_native_pixels():
    sa = _slice(size=200, npm=(1.4, 1.4), rois=[((3, 6, 3, 6), 0.1, 0.8)])  # 0.5 mm pixels
    mask = roi_mask(sa, DetectionParams(min_votes=9))
    assert mask.shape == (200, 200)
    rows = np.flatnonzero(mask.any(axis=1))
    # model rows [50, 80) (covered by all 9 windows) are native rows 70..112
    assert abs(rows.min() - 50 * 1.4) <= 1 and abs(rows.max() + 1 - 80 * 1.4) <= 1


def test_heatmap_is_mean_probability_of_covering_patches():
    sa = _slice(rois=[((5, 6, 5, 6), 0.1, 0.8)])
    hm = class_heatmap(sa, "malignant")
    assert hm.shape == (200, 200) and hm.dtype == np.float32
    # pixel (50, 50) lies in the windows of patches (1..5, 1..5): 25 patches, one with 0.8
    assert hm[50, 50] == pytest.approx(0.8 / 25, abs=1e-4)
    assert hm[5, 5] == 0.0  # only patch (0, 0) covers it
    roi = class_heatmap(sa, "roi")
    assert roi[50, 50] == pytest.approx(0.9 / 25, abs=1e-4)
    assert class_heatmap(sa, "benign")[50, 50] == pytest.approx(0.1 / 25, abs=1e-4)
    sa.in_field[:] = False
    assert class_heatmap(sa, "roi").max() == 0.0  # nothing analysed: no heat
    with pytest.raises(ValueError, match="heatmap kind"):
        class_heatmap(sa, "spleen")


def test_detection_params_validation():
    p = DetectionParams()
    assert (p.min_roi_probability, p.min_votes, p.suspicion_threshold) == (
        C.DEFAULT_MIN_ROI_PROBABILITY,
        C.DEFAULT_MIN_VOTES,
        None,
    )
    for bad, msg in (
        ({"min_roi_probability": 0.0}, "sensitivity"),
        ({"min_roi_probability": 1.2}, "sensitivity"),
        ({"min_votes": 0}, "minimum votes"),
        ({"min_votes": 26}, "minimum votes"),
        ({"suspicion_threshold": -0.1}, "suspicion"),
        ({"call_min_diameter_mm": -1}, "diameter"),
    ):
        with pytest.raises(ValueError, match=msg):
            p.with_(**bad)
    from lungct_viewer.core.second_reading import SecondReading

    second = SecondReading(
        version="s",
        features=["radius_mm"],
        mean=[0.0],
        scale=[1.0],
        coef=[1.0],
        intercept=0.0,
        threshold=0.4,
        max_lesions=3,
    )
    q = DetectionParams.from_operating_point({"min_roi_probability": 0.7, "min_votes": 9}, second)
    assert (q.min_roi_probability, q.min_votes, q.suspicion_threshold, q.max_lesions) == (0.7, 9, 0.4, 3)
    assert DetectionParams.from_operating_point(None) == DetectionParams()
    assert q.with_(min_votes=3).min_votes == 3 and q.min_votes == 9  # frozen: a copy


def _volume(n=3, size=200):
    return CTVolume.from_array(np.full((n, size, size), -800, np.int16), pixel_spacing_mm=(0.7, 0.7))


def _candidate(z0, z1, centre, radius, p_roi=0.9):
    cy, cx = centre
    y0, y1, x0, x1 = int(cy - radius - 1), int(cy + radius + 2), int(cx - radius - 1), int(cx + radius + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return Candidate(
        1,
        (z0, int(cy), int(cx)),
        (z0, z1, y0, y1, x0, x1),
        np.repeat(disk[None], z1 - z0, axis=0),
        [Seed(z0, cy, cx, logit(p_roi))],
        {},
    )


def test_lesion_votes_come_from_the_patches_over_its_object():
    vol = _volume(n=2)
    analysis = StudyAnalysis(vol.series_uid, 2)
    # slice 0: 3x3 patches (rows/cols 5..7); the two left columns malignant, the right one benign
    analysis.slices[0] = _slice(0, rois=[((5, 8, 5, 7), 0.2, 0.7), ((5, 8, 7, 8), 0.7, 0.2)])
    analysis.slices[1] = _slice(1)
    cand = _candidate(0, 2, (85.0, 85.0), 8.0)
    les = read_lesion(
        cand, vol, analysis, min_roi_probability=0.5, suspicion=None, suspicion_threshold=None, lesion_id=3
    )
    # an object at rows/cols 77..93 lies in the central 30 x 30 window of patches 5..7
    assert (les.votes_malignant, les.votes_benign) == (6, 3)
    assert les.malignant_fraction == pytest.approx(6 / 9)
    assert les.label(0.6) is Label.MALIGNANT and les.label(0.7) is Label.BENIGN
    # the probability shown is that of the lesion's own call, averaged over its ROI patches
    assert les.probability(0.6) == pytest.approx((6 * 0.7 + 3 * 0.2) / 9)
    assert les.probability(0.7) == pytest.approx((6 * 0.2 + 3 * 0.7) / 9)
    assert les.passes and les.slices == (0, 1) and [f.lesion_id for f in les.findings] == [3, 3]
    # a disc 17 pixels across: both axes and the mean diameter about 17 pixels
    assert les.long_axis_mm == pytest.approx(17 * 0.7, abs=0.4)
    assert les.short_axis_mm == pytest.approx(17 * 0.7, abs=0.4)
    assert les.diameter_mm == pytest.approx(17 * 0.7, abs=0.4)
    stricter = read_lesion(
        cand, vol, analysis, min_roi_probability=0.95, suspicion=0.2, suspicion_threshold=0.5, lesion_id=3
    )
    assert (stricter.votes_malignant, stricter.votes_benign) == (0, 0) and not stricter.passes


@pytest.mark.parametrize("npm", [(1.0, 1.0), (0.7 / 0.66, 0.7 / 0.66), (0.7 / 0.976, 0.7 / 0.8)])
def test_window_counts_follow_the_labelling_rule_on_resampled_slices(npm):
    """Each object pixel counts, in model pixels, for every window whose central 30 x 30
    model pixels hold its model position (``start <= position < start + 30``), including on
    a series resampled to model spacing, where positions fall between model pixels."""
    from lungct_viewer.core.lesions import _core_counts

    rng = np.random.default_rng(3)
    sa = _slice(size=160, npm=npm)
    gh, gw = sa.probs.shape[:2]
    a, s = (C.PATCH_SIZE_PX - C.ROI_CORE_PX) // 2, C.PATCH_STRIDE_PX
    for _ in range(5):
        obj = rng.random((23, 19)) < 0.4
        r0, c0 = (int(v) for v in rng.integers(0, 130, 2))
        expected = np.zeros((gh, gw))
        for r, c in zip(*np.nonzero(obj)):
            my, mx = (r + r0) / npm[0], (c + c0) / npm[1]
            for i in range(gh):
                for j in range(gw):
                    if i * s + a <= my < i * s + a + C.ROI_CORE_PX and j * s + a <= mx < j * s + a + C.ROI_CORE_PX:
                        expected[i, j] += 1.0 / (npm[0] * npm[1])
        ii, jj, counts = _core_counts(obj, r0, c0, sa)
        got = np.zeros((gh, gw))
        got[ii, jj] = counts
        assert np.allclose(got, expected)
        assert (counts > 0).all()


def test_a_lesion_read_again_uses_its_slices_analysis_as_it_is_now():
    """Reading a candidate again (a setting moved) gives the same lesion; when a slice is
    analysed again, its new output counts, not what was remembered of the old one."""
    vol = _volume(n=2)
    analysis = StudyAnalysis(vol.series_uid, 2)
    analysis.slices[0] = _slice(0, rois=[((5, 8, 5, 8), 0.2, 0.7)])
    analysis.slices[1] = _slice(1)
    cand = _candidate(0, 2, (85.0, 85.0), 8.0)

    def read():
        return read_lesion(
            cand, vol, analysis, min_roi_probability=0.5, suspicion=None, suspicion_threshold=None, lesion_id=1
        )

    first, again = read(), read()
    assert (first.votes_malignant, first.votes_benign) == (again.votes_malignant, again.votes_benign) == (9, 0)
    assert first.findings == again.findings and first.diameter_mm == again.diameter_mm
    analysis.slices[0] = _slice(0, rois=[((5, 8, 5, 8), 0.7, 0.2)])  # slice 0 read again: now benign
    assert (read().votes_malignant, read().votes_benign) == (0, 9)


def _lesion(b: int, m: int, diameter: float = 10.0, passes: bool = True, texture: Texture = Texture.SOLID) -> Lesion:
    """A lesion with only what the patient-level vote reads (votes, size, texture, second
    reading)."""
    return Lesion(
        id=1,
        candidate=None,
        suspicion=None,
        passes=passes,
        votes_benign=b,
        votes_malignant=m,
        p_benign=0.0,
        p_malignant=0.0,
        findings=(),
        centroid_mm=(0.0, 0.0, 0.0),
        long_axis_mm=diameter,
        short_axis_mm=diameter,
        volume_mm3=0.0,
        texture=texture,
    )


def test_patient_vote_over_the_lesions_that_pass():
    lesions = [_lesion(9, 0), _lesion(0, 12), _lesion(50, 0, passes=False), _lesion(0, 40, diameter=4.0)]
    d = diagnose(lesions, 0.5, min_diameter_mm=6.0)
    assert (d.votes_benign, d.votes_malignant, d.n_lesions, d.n_small) == (9, 12, 2, 1)
    assert d.malignant_fraction == pytest.approx(12 / 21) and d.label is Label.MALIGNANT
    assert diagnose(lesions, 0.6, 6.0).label is Label.BENIGN
    assert diagnose(lesions, 0.5, 0.0).votes_malignant == 52  # the small lesion votes when allowed
    none = diagnose([_lesion(50, 0, passes=False)], 0.5)
    assert none.label is Label.NO_FINDINGS and none.display == "NO SUSPICIOUS FINDINGS" and none.n_lesions == 0
    silent = diagnose([_lesion(0, 0)], 0.5)
    assert silent.label is Label.BENIGN and silent.malignant_fraction is None
    with pytest.raises(ValueError):
        diagnose(lesions, 1.5)


def test_ground_glass_lesions_do_not_vote_but_thick_slice_lesions_do():
    """A pure ground-glass lesion of any size is left out of the call (Lung-RADS 2-3); one
    whose texture could not be judged (thick slices) votes like a solid one."""
    glass = _lesion(0, 30, diameter=25.0, texture=Texture.GROUND_GLASS)
    d = diagnose([glass, _lesion(9, 1)], 0.5, 6.0)
    assert (d.label, d.n_lesions, d.n_ground_glass, d.votes_malignant) == (Label.BENIGN, 1, 1, 1)
    alone = diagnose([glass], 0.5, 6.0)
    assert alone.label is Label.NO_FINDINGS and alone.n_ground_glass == 1
    assert not enters_call(glass, 6.0)
    thick = _lesion(0, 30, diameter=25.0, texture=Texture.NOT_ASSESSED)
    assert enters_call(thick, 6.0) and diagnose([thick], 0.5, 6.0).label is Label.MALIGNANT
    # a small ground-glass lesion counts as small (the size rule comes first)
    small = diagnose([_lesion(0, 3, diameter=4.0, texture=Texture.GROUND_GLASS)], 0.5, 6.0)
    assert (small.n_small, small.n_ground_glass) == (1, 0)


def test_call_exclusion_says_why_a_finding_does_not_vote():
    assert call_exclusion(_lesion(0, 3, diameter=4.0, texture=Texture.GROUND_GLASS), 6.0) == "smaller than 6 mm"
    assert call_exclusion(_lesion(0, 30, diameter=25.0, texture=Texture.GROUND_GLASS), 6.0) == "ground glass"
    assert call_exclusion(_lesion(0, 30, diameter=25.0, texture=Texture.NOT_ASSESSED), 6.0) is None
    assert call_exclusion(_lesion(0, 30, diameter=4.0, passes=False), 6.0) is None  # a candidate, not a finding
