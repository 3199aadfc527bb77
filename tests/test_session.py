"""The reading session: lesions, second reading, patient call, report and export, no network."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from test_candidates import _ball, _chest, _tube

from lungct_viewer.core import constants as C
from lungct_viewer.core.candidates import FEATURE_NAMES
from lungct_viewer.core.errors import AnalysisCancelled, ExportError, ModelLoadError
from lungct_viewer.core.export import export_reading, slice_png_name
from lungct_viewer.core.labels import Label
from lungct_viewer.core.model import ModelCard
from lungct_viewer.core.report import build_report
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.second_reading import (
    SecondReading,
    load_second_reading,
    save_second_reading,
)
from lungct_viewer.core.session import CandidatePreparation, ReadingSession
from lungct_viewer.core.study import CTVolume

N, SIZE = 24, 256


@pytest.fixture()
def study():
    """A chest with a 12 mm nodule (right lung, slices ~10-14) and a vessel (left lung); the
    'network' peaks on both, malignant on the nodule, benign on the vessel."""
    hu = _chest(N, SIZE)
    _ball(hu, (12, 128, 70), 6.0)
    _tube(hu, 110, 180, 1.6)
    vol = CTVolume.from_array(hu, pixel_spacing_mm=(0.7, 0.7), slice_spacing_mm=2.5)
    vol.patient_name, vol.patient_id = "DOE^JANE", "PID-123"
    analysis = StudyAnalysis(series_uid=vol.series_uid, num_slices=N, model_version="t")
    gh = gw = (SIZE - 50) // 10 + 1
    for z in range(N):
        probs = np.zeros((gh, gw, 3), np.float32)
        probs[..., C.NOT_ROI] = 1.0
        if 9 <= z <= 15:  # windows whose centre is on the nodule: (128-24.5)/10 ~ 10, (70-24.5)/10 ~ 4.5
            probs[9:12, 3:6] = (0.02, 0.18, 0.80)
            probs[10, 4] = (0.001, 0.1, 0.899)
        probs[8:10, 15:17] = (0.05, 0.85, 0.10)  # the vessel at (110, 180): cells ~ (8.5, 15.5)
        probs[8, 15] = (0.01, 0.9, 0.09)
        analysis.slices[z] = SliceAnalysis(z, probs, np.ones((gh, gw), bool), (SIZE, SIZE), (1.0, 1.0))
    return vol, analysis


def _card(**op):
    return ModelCard(
        version="t", operating_point={"voting_threshold": 0.5, "min_roi_probability": 0.5, "min_votes": 4, **op}
    )


def _reading(threshold=0.5, max_lesions=None):
    """A second reading that prefers compact objects (faces touched, elongation count against)."""
    coef = np.zeros(len(FEATURE_NAMES))
    coef[FEATURE_NAMES.index("faces_touched")] = -3.0
    coef[FEATURE_NAMES.index("elongation")] = -2.0
    return SecondReading(
        version="t",
        features=list(FEATURE_NAMES),
        mean=[0.0] * len(FEATURE_NAMES),
        scale=[1.0] * len(FEATURE_NAMES),
        coef=coef.tolist(),
        intercept=2.0,
        threshold=threshold,
        max_lesions=max_lesions,
    )


def _session(study, reading=None, **kw):
    vol, analysis = study
    s = ReadingSession(vol, _card(**kw), reading)
    s.set_analysis(analysis)
    return s


def test_lesions_are_localised_and_vote(study):
    s = _session(study)
    lesions = s.lesions()
    # the nodule is one lesion; the vessel runs through every slice, so seeds far apart on it
    # make several pieces, each running out of its cube; all pass without a second reading
    nod = [les for les in lesions if les.candidate.features["faces_touched"] == 0]
    assert len(nod) == 1 and len(lesions) >= 2
    nod = nod[0]
    assert all(les.passes and les.suspicion is None for les in lesions)
    assert 8 <= nod.diameter_mm <= 16
    cy, cx = nod.central.centroid_px
    assert abs(cy - 128) <= 2 and abs(cx - 70) <= 2  # the mark is on the nodule
    x0, y0, x1, y1 = nod.central.bbox_px
    assert (x1 - x0) * 0.7 < 16 and (y1 - y0) * 0.7 < 16  # and no bigger than it
    assert nod.votes_malignant > 0 and nod.votes_benign == 0
    assert nod.label(0.5) is Label.MALIGNANT
    assert nod.probability(0.5) == pytest.approx(nod.p_malignant)
    assert [les.id for les in lesions] == list(range(1, len(lesions) + 1))


def test_second_reading_decides_what_is_a_finding(study):
    s = _session(study, _reading())
    found = s.findings()
    assert len(found) == 1
    assert found[0].candidate.features["faces_touched"] == 0
    vessel = next(les for les in s.lesions() if not les.passes)
    assert vessel.suspicion < s.params.suspicion_threshold
    assert s.diagnosis().label is Label.MALIGNANT
    # raising the threshold above every suspicion leaves no finding: no suspicious findings
    events = []
    s.subscribe(events.append)
    s.update_params(suspicion_threshold=0.9999)
    assert s.findings() == [] and s.diagnosis().label is Label.NO_FINDINGS
    assert events == ["params"]
    s.reset_to_model_defaults()
    assert len(s.findings()) == 1


def test_thick_slice_series_read_at_their_own_operating_point(study):
    """A second reading with a thick-slice operating point: a 2.5 mm series gets the thin one,
    the same chest as 5 mm slices the thick one, as its default and after a reset."""
    from dataclasses import replace

    from lungct_viewer.core.detection import DetectionParams
    from lungct_viewer.core.second_reading import THICK_SLICE_MM, is_thick

    r = replace(_reading(threshold=0.5), thick_threshold=0.9)
    assert r.threshold_for(2.5) == 0.5 and r.threshold_for(None) == 0.5
    assert r.threshold_for(5.0) == 0.9 and r.threshold_for(THICK_SLICE_MM) == 0.5
    assert is_thick(THICK_SLICE_MM + 0.1) and not is_thick(None)
    assert _reading().threshold_for(8.0) == 0.5  # no thick operating point: one for all
    assert DetectionParams.from_operating_point({}, r, 5.0).suspicion_threshold == 0.9
    thin = _session(study, r)
    assert thin.params.suspicion_threshold == 0.5
    vol, analysis = study
    thick_vol = CTVolume.from_array(vol.hu, pixel_spacing_mm=(0.7, 0.7), slice_spacing_mm=5.0)
    thick = ReadingSession(thick_vol, _card(), r)
    assert thick.params.suspicion_threshold == 0.9
    thick.update_params(suspicion_threshold=0.2)
    thick.reset_to_model_defaults()
    assert thick.params.suspicion_threshold == 0.9
    thick.set_analysis(analysis)
    det = build_report(thick)["detection"]
    assert det["suspicion_threshold"] == det["suspicion_operating_point"] == 0.9 and det["thick_slice_series"]
    assert build_report(thin)["detection"]["thick_slice_series"] is False
    thin.set_second_reading(replace(r, threshold=0.4))
    assert thin.params.suspicion_threshold == 0.4
    with pytest.raises(ValueError):
        replace(r, thick_threshold=1.5)
    # the file keeps both
    assert SecondReading.from_dict(r.to_dict()) == r


def test_the_cap_keeps_the_most_suspicious(study):
    s = _session(study, _reading(threshold=0.0, max_lesions=1))
    assert len(s.findings()) == 1
    assert s.findings()[0].candidate.features["faces_touched"] == 0
    s.update_params(max_lesions=None)
    assert len(s.findings()) == len(s.lesions()) > 1


def test_small_lesions_do_not_make_the_call(study):
    s = _session(study, _reading(), call_min_diameter_mm=30.0)
    d = s.diagnosis()
    assert d.label is Label.NO_FINDINGS and d.n_small == 1


def test_sensitivity_filters_candidates_without_resegmenting(study):
    s = _session(study)
    cs = s.ensure_candidates()
    s.update_params(min_roi_probability=0.995)  # above the vessel's 0.99, below the nodule's 0.999
    assert len(s.lesions()) == 1
    assert s.ensure_candidates() is cs


def test_marks_slice_labels_and_navigation(study):
    s = _session(study, _reading())
    nod = s.findings()[0]
    z = nod.central.slice_index
    marks = s.marks(z)
    assert len(marks) == 1 and marks[0].label is Label.MALIGNANT and marks[0].text.startswith(f"L{nod.id} Malignant")
    assert s.slice_label(z) is Label.MALIGNANT and s.slice_label(0) is None
    assert any(m.label is None for zz in range(N) for m in s.marks(zz, include_candidates=True))
    assert s.next_finding(None, 1).id == nod.id and s.next_finding(nod.id, 1).id == nod.id
    assert z in s.slices_with_findings()


def test_candidates_prepared_beside_the_network_are_the_same(study):
    """prepare_candidates (on a worker while the network runs) computes the lung region once
    and the objects ahead; the candidates found afterwards are those found from scratch."""
    vol, analysis = study
    plain = _session(study, _reading()).ensure_candidates()
    s = ReadingSession(vol, _card(), _reading())
    assert not s.lung_ready
    assert s.prepare_candidates(iter(analysis.slices.values()), lambda: False) == N
    assert s.lung_ready and s.lung_s is not None and s.lung_s >= 0
    lung = s.lung
    s.set_analysis(analysis)
    ahead = s.ensure_candidates()
    assert s.lung is lung  # computed once
    key = [(c.core, c.box, c.features, len(c.seeds)) for c in plain.candidates]
    assert [(c.core, c.box, c.features, len(c.seeds)) for c in ahead.candidates] == key
    assert np.array_equal(ahead.suspicion, plain.suspicion)
    assert s.prepare_candidates(iter(analysis.slices.values()), lambda: True) == 0


def test_candidate_preparation_takes_delivered_slices_until_the_network_is_done(study):
    """What analyze and the viewer run beside the network: slices delivered from another
    thread are prepared; finish() ends it (cancelled() too)."""
    import threading

    vol, analysis = study
    s = ReadingSession(vol, _card(), _reading())
    prep = CandidatePreparation(s)
    runner = threading.Thread(target=lambda: result.append(prep.run()))
    result: list[int] = []
    runner.start()
    for sa in analysis.slices.values():
        prep.deliver(sa)
    deadline = time.monotonic() + 30
    while len(s._objects) < 2 and time.monotonic() < deadline:  # the nodule and the vessel
        time.sleep(0.05)
    prep.finish()
    runner.join(10)
    assert not runner.is_alive() and 1 <= result[0] <= N and s.lung_ready
    assert CandidatePreparation(s).run(cancelled=lambda: True) == 0


def test_report_has_findings_lesions_candidates_and_no_identifiers(study):
    s = _session(study, _reading())
    rep = build_report(s, source="/data/DOE_JANE", model_path="/models/m.keras")
    text = json.dumps(rep)
    for secret in ("DOE", "PID-123", "/data/", "/models/"):
        assert secret not in text
    assert rep["diagnosis"]["label"] == "malignant"
    assert len(rep["lesions"]) == 1 and len(rep["candidates"]) == len(s.lesions()) - 1 >= 1
    f = rep["findings"][0]
    assert f["slice_number"] == f["slice_index"] + 1
    assert {ff["lesion_id"] for ff in rep["findings"]} == {rep["lesions"][0]["id"]}
    assert rep["detection"]["suspicion_threshold"] == 0.5
    with_ids = build_report(s, include_identifiers=True, source="/data/DOE_JANE")
    assert with_ids["series"]["patient_name"] == "DOE^JANE" and with_ids["series"]["source"] == "/data/DOE_JANE"


def test_export_is_staged_and_refuses_to_overwrite(study, tmp_path):
    s = _session(study, _reading())
    idx = s.slices_with_findings()
    out = tmp_path / "out"
    written = export_reading(s, out, idx, report=build_report(s))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([slice_png_name(i, s.volume.sop_instance_uids[i]) for i in idx] + ["report.json"])
    assert len(written) == len(idx) + 1
    with pytest.raises(ExportError):
        export_reading(s, out, idx[:1])
    calls = iter(range(100))
    with pytest.raises(AnalysisCancelled):
        export_reading(s, tmp_path / "b", idx, should_cancel=lambda: next(calls) >= 1)
    assert [p.name for p in (tmp_path / "b").iterdir()] == []  # nothing half-written, no stage left
    src = tmp_path / "dicom"
    src.mkdir()
    with pytest.raises(ExportError):
        export_reading(s, src / "out", idx, source_dir=src)


def test_second_reading_file_round_trip_and_errors(tmp_path):
    r = _reading(max_lesions=3)
    path = save_second_reading(r, tmp_path / "second_reading.json")
    model = tmp_path / "lungct_cnn.keras"
    back = load_second_reading(model)
    assert back == r
    x = np.zeros((2, len(FEATURE_NAMES)))
    x[1, FEATURE_NAMES.index("faces_touched")] = 4
    sc = back.score_matrix(x)
    assert 0 < sc[1] < sc[0] < 1
    path.write_text("{not json")
    with pytest.raises(ModelLoadError):
        load_second_reading(model)
    assert load_second_reading(tmp_path / "elsewhere" / "m.keras") is None
    with pytest.raises(ValueError):
        SecondReading(
            version="t", features=["no_such_feature"], mean=[0], scale=[1], coef=[1], intercept=0, threshold=0.5
        )
