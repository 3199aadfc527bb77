"""What the viewer asks of the Qt-free core: session helpers (snapshot, resumable analysis
order, run bookkeeping, findings rows), the heatmap colours, measurements, the model card's
threshold curve, the patient/study header fields and the streaming analysis."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lungct_viewer.core.candidates import Candidate, Seed, logit
from lungct_viewer.core.labels import HEAT_STOPS, heat_colours, heat_lut
from lungct_viewer.core.measure import circle_mask, circle_stats, region_stats, segment_length_mm
from lungct_viewer.core.model import ModelCard, operating_points, read_model_card, threshold_curve
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.session import CandidateSet, ReadingSession, lesions_table
from lungct_viewer.core.study import CTVolume


def _slice(i: int, malignant: bool = True) -> SliceAnalysis:
    probs = np.zeros((16, 16, 3), np.float32)
    probs[..., 0] = 1
    probs[3:6, 3:6] = (0.1, 0.2, 0.7) if malignant else (0.1, 0.7, 0.2)
    return SliceAnalysis(i, probs, np.ones((16, 16), bool), (200, 200), (1.0, 1.0))


def _session(n: int = 4) -> tuple[ReadingSession, StudyAnalysis, CandidateSet]:
    hu = np.full((n, 200, 200), -800, np.int16)
    hu[:, 60:90, 60:90] = 20
    vol = CTVolume.from_array(hu)
    analysis = StudyAnalysis(vol.series_uid, n, {i: _slice(i, i % 2 == 0) for i in range(n)})
    mask = np.zeros((n, 34, 34), bool)
    mask[:, 2:32, 2:32] = True
    mask[0, 2:12, 2:12] = False  # a smaller cross-section on the first slice
    cand = Candidate(1, (1, 75, 75), (0, n, 58, 92, 58, 92), mask, [Seed(1, 75.0, 75.0, logit(0.9))], {})
    cs = CandidateSet([cand], None, 0.0, slices=frozenset(analysis.slices))
    s = ReadingSession(vol, ModelCard(version="t", operating_point={"voting_threshold": 0.5}))
    s.set_analysis(analysis)
    s.set_candidates(cs)
    return s, analysis, cs


def test_snapshot_is_an_independent_copy_of_the_reading():
    s, _, _ = _session()
    s.update_params(min_votes=9)
    s.set_voting_threshold(0.3)
    snap = s.snapshot()
    assert snap.params == s.params and snap.voting_threshold == 0.3 and snap.candidates_ready
    assert [les.id for les in snap.lesions()] == [les.id for les in s.lesions()]
    assert np.array_equal(snap.roi_mask(1), s.roi_mask(1))
    heard = []
    snap.subscribe(heard.append)
    s.update_params(min_votes=1)
    s.set_voting_threshold(0.9)
    assert snap.roi_mask(1).sum() < s.roi_mask(1).sum()
    s.set_analysis(StudyAnalysis(s.volume.series_uid, 4, {0: _slice(0)}))
    assert snap.params.min_votes == 9 and snap.voting_threshold == 0.3 and snap.candidates_ready
    assert heard == [] and not s.candidates_ready and len(snap.analysis.slices) == 4


def test_analysis_order_resumes_with_the_missing_slices():
    s, _, _ = _session(n=6)
    fresh = ReadingSession(s.volume, s.card)
    assert fresh.analysis_order(3) == [3, 4, 2, 5, 1, 0]
    fresh.add_slice(_slice(4))
    fresh.add_slice(_slice(2))
    assert fresh.analysis_order(3) == [3, 5, 1, 0]
    assert s.analysis_order(0) == []


def test_finish_analysis_records_the_run():
    s, _, _ = _session(n=3)
    fresh = ReadingSession(s.volume, s.card)
    fresh.add_slice(_slice(0))
    fresh.finish_analysis(inference_s=1.5, device="CPU", cancelled=True, model_path="m.keras")
    a = fresh.analysis
    assert (a.inference_s, a.device, a.cancelled, a.model_path) == (1.5, "CPU", True, "m.keras")
    fresh.add_slice(_slice(1))
    fresh.add_slice(_slice(2))
    fresh.finish_analysis(inference_s=2.0, device="GPU", cancelled=True)
    assert a.inference_s == 3.5 and a.device == "GPU" and not a.cancelled  # complete: not partial
    assert a.model_path == "m.keras"


def test_findings_rows_say_where_to_show_each_lesion():
    s, _, _ = _session()
    (row,) = lesions_table(s.lesions(), s.voting_threshold)
    les = s.lesions()[0]
    assert row["central_slice"] == les.central.slice_index != 0  # the largest cross-section
    assert row["centre_px"] == les.central.centroid_px
    assert row["slices"] == (1, 4) and row["label"] == les.label(0.5)
    nxt = s.next_finding(None, 1)
    assert nxt.id == row["id"] and s.next_finding(nxt.id, 1).id == row["id"]  # one lesion: wraps to itself
    assert s.largest_finding() is s.findings()[0]
    s.update_params(min_roi_probability=0.95)  # stricter than the lesion's peak (0.9): no finding
    assert s.findings() == [] and s.largest_finding() is None and s.next_finding(None, 1) is None


def test_compute_candidates_reads_a_copy_and_stale_results_are_ignored():
    s, analysis, cs = _session()
    s.add_slice(_slice(1, malignant=False))  # drops nothing: slice 1 was in the candidates' set
    assert s.candidates_ready
    s.set_analysis(StudyAnalysis(s.volume.series_uid, 4, {0: _slice(0)}))
    assert not s.candidates_ready
    s.set_candidates(cs)  # computed for four slices: stale, ignored
    assert not s.candidates_ready


def test_heat_colours_are_the_lut_and_cover_only_analysed_pixels():
    values = np.array([[0.0, 1e-6, 0.35], [0.7, 1.0, 0.5]])
    rgb, covered = heat_colours(values)
    lut = heat_lut()
    assert covered.tolist() == [[False, True, True], [True, True, True]]
    assert rgb.dtype == np.uint8 and tuple(rgb[1, 1]) == tuple(lut[255]) == HEAT_STOPS[-1][1]
    assert tuple(rgb[0, 2]) == tuple(lut[round(0.35 * 255)])
    assert tuple(lut[0]) == (0, 0, 0) and np.all(np.diff(lut.astype(int).sum(axis=1)) >= 0)  # dark to bright


def test_measurements():
    assert segment_length_mm((0, 0), (3, 4), (1.0, 1.0)) == pytest.approx(5.0)
    assert segment_length_mm((0, 0), (10, 0), (0.5, 2.0)) == pytest.approx(5.0)  # rows use the row spacing
    assert segment_length_mm((0, 0), (0, 10), (0.5, 2.0)) == pytest.approx(20.0)
    m = circle_mask((100, 100), (50.0, 50.0), 10.0)
    assert abs(m.sum() - math.pi * 100) < 0.05 * math.pi * 100 and m[49, 49] and not m[30, 30]
    assert not circle_mask((100, 100), (-50.0, -50.0), 5.0).any()
    hu = np.full((100, 100), -800, np.int16)
    hu[40:60, 40:60] = 40
    st = circle_stats(hu, (50.0, 50.0), 5.0, (0.7, 0.7))
    assert (st.mean, st.sd, st.min, st.max) == (40, 0, 40, 40)
    assert st.area_mm2 == pytest.approx(st.n_pixels * 0.49) and "mean 40 HU" in st.text()
    half = region_stats(hu, np.pad(np.ones((2, 1), bool), ((39, 59), (59, 40))), (1.0, 1.0))
    assert (half.n_pixels, half.min, half.max, half.mean) == (2, -800, 40, -380)
    assert circle_stats(hu, (-20.0, -20.0), 3.0, (1.0, 1.0)).text() == "no pixel inside the circle"


def test_threshold_curve_in_the_card_is_optional_and_read_in_both_forms():
    shipped = read_model_card(_shipped_model())
    curve = threshold_curve(shipped)  # the shipped card records the test patients' curve
    assert curve is not None and curve.n == 87 and curve.split == "test"
    assert curve.points[0].threshold == 0.0 and curve.points[-1].threshold == 1.0
    assert curve.at(0.0).sensitivity == 1.0
    ops = operating_points(shipped)
    assert [op.name for op in ops] == ["test patients", "validation patients"]
    assert ops[0].threshold == shipped.operating_point["voting_threshold"] and ops[0].n == 87
    pts = [{"threshold": t / 4, "sensitivity": 1 - t / 8, "specificity": t / 4, "n": 40} for t in range(5)]
    for form in ({"split": "test", "n": 40, "points": pts}, list(reversed(pts))):
        curve = threshold_curve(ModelCard(version="c", metrics={"patient_threshold_curve": form}))
        assert [p.threshold for p in curve.points] == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert curve.at(0.3).threshold == 0.25 and curve.at(0.3).sensitivity == pytest.approx(0.875)
    assert threshold_curve(ModelCard(version="c", metrics={"patient_threshold_curve": [{"x": 1}]})) is None
    assert threshold_curve(ModelCard(version="c", metrics={"patient_threshold_curve": "no"})) is None
    # a card written with the curve reads back (the format round-trips through JSON)
    card = ModelCard(version="c", metrics={"patient_threshold_curve": {"points": pts}})
    assert threshold_curve(ModelCard.from_dict(card.to_dict())).points[0].specificity == 0.0


def _shipped_model():
    from lungct_viewer.resources import MODEL_DIR

    return MODEL_DIR / "lungct_cnn.keras"


def test_study_header_fields_for_the_banner(tmp_path):
    import pydicom

    from lungct_viewer.core.dicom import load_study
    from lungct_viewer.core.dicom.headers import _date
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    assert _date("19500131") == "1950-01-31" and _date("1950.01.31") == "1950-01-31"
    assert _date("") == _date("19501331") == _date("1950") == ""
    folder = write_phantom_dicom(phantom_volume(seed=4, n_slices=3, size=96), tmp_path / "p")
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.PatientBirthDate = "19500131"
        ds.save_as(f)
    vol, _ = load_study(folder)
    assert (vol.patient_birth_date, vol.study_date, vol.study_description) == (
        "1950-01-31",
        "2017-01-01",
        "Synthetic chest CT",
    )
