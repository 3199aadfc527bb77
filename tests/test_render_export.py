"""Annotated PNGs from the reading session: red inside the ROI, untouched outside, lesion marks
in the colours of core.labels with the probability of their own call, safe names, staged and
atomic export, no silent overwrite, no identifiers unless asked."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from lungct_viewer.core.candidates import Candidate, Seed, logit
from lungct_viewer.core.errors import AnalysisCancelled, ExportError
from lungct_viewer.core.export import ImageOptions, export_reading, render_png, slice_png_name
from lungct_viewer.core.labels import CANDIDATE_RGB, LABEL_RGB, ROI_ALPHA, ROI_RGB, Label, heat_colours
from lungct_viewer.core.model import ModelCard
from lungct_viewer.core.render import HEADER_PX, image_region, mark_box, window_to_uint8
from lungct_viewer.core.report import build_report
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.session import CandidateSet, ReadingSession, lesion_text
from lungct_viewer.core.study import CTVolume


def _session(suspicion=None, threshold=None) -> ReadingSession:
    """Two 200 x 200 slices, a 30 x 30 px dense block on slice 0 under malignant-voting
    patches, and one hand-made candidate on the block."""
    hu = np.full((2, 200, 200), -800, np.int16)
    hu[:, 60:90, 60:90] = 20
    vol = CTVolume.from_array(hu)
    vol.patient_name, vol.patient_id = "DOE^JANE", "PID-4711"
    probs = np.zeros((16, 16, 3), np.float32)
    probs[..., 0] = 1
    probs[3:6, 3:6] = (0.1, 0.2, 0.7)
    sa0 = SliceAnalysis(0, probs, np.ones((16, 16), bool), (200, 200), (1.0, 1.0))
    sa1 = SliceAnalysis(
        1,
        np.dstack([np.ones((16, 16)), np.zeros((16, 16)), np.zeros((16, 16))]).astype(np.float32),
        np.ones((16, 16), bool),
        (200, 200),
        (1.0, 1.0),
    )
    analysis = StudyAnalysis(vol.series_uid, 2, {0: sa0, 1: sa1}, model_version="t")
    mask = np.zeros((1, 34, 34), bool)
    mask[0, 2:32, 2:32] = True
    cand = Candidate(
        1, (0, 75, 75), (0, 1, 58, 92, 58, 92), mask, [Seed(0, 75.0, 75.0, logit(0.9))], {"radius_mm": 10.5}
    )
    card = ModelCard(version="t", operating_point={"voting_threshold": 0.5})
    second = None
    if threshold is not None:
        from lungct_viewer.core.second_reading import SecondReading

        second = SecondReading(
            version="s", features=["radius_mm"], mean=[0.0], scale=[1.0], coef=[1.0], intercept=0.0, threshold=threshold
        )
    s = ReadingSession(vol, card, second)
    s.set_analysis(analysis)
    s.set_candidates(
        CandidateSet(
            [cand], None if suspicion is None else np.array([suspicion]), 0.0, slices=frozenset(analysis.slices)
        )
    )
    return s


@pytest.fixture()
def session():
    return _session()


def test_red_is_the_findings_objects_by_default(session):
    px = image_region(render_png(session, 0), (200, 200)).astype(int)
    grey = window_to_uint8(session.volume.hu[0], (1500, -600)).astype(int)
    obj = session.lesion_mask(0)
    assert obj.sum() == 30 * 30 and obj[60:90, 60:90].all()
    assert np.array_equal(session.red_mask(0), obj)
    r, g = px[..., 0], px[..., 1]
    assert np.all(r[obj] > g[obj] + 40)
    far = np.ones_like(obj)
    far[40:95, 55:] = False  # the object, its outline and its label
    assert np.array_equal(r[far], grey[far]) and np.array_equal(g[far], grey[far])
    with pytest.raises(ValueError, match="red overlay"):
        session.red_mask(0, "spleen")


def test_vote_map_is_red_on_request_and_the_rest_untouched(session):
    img = render_png(session, 0, ImageOptions(roi_source="votes"))
    px = image_region(img, (200, 200)).astype(int)
    grey = window_to_uint8(session.volume.hu[0], (1500, -600)).astype(int)
    inside = session.roi_mask(0)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    assert inside.sum() > 400
    want_r = np.rint(grey * (1 - ROI_ALPHA) + ROI_RGB[0] * ROI_ALPHA).astype(int)
    want_g = np.rint(grey * (1 - ROI_ALPHA) + ROI_RGB[1] * ROI_ALPHA).astype(int)
    box = np.zeros_like(inside)
    box[57:93, 57:93] = True  # the lesion outline
    box[41:57, 57:] = True  # and its label above it may cross the ROI
    keep = inside & ~box
    assert np.abs(r[keep] - want_r[keep]).max() <= 1 and np.abs(g[keep] - want_g[keep]).max() <= 1
    assert np.all(g[inside] == b[inside])
    # away from the ROI, the lesion box and its label, pixels are exactly the windowed grey
    far = np.ones_like(inside)
    far[20:130, 20:200] = False
    assert np.array_equal(r[far], grey[far]) and np.array_equal(g[far], grey[far]) and np.array_equal(b[far], grey[far])
    # without the ROI overlay the ROI pixels away from the lesion mark are grey again
    plain = image_region(render_png(session, 0, ImageOptions(show_roi=False, roi_source="votes")), (200, 200)).astype(
        int
    )
    assert np.array_equal(plain[..., 0][keep], grey[keep]) and np.array_equal(plain[..., 1][keep], grey[keep])


def test_lesion_mark_has_its_calls_colour_and_probability(session):
    (mark,) = session.marks(0)
    les = session.lesions()[0]
    assert mark.label is Label.MALIGNANT and mark.text == lesion_text(les, 0.5) == f"L1 Malignant {les.p_malignant:.2f}"
    px = np.asarray(render_png(session, 0))
    x0, y0, x1, y1 = mark_box(mark, (200, 200))
    assert (x0, y0, x1, y1) == (57, 57, 92, 92)  # the object's pixels 60..89, 3 px around
    edge = px[HEADER_PX + y0, x0 : x1 + 1]
    assert (edge == LABEL_RGB[Label.MALIGNANT]).all()
    session.set_voting_threshold(1.0)  # 9 of 9 votes malignant: still malignant at 1.0
    assert session.marks(0)[0].label is Label.MALIGNANT
    assert session.marks(1) == []


def test_candidates_are_grey_and_only_when_asked():
    s = _session(suspicion=0.2, threshold=0.5)
    assert s.marks(0) == [] and s.findings() == []
    (mark,) = s.marks(0, include_candidates=True)
    assert mark.label is None and mark.text == "C1 0.20"
    px = np.asarray(render_png(s, 0, ImageOptions(include_candidates=True)))
    x0, y0, x1, _ = mark_box(mark, (200, 200))
    assert (px[HEADER_PX + y0, x0 : x1 + 1] == CANDIDATE_RGB).all()
    assert not np.array_equal(px, np.asarray(render_png(s, 0)))


def test_heatmap_colours_are_the_lut_blended(session):
    opts = ImageOptions(heatmap_kind="malignant", heatmap_opacity=0.5, show_roi=False)
    px = image_region(render_png(session, 0, opts), (200, 200)).astype(np.float64)
    heat = session.heatmap(0, "malignant")
    rgb, covered = heat_colours(heat)
    grey = window_to_uint8(session.volume.hu[0], (1500, -600)).astype(np.float64)
    probe = (40, 40)  # under patch (3, 3), away from the lesion mark
    assert covered[probe]
    want = grey[probe] * 0.5 + rgb[probe] * 0.5
    assert np.allclose(px[probe], want, atol=1)
    far = ~covered
    far[:130] = False
    assert far.sum() > 5000 and np.array_equal(px[far][:, 0], grey[far])  # no heat there: untouched


def test_no_patient_name_unless_asked(session):
    a = np.asarray(render_png(session, 0))
    b = np.asarray(render_png(session, 0, ImageOptions(include_patient_name=True)))
    assert not np.array_equal(a[:20], b[:20])  # the name changes the header only when asked
    assert np.array_equal(a[HEADER_PX:], b[HEADER_PX:])


def test_export_names_staged_atomic_and_no_overwrite(session, tmp_path):
    out = tmp_path / "out"
    report = build_report(session)
    paths = export_reading(session, out, [0, 1], report=report)
    vol = session.volume
    assert [p.name for p in paths] == [
        slice_png_name(0, vol.sop_instance_uids[0]),
        slice_png_name(1, vol.sop_instance_uids[1]),
        "report.json",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no staging left
    with Image.open(paths[0]) as im:
        assert im.format == "PNG"
    before = paths[0].read_bytes()
    with pytest.raises(ExportError, match="already exist"):
        export_reading(session, out, [0], options=ImageOptions(heatmap_kind="roi"))
    assert paths[0].read_bytes() == before
    export_reading(session, out, [0], overwrite=True, options=ImageOptions(heatmap_kind="roi"))
    assert paths[0].read_bytes() != before
    (tmp_path / "src").mkdir()
    with pytest.raises(ExportError, match="inside the DICOM folder"):
        export_reading(session, tmp_path / "src" / "out", [0], source_dir=tmp_path / "src")
    # a cancel leaves nothing behind
    calls = []
    with pytest.raises(AnalysisCancelled):
        export_reading(
            session,
            tmp_path / "cancelled",
            [0, 1],
            report=report,
            should_cancel=lambda: calls.append(1) or len(calls) > 1,
        )
    assert not any((tmp_path / "cancelled").iterdir())


def test_report_has_no_identifier_or_path_unless_asked(session, tmp_path):
    rep = build_report(session, source="/data/DOE_JANE", model_path="/models/m.keras")
    text = json.dumps(rep)
    assert "DOE" not in text and "PID-4711" not in text and "/data" not in text and "/models" not in text
    assert rep["diagnosis"]["label"] == Label.MALIGNANT.value and rep["lesions"][0]["label"] == "malignant"
    (f,) = rep["findings"]
    assert (f["slice_number"], f["slice_index"], f["lesion_id"]) == (1, 0, 1)
    rep2 = build_report(session, include_identifiers=True, source="/data/DOE_JANE", model_path="/models/m.keras")
    assert rep2["series"]["patient_name"] == "DOE^JANE" and rep2["series"]["patient_id"] == "PID-4711"
    assert rep2["series"]["source"] == "/data/DOE_JANE" and rep2["model"]["path"] == "/models/m.keras"


def test_slice_png_name_is_safe():
    assert slice_png_name(0, "1.2.3") == "slice_0001_1.2.3.png"
    assert "/" not in slice_png_name(4, "../../etc/passwd")


def test_atomic_writes_leave_no_temp_and_use_normal_permissions(tmp_path):
    from lungct_viewer.core.atomic import write_json_atomic

    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(TypeError):
        write_json_atomic(target, {"a": object()})
    assert target.read_text().strip() == '{\n  "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
