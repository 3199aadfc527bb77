"""Detection rules, voting and threshold behaviour on hand-made patch probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from lungct_viewer.core.detection import (
    Finding,
    DetectionParams,
    all_findings,
    class_heatmap,
    detect_slice,
    detect_study,
    patch_labels,
    vote_map,
)
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.study import CTVolume
from lungct_viewer.core.voting import diagnose


def _volume(n=3, size=200):
    return CTVolume.from_array(np.full((n, size, size), -800, np.int16), pixel_spacing_mm=(0.7, 0.7))


def _slice(index=0, size=200, rois=()):
    """rois: iterable of ((i0, i1, j0, j1), p_benign, p_malignant) blocks of grid cells."""
    gh = gw = (size - 50) // 10 + 1
    probs = np.zeros((gh, gw, 3), np.float32)
    probs[..., 0] = 1.0
    for (i0, i1, j0, j1), pb, pm in rois:
        probs[i0:i1, j0:j1] = (1 - pb - pm, pb, pm)
    return SliceAnalysis(index, probs, np.ones((gh, gw), bool), (size, size), (1.0, 1.0))


def test_vote_map_counts_overlapping_patches():
    sa = _slice(rois=[((5, 8, 5, 8), 0.1, 0.8)])  # 3x3 ROI patches
    votes = vote_map(sa, DetectionParams())
    assert votes.max() == 9  # centre pixels lie in all 9 windows
    assert votes[75, 75] == 9 and votes[0, 0] == 0
    assert votes[50, 50] == 1  # only patch (5,5) covers its top-left corner


def test_finding_geometry_votes_and_labels():
    vol = _volume()
    sa = _slice(rois=[((5, 8, 5, 8), 0.2, 0.7), ((5, 8, 7, 8), 0.7, 0.2)])
    det = detect_slice(sa, vol, DetectionParams(min_votes=4, min_area_mm2=1))
    assert len(det.findings) == 1
    f = det.findings[0]
    assert f.votes_malignant == 6 and f.votes_benign == 3
    # per axis the 3 windows from 50 px give coverage 1,2,3,2,1 on [50,60,70,100,110,120);
    # >= 4 votes in 2-D needs >= 2 on both axes: [60, 110)
    x0, y0, x1, y1 = f.bbox_px
    assert (x0, y0, x1, y1) == (60, 60, 110, 110)
    assert det.roi_mask.sum() == 50 * 50
    assert f.area_mm2 == pytest.approx(2500 * 0.49)
    assert f.sop_instance_uid == vol.sop_instance_uids[0]
    assert f.label(0.5) == "malignant"
    assert f.label(0.7) == "benign"  # 6/9 = 0.67 < 0.7


def test_sensitivity_and_min_votes_change_detections_without_network():
    vol = _volume()
    sa = _slice(rois=[((5, 8, 5, 8), 0.2, 0.25)])  # P(ROI) = 0.45
    assert detect_slice(sa, vol, DetectionParams(min_roi_probability=0.5)).findings == []
    assert len(detect_slice(sa, vol, DetectionParams(min_roi_probability=0.4)).findings) == 1
    big = detect_slice(sa, vol, DetectionParams(min_roi_probability=0.4, min_votes=1)).roi_mask.sum()
    small = detect_slice(sa, vol, DetectionParams(min_roi_probability=0.4, min_votes=9)).roi_mask.sum()
    assert big == 70 * 70 and small == 30 * 30


def test_out_of_field_patches_never_vote():
    sa = _slice(rois=[((5, 8, 5, 8), 0.1, 0.8)])
    sa.in_field[:] = False
    assert patch_labels(sa, DetectionParams()).max() == 0


def test_min_area_drops_small_regions():
    vol = _volume()
    sa = _slice(rois=[((5, 6, 5, 6), 0.1, 0.8)])  # one patch: 50x50 px at min_votes 1
    p = DetectionParams(min_votes=1, min_area_mm2=50 * 50 * 0.49 + 1)
    assert detect_slice(sa, vol, p).findings == []


def test_patient_vote_and_threshold():
    vol = _volume(n=2)
    a = StudyAnalysis(vol.series_uid, 2)
    a.slices[0] = _slice(0, rois=[((2, 5, 2, 5), 0.7, 0.2)])  # 9 benign votes
    a.slices[1] = _slice(1, rois=[((8, 11, 8, 12), 0.1, 0.8)])  # 12 malignant votes
    dets = detect_study(a, vol, DetectionParams())
    fs = all_findings(dets)
    assert [f.slice_index for f in fs] == [0, 1]
    d = diagnose(fs, 0.5)
    assert (d.votes_benign, d.votes_malignant, d.n_findings) == (9, 12, 2)
    assert d.malignant_fraction == pytest.approx(12 / 21)
    assert d.label == "malignant"
    assert diagnose(fs, 0.6).label == "benign"
    assert diagnose([], 0.5).label == "no_findings"
    with pytest.raises(ValueError):
        diagnose(fs, 1.5)


def test_heatmap_is_mean_probability_of_covering_patches():
    sa = _slice(rois=[((5, 6, 5, 6), 0.1, 0.8)])
    hm = class_heatmap(sa, "malignant")
    assert hm.shape == (200, 200)
    # pixel (50, 50) lies in the windows of patches (1..5, 1..5): 25 patches, one with 0.8
    assert hm[50, 50] == pytest.approx(0.8 / 25, abs=1e-4)
    assert hm[5, 5] == 0.0  # only patch (0, 0) covers it
    assert hm.max() <= 1.0 and hm.min() >= 0.0
    with pytest.raises(ValueError):
        class_heatmap(sa, "spleen")


def _finding(k, box, b=1, m=1):
    return Finding(k, f"1.2.{k}", box, (0.0, 0.0), (0.0, 0.0, 0.0), 10.0, float(box[2] - box[0]), b, m, 0.2, 0.3)


def test_group_lesions_links_overlapping_boxes_on_adjacent_slices():
    from lungct_viewer.core.detection import Finding, group_lesions  # noqa: F401

    fs = [
        _finding(3, (10, 10, 30, 30), m=5),
        _finding(4, (20, 20, 40, 40), b=5),  # overlaps slice 3 -> same lesion
        _finding(4, (100, 100, 120, 120)),  # elsewhere -> new lesion
        _finding(6, (20, 20, 40, 40)),  # a slice gap -> new lesion
    ]
    lesions = group_lesions(fs)
    assert [len(les.findings) for les in lesions] == [2, 1, 1]
    first = lesions[0]
    assert first.slices == (3, 4) and first.votes_malignant == 6 and first.votes_benign == 6
    assert first.label(0.5) == "malignant" and first.label(0.6) == "benign"
    assert [les.id for les in lesions] == [1, 2, 3]
    assert group_lesions([]) == []
