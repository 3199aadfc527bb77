"""The viewer window on the reading session, driven offscreen with pytest-qt.

Display and reading tests show a :class:`ReadingSession` built from made-up patch
probabilities on the sliding-window grid and hand-made 3-D candidates (test data for the
display layer); loading tests read phantom DICOM series; analysis tests run a real, randomly
initialised CNN of the project's architecture on the worker thread, and one test reads a
phantom study end to end with the CNN trained on phantom patches in this test session.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

from lungct_viewer import RESEARCH_NOTICE
from lungct_viewer.core.candidates import Candidate, Seed, logit
from lungct_viewer.core.labels import LABEL_RGB, Label, heat_colours, heat_lut, left_out_rgb
from lungct_viewer.core.model import ModelCard
from lungct_viewer.core.render import mark_rgb
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.second_reading import SecondReading
from lungct_viewer.core.session import CandidateSet, ReadingSession
from lungct_viewer.core.study import CTVolume
from lungct_viewer.core.texture import Texture

pytestmark = pytest.mark.gui

pytest.importorskip("pytestqt")


# ----------------------------------------------------------------------------- helpers
class FakeDialogs:
    """Scripted answers; records every message instead of blocking on a modal dialog."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self.questions: list[str] = []
        self.answer = False
        self.folder: str | None = None
        self.file: str | None = None
        self.series_choice: int | None = 0
        self.series_offered: list[str] = []
        self.about_html: str | None = None

    def error(self, parent, title, text, details=""):
        self.errors.append((title, text))

    def question(self, parent, title, text):
        self.questions.append(text)
        return self.answer

    def open_folder(self, parent, start=""):
        return self.folder

    def open_file(self, parent, start=""):
        return self.file

    def export_folder(self, parent, start=""):
        return self.folder

    def choose_series(self, parent, summaries, default):
        self.series_offered = list(summaries)
        return self.series_choice

    def about(self, parent, title, html_text):
        self.about_html = html_text


def synth_volume(n: int = 8, size: int = 256) -> CTVolume:
    """A chest-like volume: body, two lungs, two soft-tissue nodules."""
    yy, xx = np.mgrid[:size, :size]
    hu = np.full((n, size, size), -1000, np.int16)
    body = ((yy - size / 2) / (0.43 * size)) ** 2 + ((xx - size / 2) / (0.37 * size)) ** 2 < 1
    hu[:, body] = 40
    for cx in (0.33 * size, 0.67 * size):
        hu[:, ((yy - 0.49 * size) / (0.3 * size)) ** 2 + ((xx - cx) / (0.12 * size)) ** 2 < 1] = -850
    hu[2:5, (yy - 95) ** 2 + (xx - 75) ** 2 < 50] = 30
    hu[5:8, (yy - 140) ** 2 + (xx - 160) ** 2 < 80] = 20
    return CTVolume.from_array(hu, pixel_spacing_mm=(0.7, 0.7), description="synthetic chest")


def synth_analysis(volume: CTVolume, blobs) -> StudyAnalysis:
    """Patch probabilities: ``blobs`` = [(slice, grid_i0, grid_j0, size, (p0, pb, pm))]."""
    from lungct_viewer.core.patches import grid_shape

    rows, cols = volume.hu.shape[1:]
    gh, gw = grid_shape(rows, cols)
    slices = {}
    for i in range(volume.num_slices):
        probs = np.zeros((gh, gw, 3), np.float32)
        probs[..., 0] = 1.0
        for s, i0, j0, k, p in blobs:
            if s == i:
                probs[i0 : i0 + k, j0 : j0 + k] = p
        slices[i] = SliceAnalysis(i, probs, np.ones((gh, gw), bool), (rows, cols), (1.0, 1.0))
    return StudyAnalysis(volume.series_uid, volume.num_slices, slices, model_version="test-grid")


def disk_candidate(z0: int, z1: int, centre: tuple[float, float], radius: float, p_roi: float = 0.9) -> Candidate:
    """A hand-made candidate: a disk of ``radius`` px on slices ``z0 .. z1 - 1``."""
    cy, cx = centre
    y0, y1 = int(cy - radius - 2), int(cy + radius + 3)
    x0, x1 = int(cx - radius - 2), int(cx + radius + 3)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    mask = np.repeat(disk[None], z1 - z0, axis=0)
    seeds = [Seed(z, cy, cx, logit(p_roi)) for z in range(z0, z1)]
    return Candidate(
        0, ((z0 + z1) // 2, int(cy), int(cx)), (z0, z1, y0, y1, x0, x1), mask, seeds, {"radius_mm": radius * 0.7}
    )


#: A malignant-voting blob on slice 3 and a benign-voting one on slice 6 (patch grid), and
#: the two lesions under them (slices 2-4 and 5-7).
BLOBS = [(3, 6, 4, 3, (0.1, 0.15, 0.75)), (6, 10, 12, 4, (0.1, 0.7, 0.2))]
CARD = ModelCard(
    version="test-card", operating_point={"voting_threshold": 0.5, "min_roi_probability": 0.5, "min_votes": 4}
)
SECOND = SecondReading(
    version="test-second", features=["radius_mm"], mean=[0.0], scale=[1.0], coef=[1.0], intercept=0.0, threshold=0.5
)


def make_reading(
    suspicion=(0.9, 0.8), second: bool = True, reading: SecondReading = SECOND
) -> tuple[ReadingSession, StudyAnalysis, CandidateSet]:
    vol = synth_volume()
    analysis = synth_analysis(vol, BLOBS)
    cands = [disk_candidate(2, 5, (95.0, 75.0), 7.0), disk_candidate(5, 8, (140.0, 160.0), 9.0)]
    for k, c in enumerate(cands, start=1):
        c.id = k
    cs = CandidateSet(cands, np.array(suspicion) if second else None, 0.0, slices=frozenset(analysis.slices))
    return ReadingSession(vol, CARD, reading if second else None), analysis, cs


@pytest.fixture()
def dialogs():
    return FakeDialogs()


@pytest.fixture()
def make_window(qtbot, tmp_path, dialogs):
    from lungct_viewer.gui.main_window import MainWindow

    made = []

    def make(**kw):
        kw.setdefault("settings", QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat))
        kw.setdefault("dialogs", dialogs)
        kw.setdefault("auto_analyze", False)
        kw.setdefault("preload_model", False)
        w = MainWindow(**kw)
        qtbot.addWidget(w)
        w.show()
        w.activateWindow()
        qtbot.waitActive(w)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
        assert not w.workers.running(), "a worker thread outlived its window"


@pytest.fixture()
def window(make_window):
    return make_window()


@pytest.fixture()
def analysed(window):
    """The window showing a read session: two lesions, both passing the second reading."""
    session, analysis, cs = make_reading()
    window.set_session(session)
    window.set_analysis(analysis, cs)
    window.view.setFocus()
    return window


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    out = tmp_path_factory.mktemp("phantom")
    return Path(write_phantom_dicom(phantom_volume(seed=3, n_slices=12, size=256), out))


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory) -> str:
    """The project's CNN with random weights, output layer sharpened (no training, no fake)."""
    from lungct_viewer.core.model import build_model, save_model

    m = build_model(seed=7)
    fc2 = m.get_layer("fc2")
    k, b = fc2.get_weights()
    fc2.set_weights([k * 60.0, b])
    path = tmp_path_factory.mktemp("model") / "test_cnn.keras"
    save_model(
        m,
        path,
        ModelCard(version="test-random", training_data=["none (random weights)"], licences=["CC BY 3.0 (test)"]),
    )
    return str(path)


def wait_analysis(qtbot, w, timeout=120_000):
    with qtbot.waitSignal(w.analysisFinished, timeout=timeout) as blocker:
        pass
    return blocker.args[0]


def press(qtbot, w, key, widget=None):
    """A key press as the reader makes it: to the focused widget of the active window."""
    target = widget or QtWidgets.QApplication.focusWidget() or w
    qtbot.keyClick(target, key)


def visible_marks(view):
    return [(r, t) for r, t in view.mark_items if r.isVisible()]


def _drag(qtbot, widget, button, a, b):
    def send(kind, pos, btn, btns):
        ev = QtGui.QMouseEvent(
            kind,
            QtCore.QPointF(pos),
            QtCore.QPointF(widget.mapToGlobal(pos)),
            btn,
            btns,
            Qt.KeyboardModifier.NoModifier,
        )
        QtWidgets.QApplication.sendEvent(widget, ev)

    send(QtCore.QEvent.Type.MouseButtonPress, a, button, button)
    for k in range(1, 6):
        send(QtCore.QEvent.Type.MouseMove, a + (b - a) * (k / 5), Qt.MouseButton.NoButton, button)
    send(QtCore.QEvent.Type.MouseButtonRelease, b, button, Qt.MouseButton.NoButton)
    qtbot.wait(10)


def _move_mouse(view, pos):
    vp = view.viewport()
    ev = QtGui.QMouseEvent(
        QtCore.QEvent.Type.MouseMove,
        QtCore.QPointF(pos),
        QtCore.QPointF(vp.mapToGlobal(pos)),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QtWidgets.QApplication.sendEvent(vp, ev)


# ----------------------------------------------------------------------------- structure
def test_no_tensorflow_at_import():
    import subprocess
    import sys

    code = (
        "import sys, lungct_viewer.gui.app, lungct_viewer.gui.main_window;"
        "heavy=('tensorflow','keras','lungct_viewer.core.inference');"
        "bad=[m for m in heavy if m in sys.modules];"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_gui_holds_no_reading_logic_and_the_window_only_composes():
    gui = Path(__file__).resolve().parents[1] / "lungct_viewer" / "gui"
    assert len((gui / "main_window.py").read_text().splitlines()) < 400
    for path in gui.glob("*.py"):
        text = path.read_text()
        for needle in ("C.BENIGN", "C.MALIGNANT", "probs[", "group_lesions", "detect_slice", "diagnose("):
            assert needle not in text, f"{path.name} computes reading logic ({needle})"


# ----------------------------------------------------------------------------- viewing
def test_scroll_keys_wheel_and_slider(window, qtbot):
    w = window
    w.set_volume(synth_volume(n=30))
    w.view.setFocus()
    assert w.index == 15
    press(qtbot, w, Qt.Key.Key_Down)
    assert w.index == 16
    press(qtbot, w, Qt.Key.Key_Up)
    press(qtbot, w, Qt.Key.Key_Up)
    assert w.index == 14
    press(qtbot, w, Qt.Key.Key_PageDown)
    assert w.index == 24
    press(qtbot, w, Qt.Key.Key_End)
    assert w.index == 29
    press(qtbot, w, Qt.Key.Key_Home)
    assert w.index == 0
    press(qtbot, w, Qt.Key.Key_PageUp)
    assert w.index == 0  # clamped
    w.view.vb.sigWheelSlices.emit(3)
    assert w.index == 3
    w.viewer.nav.slider.setValue(20)
    assert w.index == 20
    label = w.viewer.nav.label.text()
    assert label.startswith("Slice 21 / 30") and f"{w.session.volume.slice_positions_mm[20]:.1f} mm" in label
    assert np.array_equal(w.view.image_item.image, w.session.volume.hu[20])


def test_window_presets_invert_drag_and_reset(window, qtbot):
    w = window
    w.set_volume(synth_volume())
    w.view.setFocus()
    assert w.display.options.window == (1500.0, -600.0)
    press(qtbot, w, Qt.Key.Key_2)
    assert w.display.options.window == (400.0, 40.0)
    assert tuple(w.view.image_item.levels) == (-160.0, 240.0)
    press(qtbot, w, Qt.Key.Key_3)
    assert w.display.options.window == (2500.0, 480.0)
    w.display.preset_combo.setCurrentIndex(0)
    w.display.preset_combo.activated.emit(0)
    assert w.display.options.window == (1500.0, -600.0)
    w.view.windowDragged.emit(10.0, -5.0)  # left-drag: wider window, lower level
    width, level = w.display.options.window
    assert width > 1500 and level < -600
    assert w.display.preset_combo.currentText() == "Custom"
    press(qtbot, w, Qt.Key.Key_I)
    assert w.display.options.inverted and w.display.invert_check.isChecked()
    w.view.vb.scaleBy((0.5, 0.5))
    zoomed = w.view.vb.viewRect().width()
    press(qtbot, w, Qt.Key.Key_Space)
    assert w.view.vb.viewRect().width() > zoomed * 1.5


def test_mouse_drags_window_pan_zoom(window, qtbot):
    w = window
    w.set_volume(synth_volume())
    vp = w.view.viewport()
    c = vp.rect().center()
    w0 = w.display.options.window
    _drag(qtbot, vp, Qt.MouseButton.LeftButton, c, c + QtCore.QPoint(40, 0))
    assert w.display.options.window[0] > w0[0]
    r0 = w.view.vb.viewRect()
    _drag(qtbot, vp, Qt.MouseButton.MiddleButton, c, c + QtCore.QPoint(50, 30))
    r1 = w.view.vb.viewRect()
    assert r1.x() < r0.x() and abs(r1.width() - r0.width()) < 1e-6  # panned, same zoom
    _drag(qtbot, vp, Qt.MouseButton.RightButton, c, c + QtCore.QPoint(0, 60))
    assert w.view.vb.viewRect().width() != pytest.approx(r1.width())  # zoomed


def test_hu_readout_follows_the_slice_under_a_still_mouse(window, qtbot):
    w = window
    vol = synth_volume()
    w.set_volume(vol)
    w.set_index(3)  # the first nodule (+30 HU) is on slices 2-4
    vp = w.view.viewport()
    pos = w.view.mapFromScene(w.view.vb.mapViewToScene(QtCore.QPointF(75.5, 95.5)))
    _move_mouse(w.view, pos)
    text = w.cursor_label.text()
    assert text.startswith("HU +30") and "row 95, col 75" in text
    x, y, z = vol.pixel_to_patient_mm(3, 95, 75)
    assert f"x {x:.1f}, y {y:.1f}, z {z:.1f} mm" in text
    w.view.vb.sigWheelSlices.emit(3)  # wheel to slice 6, mouse still: lung there
    assert w.index == 6
    assert w.cursor_label.text().startswith(f"HU {int(vol.hu[6, 95, 75]):+d}") and "z " in w.cursor_label.text()
    assert int(vol.hu[6, 95, 75]) != 30
    ev = QtCore.QEvent(QtCore.QEvent.Type.Leave)
    QtWidgets.QApplication.sendEvent(w.view, ev)
    assert w.cursor_label.text() == ""
    assert vp is w.view.viewport()


def test_shortcuts_do_not_fire_inside_input_fields(analysed, qtbot):
    w = analysed
    spin = w.reading.votes_spin
    w.set_index(4)
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    spin.selectAll()
    qtbot.keyClicks(spin, "7")
    qtbot.keyClick(spin, Qt.Key.Key_Up)
    assert spin.value() == 8 and w.session.params.min_votes == 8
    for key in (Qt.Key.Key_2, Qt.Key.Key_R, Qt.Key.Key_Space):
        qtbot.keyClick(spin, key)
    assert w.index == 4, "Up in the box changed the slice"
    assert w.display.options.window == (1500.0, -600.0), "a digit typed into the box changed the window"
    assert w.display.options.show_roi
    qtbot.keyClick(spin, Qt.Key.Key_Return)  # done: the keyboard goes back to the slice view
    qtbot.waitUntil(w.view.hasFocus)
    press(qtbot, w, Qt.Key.Key_2)
    press(qtbot, w, Qt.Key.Key_Up)
    assert w.display.options.window == (400.0, 40.0) and w.index == 3


def test_banner_notice_and_load_warnings(window, qtbot, tmp_path, phantom_dir):
    import pydicom

    src = tmp_path / "study"
    src.mkdir()
    for k, f in enumerate(sorted(phantom_dir.glob("*.dcm"))):
        ds = pydicom.dcmread(f)
        ds.PatientBirthDate = "19500131"
        if k == 5:  # one slice moved: uneven spacing
            pos = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + 1.1]
        ds.save_as(src / f.name)
    (src / "notes.txt").write_text("not DICOM")
    with qtbot.waitSignal(window.studyLoaded, timeout=60_000):
        window.open_path(str(src))
    banner = window.viewer.banner.text()
    for needle in ("PHANTOM DEMO", "PHANTOM-3", "1950-01-31", "2017-01-01", "Synthetic chest CT", "12 slices"):
        assert needle in banner, needle
    assert window.notice_label.isVisible() and window.notice_label.text() == RESEARCH_NOTICE
    assert window.status_notice.isVisible() and RESEARCH_NOTICE in window.windowTitle()
    wb = window.warnings_button
    assert wb.isVisible() and any("notes.txt" in x for x in wb.warnings)
    assert any("spacing" in x.lower() for x in wb.warnings), wb.warnings
    qtbot.wait(200)
    assert wb.isVisible(), "warnings must stay until dismissed"
    wb.click()
    assert wb.dialog is not None and wb.dialog.isVisible()
    assert "notes.txt" in wb.dialog.findChild(QtWidgets.QPlainTextEdit).toPlainText()
    dismiss = next(b for b in wb.dialog.findChildren(QtWidgets.QPushButton) if b.text() == "Dismiss")
    dismiss.click()
    assert not wb.isVisible()


# ----------------------------------------------------------------------------- overlays & reading
def test_overlays_follow_the_session_and_toggle_with_keys(analysed, qtbot):
    w = analysed
    s = w.session
    w.set_index(3)
    # red: the findings' objects by default (as the PNG export), the vote map on request
    assert w.display.options.red == "lesions" and w.view.roi_item.isVisible()
    assert np.array_equal(w.view.roi_mask, s.lesion_mask(3)) and w.view.roi_mask.sum() == (s.lesion_mask(3)).sum() > 0
    w.display.red_combo.setCurrentIndex(w.display.red_combo.findData("votes"))
    assert np.array_equal(w.view.roi_mask, s.roi_mask(3)) and w.view.roi_mask.sum() > s.lesion_mask(3).sum()
    press(qtbot, w, Qt.Key.Key_R)
    assert not w.display.roi_check.isChecked() and not w.view.roi_item.isVisible()
    press(qtbot, w, Qt.Key.Key_R)
    assert w.view.roi_item.isVisible()
    assert not w.view.heat_item.isVisible()
    press(qtbot, w, Qt.Key.Key_H)
    assert w.view.heat_item.isVisible()
    heat = w.view.heatmap
    assert np.array_equal(heat, s.heatmap(3, "malignant")) and heat.max() > 0.2
    # the view colours the heatmap with the PNG's colour table, transparent where no patch covers
    rgba = w.view.heat_item.image
    rgb, covered = heat_colours(heat)
    rows = np.flatnonzero(covered.any(axis=1))
    cols = np.flatnonzero(covered.any(axis=0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    assert np.array_equal(rgba[..., :3], rgb[crop]) and np.array_equal(rgba[..., 3] > 0, covered[crop])
    assert np.array_equal(w.display.legend.lut, heat_lut(64))
    w.display.heat_combo.setCurrentIndex(1)  # P(benign): lower on the malignant blob
    assert w.view.heatmap.max() < heat.max() / 2 and w.display.legend.caption == "P(benign)"
    w.display.opacity_slider.setValue(25)
    assert w.view.heat_item.opacity() == pytest.approx(0.25)
    press(qtbot, w, Qt.Key.Key_H)
    assert not w.view.heat_item.isVisible()
    marks = visible_marks(w.view)
    assert len(marks) == len(s.marks(3)) == 1
    press(qtbot, w, Qt.Key.Key_O)
    assert not visible_marks(w.view)
    press(qtbot, w, Qt.Key.Key_O)
    w.set_index(0)
    assert not w.view.roi_item.isVisible() and not visible_marks(w.view)


def test_controls_change_the_reading_live_without_the_network(analysed, monkeypatch):
    import lungct_viewer.core.pipeline as pipeline

    calls = []
    monkeypatch.setattr(pipeline.Analyzer, "iter_analyze", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(pipeline.Analyzer, "analyze", lambda *a, **k: calls.append(1))
    w = analysed
    s, r = w.session, w.reading
    assert len(s.findings()) == 2 and r.table.rowCount() == 2
    frac = s.diagnosis().malignant_fraction
    assert 0.1 < frac < 0.9
    seen = set()
    for v in range(0, 101, 5):
        r.threshold_slider.setValue(v)
        d = s.diagnosis()
        assert s.voting_threshold == v / 100 and r.diag_label.text() == d.display
        seen.add(d.label)
        calls_shown = [r.table.item(k, 3).text() for k in range(2)]
        assert calls_shown == [les.label(v / 100).display for les in s.findings()]
    assert seen == {Label.MALIGNANT, Label.BENIGN}
    r.threshold_slider.setValue(0)
    assert r.diag_label.text() == "MALIGNANT" and f"{frac:.2f}" in r.diag_detail.text()
    assert "Lesions in the call: 2" in r.diag_detail.text()
    # sensitivity: a stricter P(ROI) than the lesions' peaks (0.9) leaves no finding
    r.sens_slider.setValue(95)
    r.apply_pending()
    assert s.params.min_roi_probability == 0.95 and s.findings() == []
    assert r.diag_label.text() == "NO SUSPICIOUS FINDINGS" and r.table.rowCount() == 0
    assert w.viewer.nav.strip.marks() == {}
    r.sens_slider.setValue(50)
    r.apply_pending()
    assert set(w.viewer.nav.strip.marks()) == {2, 3, 4, 5, 6, 7}
    # minimum votes: the vote map tightens
    w.display.red_combo.setCurrentIndex(w.display.red_combo.findData("votes"))
    w.set_index(3)
    area = w.view.roi_mask.sum()
    r.votes_spin.setValue(9)
    assert s.params.min_votes == 9 and 0 < w.view.roi_mask.sum() < area
    assert np.array_equal(w.view.roi_mask, s.roi_mask(3))
    # suspicion: the second lesion (0.8) drops below 0.85 and becomes a candidate
    r.susp_slider.setValue(85)
    assert s.params.suspicion_threshold == 0.85 and [les.id for les in s.findings()] == [1]
    assert r.table.rowCount() == 1 and "1 candidate(s) below the suspicion threshold" in r.diag_detail.text()
    assert calls == []


def test_model_defaults_button_restores_the_operating_point(analysed):
    w = analysed
    s, r = w.session, w.reading
    r.threshold_slider.setValue(80)
    r.sens_slider.setValue(30)
    r.apply_pending()
    r.votes_spin.setValue(12)
    r.susp_slider.setValue(90)
    assert (s.voting_threshold, s.params.min_roi_probability, s.params.min_votes) == (0.8, 0.3, 12)
    r.defaults_button.click()
    assert s.voting_threshold == 0.5 and s.params == s.default_params
    assert (s.params.min_roi_probability, s.params.min_votes, s.params.suspicion_threshold) == (0.5, 4, 0.5)
    assert (r.threshold_slider.value(), r.sens_slider.value(), r.votes_spin.value(), r.susp_slider.value()) == (
        50,
        50,
        4,
        50,
    )


def test_a_ground_glass_finding_is_marked_and_does_not_vote(window):
    session, analysis, cs = make_reading(suspicion=(0.9, 0.8))
    cs.candidates[0].features["solid_core_mm"] = 1.0  # no solid component: ground glass
    cs.candidates[1].features["solid_core_mm"] = 6.0
    window.set_session(session)
    window.set_analysis(analysis, cs)
    r = window.reading
    glass, solid = sorted(session.findings(), key=lambda les: les.candidate.id)
    assert glass.texture is Texture.GROUND_GLASS and solid.texture is Texture.SOLID
    calls = {r.table.item(k, 0).text(): r.table.item(k, 3).text() for k in range(r.table.rowCount())}
    assert calls[str(glass.id)].endswith("\u00b7 GG") and not calls[str(solid.id)].endswith("GG")
    tips = {r.table.item(k, 0).text(): r.table.item(k, 3).toolTip() for k in range(r.table.rowCount())}
    assert tips[str(glass.id)] == "Texture: ground glass\nDoes not vote in the patient call: ground glass"
    assert tips[str(solid.id)] == "Texture: solid / part-solid"
    italic = {r.table.item(k, 0).text(): r.table.item(k, 3).font().italic() for k in range(r.table.rowCount())}
    assert italic == {str(glass.id): True, str(solid.id): False}
    d = session.diagnosis()
    assert (d.n_lesions, d.n_ground_glass) == (1, 1)
    assert d.votes_malignant + d.votes_benign == solid.votes_malignant + solid.votes_benign
    assert "Lesions in the call: 1" in r.diag_detail.text() and "1 ground glass" in r.diag_detail.text()
    # the lesion's tag on the image says so too
    window.set_index(glass.central.slice_index)
    tags = [tag.toPlainText() for _rect, tag in visible_marks(window.view)]
    assert any(t.startswith(f"L{glass.id} ") and t.endswith(" GG") for t in tags), tags
    # ... and its box takes the muted colour of a call that does not vote (the PNG's too)
    label = glass.label(session.voting_threshold)
    muted = next(m for m in session.marks(glass.central.slice_index) if m.lesion_id == glass.id)
    assert not muted.in_call and mark_rgb(muted) == left_out_rgb(LABEL_RGB[label]) != LABEL_RGB[label]
    pens = [
        r.pen().color().getRgb()[:3]
        for r, t in visible_marks(window.view)
        if t.toPlainText().startswith(f"L{glass.id} ")
    ]
    assert pens == [left_out_rgb(LABEL_RGB[label])]
    # a solid finding below the call's minimum size is left out too, and says why
    session.update_params(call_min_diameter_mm=solid.diameter_mm + 1.0)
    row = next(k for k in range(r.table.rowCount()) if r.table.item(k, 0).text() == str(solid.id))
    assert r.table.item(row, 3).font().italic()
    assert r.table.item(row, 3).toolTip().endswith(f"patient call: smaller than {solid.diameter_mm + 1.0:g} mm")
    assert session.diagnosis().n_lesions == 0


def test_show_candidates_toggle(window):
    session, analysis, cs = make_reading(suspicion=(0.9, 0.2))
    window.set_session(session)
    window.set_analysis(analysis, cs)
    r = window.reading
    assert r.candidates_check.isEnabled() and not r.show_candidates
    assert r.table.rowCount() == 1 and r.table.item(0, 0).text() == "1"
    les = session.findings()[0]
    assert r.table.item(0, 2).text() == f"{les.diameter_mm:.1f}"
    assert (
        r.table.item(0, 2).toolTip()
        == f"{les.long_axis_mm:.1f} \u00d7 {les.short_axis_mm:.1f} mm (long \u00d7 short axis)"
    )
    window.set_index(6)
    assert not visible_marks(window.view), "a candidate below the threshold is hidden by default"
    r.candidates_check.setChecked(True)
    assert r.table.rowCount() == 2 and r.table.item(1, 3).text() == "candidate"
    ((rect, tag),) = visible_marks(window.view)
    assert tag.toPlainText() == "C2 0.20" and tag.colour().getRgb()[:3] == (170, 170, 170)
    r.candidates_check.setChecked(False)
    assert not visible_marks(window.view) and r.table.rowCount() == 1
    # a model without a second reading: nothing to show, and the reader is told why
    s2, a2, cs2 = make_reading(second=False)
    window.set_session(s2)
    window.set_analysis(a2, cs2)
    assert not r.candidates_check.isEnabled() and not r.susp_slider.isEnabled()
    assert "no second reading" in r.susp_slider.toolTip() and "no second reading" in r.candidates_check.toolTip()
    assert r.table.rowCount() == 2
    # a second reading that keeps at most one finding per scan: the more suspicious one
    capped = SecondReading(
        version="capped",
        features=["radius_mm"],
        mean=[0.0],
        scale=[1.0],
        coef=[1.0],
        intercept=0.0,
        threshold=0.5,
        max_lesions=1,
    )
    s3, a3, cs3 = make_reading(suspicion=(0.9, 0.8), reading=capped)
    window.set_session(s3)
    window.set_analysis(a3, cs3)
    assert [les.id for les in s3.findings()] == [1] and r.table.rowCount() == 1
    assert "Findings: 1 lesion(s) (at most 1 per scan); 1 candidate(s)" in r.diag_detail.text()
    r.candidates_check.setChecked(True)
    assert r.table.rowCount() == 2
    # a thick-slice series starts at the second reading's thick-slice operating point, and the
    # slider says why its default differs
    from dataclasses import replace

    banded = replace(capped, max_lesions=None, thick_threshold=0.85)
    s4, a4, cs4 = make_reading(suspicion=(0.9, 0.8), reading=banded)
    thick_vol = CTVolume.from_array(s4.volume.hu, pixel_spacing_mm=(0.7, 0.7), slice_spacing_mm=5.0)
    s5 = ReadingSession(thick_vol, CARD, banded)
    window.set_session(s5)
    window.set_analysis(a4, cs4)
    assert s5.params.suspicion_threshold == 0.85 and [les.id for les in s5.findings()] == [1]
    assert "5.0 mm apart" in r.susp_slider.toolTip() and "thin slices: 0.50" in r.susp_slider.toolTip()
    assert r.susp_value.text() == "\u2265 0.85"


def test_findings_list_click_and_next_previous(analysed, qtbot):
    w = analysed
    t = w.reading.table
    assert [t.item(r, 1).text() for r in range(2)] == ["3\u20135", "6\u20138"]  # 1-based slices
    assert float(t.item(0, 2).text()) > 6
    w.set_index(0)
    rect = t.visualItemRect(t.item(1, 0))
    qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    les = w.session.findings()[1]
    assert w.index == les.central.slice_index
    cy, cx = w.view.view_centre()
    assert abs(cy - les.central.centroid_px[0]) < 1 and abs(cx - les.central.centroid_px[1]) < 1
    w.view.setFocus()
    press(qtbot, w, Qt.Key.Key_N)  # after lesion 2: wraps to lesion 1
    first = w.session.findings()[0]
    assert w.index == first.central.slice_index and t.currentRow() == 0
    press(qtbot, w, Qt.Key.Key_N)
    assert w.index == les.central.slice_index
    press(qtbot, w, Qt.Key.Key_P)
    assert w.index == first.central.slice_index


# ----------------------------------------------------------------------------- export
def test_screen_and_png_agree_on_label_probability_and_colour(analysed, qtbot, tmp_path):
    from lungct_viewer.core.export import slice_png_name
    from lungct_viewer.core.render import HEADER_PX, mark_box

    w = analysed
    s = w.session
    w.reading.threshold_slider.setValue(30)
    for les in s.findings():
        i = les.central.slice_index
        w.set_index(i)
        ((rect, tag),) = visible_marks(w.view)
        lab = les.label(0.3)
        assert tag.toPlainText() == f"L{les.id} {lab.display} {les.probability(0.3):.2f}"
        assert les.probability(0.3) == (les.p_malignant if lab is Label.MALIGNANT else les.p_benign)
        assert tag.colour().getRgb()[:3] == LABEL_RGB[lab] == rect.pen().color().getRgb()[:3]
        with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
            w.export_slices("current", tmp_path / f"s{i}")
        png = tmp_path / f"s{i}" / slice_png_name(i, s.volume.sop_instance_uids[i])
        assert png in b.args[0]
        px = np.asarray(Image.open(png).convert("RGB"))
        (mark,) = s.marks(i)
        x0, y0, x1, y1 = mark_box(mark, s.volume.hu.shape[1:])
        assert rect.rect().getRect() == (x0, y0, x1 - x0 + 1, y1 - y0 + 1)  # the same box on screen
        outline = px[HEADER_PX + y0, x0 : x1 + 1]
        assert (outline == LABEL_RGB[lab]).all(axis=1).mean() > 0.9, "the PNG outline has another colour"
        rep = json.loads((tmp_path / f"s{i}" / "report.json").read_text())
        entry = next(x for x in rep["lesions"] if x["id"] == les.id)
        assert entry["label"] == lab.value and entry["probability"] == pytest.approx(les.probability(0.3), abs=1e-4)


def test_export_current_slice_pixels_and_report_free_of_identifiers(analysed, qtbot, tmp_path, dialogs):
    from lungct_viewer.core.export import slice_png_name
    from lungct_viewer.core.render import image_region, window_to_uint8

    w = analysed
    vol = w.session.volume
    vol.patient_name, vol.patient_id = "DOE^JANE", "PID-4711"
    w.set_index(3)
    out = tmp_path / "DOE_JANE export"
    dialogs.folder = str(out)
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        qtbot.keyClick(w.view, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)  # Ctrl+E
    paths = b.args[0]
    assert paths, dialogs.errors
    png = out / slice_png_name(3, vol.sop_instance_uids[3])
    assert sorted(paths) == sorted([png, out / "report.json"])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # nothing staged left
    px = image_region(Image.open(png).convert("RGB"), vol.hu.shape[1:]).astype(int)
    roi = w.view.roi_mask  # red in the PNG where it is red on screen
    assert np.array_equal(roi, w.session.lesion_mask(3))
    r, g, bb = px[..., 0], px[..., 1], px[..., 2]
    assert roi.any() and np.all(r[roi] > g[roi] + 40) and np.all(g[roi] == bb[roi])
    grey = window_to_uint8(vol.hu[3], (1500, -600)).astype(int)
    far = np.ones_like(roi)
    rows, cols = np.nonzero(roi)
    far[max(0, rows.min() - 25) : rows.max() + 25, max(0, cols.min() - 25) : cols.max() + 150] = False
    assert far.sum() > 0.5 * far.size
    for channel in (r, g, bb):
        assert np.array_equal(channel[far], grey[far])
    text = (out / "report.json").read_text()
    rep = json.loads(text)
    assert rep["notice"] == RESEARCH_NOTICE and rep["diagnosis"]["label"] == w.session.diagnosis().label.value
    assert "DOE" not in text and "PID-4711" not in text and str(tmp_path) not in text
    strings = []

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            strings.append(x)

    walk(rep)
    assert not [x for x in strings if os.path.isabs(x) or x.startswith("~")], "an absolute path in report.json"
    # opting in puts the name into the PNG header and the identifiers into the report
    w.actions_by_key["identifiers"].trigger()
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        w.export_slices("current", tmp_path / "with-name")
    rep2 = json.loads((tmp_path / "with-name" / "report.json").read_text())
    assert rep2["series"]["patient_name"] == "DOE^JANE" and rep2["series"]["patient_id"] == "PID-4711"
    a = np.asarray(Image.open(png).convert("RGB"))
    b2 = np.asarray(Image.open(tmp_path / "with-name" / png.name).convert("RGB"))
    assert not np.array_equal(a[:40], b2[:40]) and np.array_equal(a[40:], b2[40:])

    # exporting again asks first; "No" leaves the files alone
    before = png.stat().st_mtime_ns
    dialogs.answer = False
    with qtbot.waitSignal(w.exportFinished, timeout=30_000):
        w.actions_by_key["export_current"].trigger()
    assert len(dialogs.questions) == 1 and png.stat().st_mtime_ns == before
    dialogs.answer = True
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        w.actions_by_key["export_current"].trigger()
    assert b.args[0] and len(dialogs.questions) == 2 and not dialogs.errors


def test_export_findings_all_and_cancel_writes_nothing(analysed, qtbot, tmp_path, dialogs, monkeypatch):
    import lungct_viewer.core.export as ex

    w = analysed
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        w.export_slices("findings", tmp_path / "f")
    names = sorted(p.name for p in b.args[0])
    assert [n[:10] for n in names if n.endswith(".png")] == [f"slice_{k:04d}" for k in range(3, 9)]
    assert "report.json" in names
    gate = threading.Event()
    render = ex.render_png

    def slow(session, i, options):
        if i >= 1:
            gate.wait(30)  # a guard, not a timing: the test sets it right after cancelling
        return render(session, i, options)

    monkeypatch.setattr(ex, "render_png", slow)
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        w.export_slices("all", tmp_path / "all")
        qtbot.waitUntil(lambda: w.export_progress.bar.value() >= 1, timeout=10_000)
        press(qtbot, w, Qt.Key.Key_Escape, w.view)
        gate.set()
    assert b.args[0] is None
    assert not any((tmp_path / "all").glob("*.png")) and not (tmp_path / "all" / "report.json").exists()
    assert not dialogs.errors


# ----------------------------------------------------------------------------- opening and cancelling
def test_open_junk_folder_shows_error_not_crash(window, qtbot, tmp_path, dialogs):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    (junk / "random.dcm").write_bytes(os.urandom(4096))
    with qtbot.waitSignal(window.loadFailed, timeout=30_000):
        window.open_path(str(junk))
    assert dialogs.errors and ("CT" in dialogs.errors[0][1] or "DICOM" in dialogs.errors[0][1])
    window.set_volume(synth_volume())  # still usable
    assert window.index == 4
    with qtbot.waitSignal(window.loadFailed, timeout=30_000):
        window.open_path(str(tmp_path / "does-not-exist"))
    assert len(dialogs.errors) == 2 and window.session.volume.description == "synthetic chest"


def test_open_phantom_folder_recent_and_drop(window, qtbot, phantom_dir, dialogs):
    from lungct_viewer.gui.loading import dropped_folder

    dialogs.folder = str(phantom_dir)
    with qtbot.waitSignal(window.studyLoaded, timeout=60_000):
        window.actions_by_key["open"].trigger()
    assert window.session.volume.num_slices == 12 and not dialogs.errors
    assert window.session.load_s > 0
    assert window.settings.recent_folders()[0] == str(phantom_dir)
    assert window.recent_menu.actions()[0].text() == str(phantom_dir)
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(phantom_dir / "0001.dcm"))])
    assert dropped_folder(mime) == str(phantom_dir)
    ev = QtGui.QDropEvent(
        QtCore.QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.studyLoaded, timeout=60_000):
        window.dropEvent(ev)


def _assert_usable(qtbot, w, volume):
    """The window shows ``volume`` (or the empty view) and answers the reader."""
    if volume is None:
        assert w.session is None and w.view.image_item.image is None
        assert w.viewer.nav.label.text() == "No study" and not w.reading.analyse_button.isEnabled()
        return
    assert w.session is not None and w.session.volume is volume
    assert np.array_equal(w.view.image_item.image, volume.hu[w.index])
    assert w.viewer.nav.slider.isEnabled() and "loading" not in w.viewer.nav.label.text()
    assert w.reading.analyse_button.isEnabled() and w.actions_by_key["analyze"].isEnabled()
    w.view.setFocus()
    before = w.index
    press(qtbot, w, Qt.Key.Key_Down if before == 0 else Qt.Key.Key_Up)
    assert w.index != before
    assert not w.load_progress.isVisible()


@pytest.mark.parametrize("previous", [True, False], ids=["previous-study", "empty"])
def test_cancel_while_loading_returns_to_the_previous_study(window, qtbot, phantom_dir, dialogs, monkeypatch, previous):
    """Esc during "Loading slices": the previous study (or the empty view) is back, usable,
    and no error box appears."""
    import lungct_viewer.core.dicom.assemble as assemble

    decode = assemble.decode_slices

    def until_cancelled(files, scanned, progress, cancel):
        if len(files) == 1:  # the preview slice
            return decode(files, scanned, progress, cancel)
        while not cancel():
            time.sleep(0.01)
        from lungct_viewer.core.errors import LoadCancelled

        raise LoadCancelled("Loading the series was cancelled.")

    monkeypatch.setattr(assemble, "decode_slices", until_cancelled)
    vol = synth_volume() if previous else None
    if previous:
        window.set_volume(vol)
        window.set_index(2)
    with qtbot.waitSignal(window.previewShown, timeout=60_000):
        window.open_path(str(phantom_dir))
    assert window.load_progress.isVisible() and "loading" in window.viewer.nav.label.text()
    with qtbot.waitSignal(window.loadCancelled, timeout=30_000):
        press(qtbot, window, Qt.Key.Key_Escape, window.view)
    assert not dialogs.errors
    _assert_usable(qtbot, window, vol)


def test_cancel_while_scanning_and_in_the_series_chooser(window, qtbot, phantom_dir, tmp_path, dialogs, monkeypatch):
    import lungct_viewer.core.dicom.scan as scan
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    vol = synth_volume()
    window.set_volume(vol)
    gate, started = threading.Event(), threading.Event()
    read = scan.read_header

    def slow(path):
        started.set()
        gate.wait(30)  # a guard: the test opens it as soon as it has cancelled
        return read(path)

    monkeypatch.setattr(scan, "read_header", slow)
    with qtbot.waitSignal(window.loadCancelled, timeout=30_000):
        window.open_path(str(phantom_dir))
        qtbot.waitUntil(started.is_set, timeout=10_000)
        press(qtbot, window, Qt.Key.Key_Escape, window.view)
        gate.set()
    assert not dialogs.errors
    _assert_usable(qtbot, window, vol)
    monkeypatch.setattr(scan, "read_header", read)
    # two series: Cancel in the chooser keeps the study on screen too
    root = tmp_path / "two"
    write_phantom_dicom(phantom_volume(seed=1, n_slices=5, size=128), root / "a")
    write_phantom_dicom(phantom_volume(seed=2, n_slices=7, size=128), root / "b")
    dialogs.series_choice = None
    with qtbot.waitSignal(window.loadCancelled, timeout=30_000):
        window.open_path(str(root))
    assert len(dialogs.series_offered) == 2 and any("7 slices" in s for s in dialogs.series_offered)
    assert all("kernel SYNTHETIC" in s for s in dialogs.series_offered)
    assert not dialogs.errors
    _assert_usable(qtbot, window, vol)
    dialogs.series_choice = next(i for i, s in enumerate(dialogs.series_offered) if "5 slices" in s)
    with qtbot.waitSignal(window.studyLoaded, timeout=30_000):
        window.open_path(str(root))
    assert window.session.volume.num_slices == 5


# ----------------------------------------------------------------------------- analysis
def test_model_loads_in_the_background_when_the_window_opens(make_window, qtbot, random_model_path):
    w = make_window(model_path=random_model_path, preload_model=True)
    assert w.model.is_loading or w.model.is_ready  # nobody pressed Analyse
    qtbot.waitUntil(lambda: w.model.is_ready, timeout=120_000)
    assert w.model.loaded.version == "test-random"


def test_the_study_opened_at_start_comes_before_the_model(make_window, qtbot, random_model_path, phantom_dir, tmp_path):
    """``main.py PATH``: the study's first slice is read before TensorFlow is imported; the
    model then loads by itself, and also when the folder cannot be opened."""
    w = make_window(model_path=random_model_path, auto_analyze=False)
    started_at_preview = []
    w.previewShown.connect(lambda _i: started_at_preview.append(w.model.is_loading or w.model.is_ready))
    with qtbot.waitSignal(w.studyLoaded, timeout=60_000):
        w.open_at_start(str(phantom_dir))
        assert not (w.model.is_loading or w.model.is_ready)  # the study first
    assert started_at_preview in ([], [False]) and (w.model.is_loading or w.model.is_ready)
    qtbot.waitUntil(lambda: w.model.is_ready, timeout=120_000)

    w2 = make_window(model_path=random_model_path, auto_analyze=False)
    with qtbot.waitSignal(w2.loadFailed, timeout=30_000):
        w2.open_at_start(str(tmp_path / "does-not-exist"))
    assert w2.model.is_loading or w2.model.is_ready
    qtbot.waitUntil(lambda: w2.model.is_ready, timeout=120_000)


def test_analysis_streams_slices_on_a_worker_current_first(make_window, qtbot, random_model_path, monkeypatch):
    """The network runs on a worker thread while the GUI thread keeps turning: the worker waits,
    before its first slice, for an event only the GUI thread's event loop sets."""
    import lungct_viewer.core.pipeline as pipeline

    gui_thread = threading.current_thread()
    gui_turned = threading.Event()
    waited: list[tuple[threading.Thread, bool]] = []
    group = pipeline.Analyzer._run_group

    def after_gui_turned(self, planned):
        waited.append((threading.current_thread(), gui_turned.wait(60)))  # 60 s: a guard, not a timing
        return group(self, planned)

    monkeypatch.setattr(pipeline.Analyzer, "_run_group", after_gui_turned)
    w = make_window(model_path=random_model_path)
    w.set_volume(synth_volume(n=10))
    w.set_index(7)
    first: list[int] = []
    w.session.subscribe(lambda what: what == "analysis" and not first and first.extend(w.session.analysis.slices))
    w.start_analysis()
    QtCore.QTimer.singleShot(0, gui_turned.set)
    assert w.analysis.is_running() and not w.reading.analyse_button.isEnabled()
    res = wait_analysis(qtbot, w)
    assert res is w.session.analysis and res.complete and not res.cancelled
    assert waited and all(t is not gui_thread and ok for t, ok in waited), waited
    assert first == [7], "the current slice is analysed first"
    assert res.device in ("CPU", "GPU") and res.inference_s > 0
    assert w.session.candidates_ready and not w.reading.analyse_button.isEnabled()  # nothing left to analyse
    assert not w.analysis_progress.isVisible()
    assert w.reading.diag_label.text() not in ("NOT ANALYSED", "ANALYSING\u2026")


def test_cancel_analysis_keeps_partial_results_and_resumes(make_window, qtbot, random_model_path, monkeypatch):
    import lungct_viewer.core.pipeline as pipeline

    gate = threading.Event()
    group = pipeline.Analyzer._run_group
    done = []

    def third_waits(self, planned):
        if len(done) >= 2:
            gate.wait(30)  # a guard: the test opens it right after cancelling
        done.extend(p.index for p in planned)
        return group(self, planned)

    monkeypatch.setattr(pipeline.Analyzer, "_run_group", third_waits)
    w = make_window(model_path=random_model_path)
    vol = synth_volume(n=12)
    w.set_volume(vol)
    w.start_analysis()
    qtbot.waitUntil(lambda: len(w.session.analysis.slices) >= 2, timeout=120_000)
    with qtbot.waitSignal(w.analysisFinished, timeout=60_000) as b:
        press(qtbot, w, Qt.Key.Key_Escape, w.view)
        gate.set()
    res = b.args[0]
    n = len(res.slices)
    assert res.cancelled and 2 <= n < 12
    assert w.session.candidates_ready and w.reading.diag_label.text().endswith("(partial)")
    assert w.reading.analyse_button.isEnabled()
    _assert_usable(qtbot, w, vol)
    gate.set()
    before = len(done)
    w.start_analysis()  # resumes: only the missing slices run
    res = wait_analysis(qtbot, w)
    assert res.complete and not res.cancelled and len(done) - before == 12 - n
    assert not w.reading.diag_label.text().endswith("(partial)")


def test_close_during_analysis_stops_the_worker(make_window, qtbot, random_model_path):
    w = make_window(model_path=random_model_path)
    w.set_volume(synth_volume(n=20))
    w.start_analysis()
    qtbot.waitUntil(lambda: len(w.session.analysis.slices) >= 1, timeout=120_000)
    w.close()
    assert not w.workers.running()


def test_worker_exception_shows_dialog_and_app_stays_usable(
    make_window, qtbot, random_model_path, dialogs, monkeypatch
):
    import lungct_viewer.core.pipeline as pipeline

    def boom(self, *a, **k):
        raise RuntimeError("simulated failure")
        yield  # a generator, as the real one

    monkeypatch.setattr(pipeline.Analyzer, "iter_analyze", boom)
    w = make_window(model_path=random_model_path)
    vol = synth_volume()
    w.set_volume(vol)
    w.start_analysis()
    assert wait_analysis(qtbot, w) is None
    assert dialogs.errors and "simulated failure" in dialogs.errors[-1][1]
    _assert_usable(qtbot, w, vol)


def test_missing_model_is_reported(make_window, qtbot, tmp_path, dialogs):
    w = make_window(model_path=str(tmp_path / "nope.keras"))
    vol = synth_volume()
    w.set_volume(vol)
    w.start_analysis()
    assert wait_analysis(qtbot, w) is None
    assert "No model file" in dialogs.errors[-1][1] and "still be viewed" in dialogs.errors[-1][1]
    _assert_usable(qtbot, w, vol)


@pytest.mark.slow
def test_phantom_study_read_end_to_end(make_window, qtbot, phantom_model, phantom_study, tmp_path, dialogs):
    """Open, analyse with the phantom-trained CNN, find candidates, export: one reading."""
    model_path, acc = phantom_model
    assert acc > 0.8, f"the phantom model did not learn (held-out accuracy {acc:.2f})"
    folder, ph = phantom_study
    w = make_window(model_path=str(model_path), auto_analyze=True, preload_model=True)
    with qtbot.waitSignal(w.studyLoaded, timeout=60_000):
        w.open_path(str(folder))
    res = wait_analysis(qtbot, w, timeout=300_000)
    assert res is not None and res.complete and not dialogs.errors
    s = w.session
    found = s.findings()
    assert found and w.reading.table.rowCount() == len(found)
    centres = [les.central for les in found]
    for nod in ph.nodules:  # every nodule has a lesion on the spot
        k, r, c = int(round(nod.center[0])), nod.center[1], nod.center[2]
        assert any(
            abs(f.slice_index - k) <= 1
            and f.bbox_px[0] - 3 <= c < f.bbox_px[2] + 3
            and f.bbox_px[1] - 3 <= r < f.bbox_px[3] + 3
            for les in found
            for f in les.findings
        ), nod
    assert centres
    with qtbot.waitSignal(w.exportFinished, timeout=60_000) as b:
        w.export_slices("findings", tmp_path / "out")
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {f["lesion_id"] for f in rep["findings"]} == {les.id for les in found}
    assert rep["diagnosis"]["label"] == s.diagnosis().label.value
    assert "patient_name" not in rep["series"] and str(folder) not in json.dumps(rep)
    assert len([p for p in b.args[0] if p.suffix == ".png"]) == len(s.slices_with_findings())


def test_screenshot_mode_end_to_end(tmp_path, phantom_dir, random_model_path):
    """``main.py PATH --screenshot OUT.png`` in its own process, as a user runs it (its event
    loop ends with the application's, which must not be the test session's)."""
    import subprocess
    import sys

    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run(
        [
            sys.executable,
            "main.py",
            str(phantom_dir),
            "--model",
            random_model_path,
            "--screenshot",
            str(out),
            "--slice",
            "5",
        ],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape[0] > 500 and img.shape[1] > 900
    assert img.std() > 20, "the screenshot looks empty"


# ----------------------------------------------------------------------------- tools, help, settings
def test_ruler_and_circle_measure_in_mm_and_hu(analysed, qtbot):
    from lungct_viewer.core.measure import circle_stats, segment_length_mm

    w = analysed
    vol = w.session.volume
    w.set_index(3)
    w.view.setFocus()
    press(qtbot, w, Qt.Key.Key_L)
    assert w.viewer.tools.armed is not None
    w.view.toolDragged.emit((95.0, 60.0), (95.0, 90.0), False)
    w.view.toolDragged.emit((95.0, 60.0), (120.0, 100.0), True)
    assert w.viewer.tools.armed is None  # one drag, then back to window/level
    (ruler,) = w.viewer.tools.rulers
    want = segment_length_mm((95.0, 60.0), (120.0, 100.0), vol.pixel_spacing_mm)
    assert ruler.text == f"{want:.1f} mm" and ruler.tag.toPlainText() == ruler.text
    press(qtbot, w, Qt.Key.Key_C)
    w.view.toolDragged.emit((95.0, 75.0), (95.0, 81.0), True)  # centre on the nodule, radius 6 px
    (circle,) = w.viewer.tools.circles
    stats = circle_stats(vol.hu[3], (95.0, 75.0), 6.0, vol.pixel_spacing_mm)
    assert circle.text == stats.text() and "mean 30 HU" in circle.text and "SD 0" in circle.text
    w.set_index(6)  # the circle's statistics follow the slice
    assert circle.text == circle_stats(vol.hu[6], (95.0, 75.0), 6.0, vol.pixel_spacing_mm).text() != stats.text()
    press(qtbot, w, Qt.Key.Key_Delete)
    assert not w.viewer.tools.rulers and not w.viewer.tools.circles
    # a real mouse drag with the ruler armed draws instead of changing the window
    press(qtbot, w, Qt.Key.Key_L)
    window_before = w.display.options.window
    vp = w.view.viewport()
    c = vp.rect().center()
    _drag(qtbot, vp, Qt.MouseButton.LeftButton, c, c + QtCore.QPoint(60, 0))
    assert w.display.options.window == window_before and len(w.viewer.tools.rulers) == 1
    assert float(w.viewer.tools.rulers[0].text.split()[0]) > 0


def test_one_table_builds_the_menus_and_the_shortcuts_dialog(window):
    from lungct_viewer.gui.actions import ACTIONS, ActionSpec, Scope, shortcut_rows

    specs = [s for s in ACTIONS if isinstance(s, ActionSpec)]
    assert set(window.actions_by_key) == {s.key for s in specs}
    in_menus = {a.text() for m in window.menuBar().findChildren(QtWidgets.QMenu) for a in m.actions()}
    assert {s.text for s in specs} <= in_menus
    window.actions_by_key["shortcuts"].trigger()
    dlg = window.help.open["shortcuts"]
    table = dlg.table
    shown = [tuple(table.item(r, c).text() for c in range(3)) for r in range(table.rowCount())]
    assert shown[: len(shortcut_rows())] == shortcut_rows()
    assert any(keys == "Esc" for keys, _, _ in shown) and any(keys == "Wheel" for keys, _, _ in shown)
    for s in specs:  # single keys only act in the slice view
        if s.shortcuts and all(
            len(k) == 1 or k in ("Up", "Down", "PgUp", "PgDown", "Home", "End", "Space", "Del") for k in s.shortcuts
        ):
            assert s.scope is Scope.VIEW, s.key
            assert window.actions_by_key[s.key].shortcutContext() == Qt.ShortcutContext.WidgetWithChildrenShortcut
    dlg.close()


def test_about_reads_as_a_document_and_fits_the_screen(window, random_model_path, dialogs, qtbot):
    from lungct_viewer.core.demo import ATTRIBUTION
    from lungct_viewer.gui.about import AboutDialog, about_html

    w = window
    w.actions_by_key["about"].trigger()
    html = dialogs.about_html
    assert RESEARCH_NOTICE in html and ATTRIBUTION in html.replace("&#x27;", "'")
    shipped = w.model.card()  # the shipped model card, and its second reading when it has one
    assert f"Voting threshold {shipped.operating_point['voting_threshold']:.2f}" in html and "AUC" in html
    second = w.model.second_reading()
    assert (f"Second reading, version {second.version}" if second else "None is installed beside the model") in html
    assert "{" not in html and "&#x27;:" not in html and "':" not in html, "a raw Python structure on screen"
    if "pasted_nodules" in shipped.metrics:  # the shipped card's sensitivity on held-back nodules is shown
        assert "Nodules of held-back patients in whole studies" in html
    html2 = about_html(CARD, random_model_path, SECOND)
    assert "Second reading, version test-second" in html2 and "radius_mm" in html2
    dlg = AboutDialog("About", html, w)
    qtbot.addWidget(dlg)
    dlg.show()
    screen = w.screen().availableGeometry().height()
    assert dlg.height() <= 0.8 * screen + 1 and dlg.browser.verticalScrollBar().maximum() > 0
    dlg.close()


def test_model_performance_curve_marks_the_current_threshold(analysed, qtbot):
    from lungct_viewer.gui.performance import PerformanceDialog

    w = analysed
    w.actions_by_key["performance"].trigger()
    dlg = w.help.open["performance"]
    # the shipped card records the test patients' threshold curve
    assert dlg.curve is not None and dlg.curve.n == 87 and dlg.curve.points[0].threshold == 0.0
    w.reading.threshold_slider.setValue(37)
    assert dlg.marker.value() == pytest.approx(0.37) and "Voting threshold 0.37" in dlg.text.text()
    dlg.close()
    points = [{"threshold": t / 10, "sensitivity": 1 - t / 20, "specificity": t / 10} for t in range(11)]
    card = ModelCard(
        version="curve",
        metrics={
            "patient_threshold_curve": {"split": "test", "n": 40, "points": points},
            "patient_level": {"n": 40, "sensitivity": 0.9, "specificity": 0.5},
        },
        operating_point={"voting_threshold": 0.2},
    )
    dlg = PerformanceDialog(card, 0.3)
    qtbot.addWidget(dlg)
    items = [i for i in dlg.plot.getPlotItem().listDataItems() if len(i.xData) > 1]
    assert len(items) == 2 and list(items[0].xData) == [p["threshold"] for p in points]
    assert "Sensitivity 0.85, specificity 0.30 at the curve point 0.30 (test patients, n = 40)" in dlg.text.text()
    assert "Operating point 0.20 (test patients, n = 40): sensitivity 0.90" in dlg.text.text()


def test_settings_persist_between_windows(make_window, qtbot, tmp_path, phantom_dir, dialogs):
    w = make_window()
    w.display.apply_preset("Bone")
    w.display.opacity_slider.setValue(70)
    w.actions_by_key["auto"].setChecked(True)
    w.actions_by_key["auto"].trigger()  # unticked by the reader
    w.resize(760, 750)  # within the offscreen screen (restoring clamps to it)
    with qtbot.waitSignal(w.studyLoaded, timeout=60_000):
        w.open_path(str(phantom_dir))
    w.reading.threshold_slider.setValue(40)
    dialogs.folder = str(tmp_path / "exports")
    w.close()
    w2 = make_window(auto_analyze=None)
    assert w2.display.options.window == (2500.0, 480.0) and w2.display.opacity_slider.value() == 70
    assert w2.settings.recent_folders() == [str(phantom_dir)] and not w2.auto_analyze
    assert not w2.actions_by_key["auto"].isChecked()
    assert (w2.width(), w2.height()) == (760, 750)
    w2.settings.export_dir = str(tmp_path / "exports")
    w3 = make_window()
    assert w3.settings.export_dir == str(tmp_path / "exports")


def test_dicom_export_writes_a_segmentation_of_the_findings(window, qtbot, tmp_path, dialogs, phantom_dir):
    """File > Export > DICOM SEG + SR on a loaded series: one segment per finding, on the
    series' grid; refused (with a reason) while there is no finding."""
    import pydicom

    from lungct_viewer.core.session import CandidateSet, ReadingSession

    with qtbot.waitSignal(window.studyLoaded, timeout=60_000):
        window.open_path(str(phantom_dir))
    vol = window.session.volume
    analysis = synth_analysis(vol, BLOBS)
    cand = disk_candidate(2, 5, (95.0, 75.0), 7.0)
    cand.id = 1
    window.set_session(ReadingSession(vol, CARD, SECOND), window.study)
    window.set_analysis(analysis, CandidateSet([cand], np.array([0.1]), 0.0, slices=frozenset(analysis.slices)))
    dialogs.folder = str(tmp_path / "dicom")
    window.actions_by_key["export_dicom"].trigger()  # suspicion 0.1 < 0.5: no finding
    assert dialogs.errors and "no findings" in dialogs.errors[-1][1]
    assert not (tmp_path / "dicom").exists()
    window.set_analysis(analysis, CandidateSet([cand], np.array([0.9]), 0.0, slices=frozenset(analysis.slices)))
    with qtbot.waitSignal(window.exportFinished, timeout=60_000) as sig:
        window.actions_by_key["export_dicom"].trigger()
    paths = sig.args[0]
    assert sorted(p.name for p in paths) == ["lesions_seg.dcm", "lesions_sr.dcm"]
    seg = pydicom.dcmread(tmp_path / "dicom" / "lesions_seg.dcm")
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 1
    assert seg.NumberOfFrames == 3  # the lesion's three slices
    refs = {
        r.ReferencedSOPInstanceUID
        for f in seg.PerFrameFunctionalGroupsSequence
        for r in f.DerivationImageSequence[0].SourceImageSequence
    }
    assert refs == {vol.sop_instance_uids[z] for z in (2, 3, 4)}


# ----------------------------------------------------------------------------- reference annotations
def _block(shape, r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def _view_pixel(view, row: float, col: float) -> tuple[int, int, int]:
    """The colour the slice view shows at the centre of native pixel ``(row, col)``."""
    img = view.viewport().grab().toImage()
    p = view.mapFromScene(view.vb.mapViewToScene(QtCore.QPointF(col + 0.5, row + 0.5)))
    c = img.pixelColor(p.x(), p.y())
    return c.red(), c.green(), c.blue()


def _grab_count(widget, rgb) -> int:
    """Pixels of exactly ``rgb`` in what ``widget`` (a view's viewport, or a plain widget) shows."""
    target = widget.viewport() if hasattr(widget, "viewport") else widget
    img = target.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    arr = arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3)
    return int(np.all(arr == rgb, axis=2).sum())


def test_reference_outlines_on_screen_in_the_lists_and_in_the_png(analysed, qtbot, tmp_path):
    from lungct_viewer.core.labels import REFERENCE_RGB
    from lungct_viewer.core.references import ReferenceKind, make_reference
    from lungct_viewer.core.render import HEADER_PX
    from lungct_viewer.gui.reading_panel import OVERLAP_MARK

    w = analysed
    s = w.session
    shape = s.volume.hu.shape[1:]
    near = _block(shape, 90, 101, 70, 81)  # inside lesion L1 (slices 2-4, centred at row 95, col 75)
    far = _block(shape, 180, 191, 180, 191)  # beside everything
    refs = [
        make_reference("Nodule 1", ReferenceKind.LIDC_XML, "/x/069.xml", "Reader 1", {3: near, 4: near}, s.volume),
        make_reference("Vessel", ReferenceKind.SEG, "/x/seg.dcm", "", {3: far}, s.volume),
    ]
    w.set_index(3)
    assert not w.view.ref_item.isVisible() and _grab_count(w.view, REFERENCE_RGB) == 0
    assert w.reading.lists.tabText(1) == "References" and not w.reading.references.none_label.isHidden()
    strip = w.viewer.nav.strip
    assert strip.references() == set() and _grab_count(strip, REFERENCE_RGB) == 0
    s.add_references(refs)
    # the strip ticks the slices the references outline, in their colour
    assert strip.references() == {3, 4} and _grab_count(strip, REFERENCE_RGB) > 0
    # drawn: the outline in the reference colour, the inside left as it was
    assert w.view.ref_item.isVisible() and np.array_equal(w.view.reference_mask, s.reference_outline(3))
    assert _view_pixel(w.view, 90, 75) == REFERENCE_RGB == _view_pixel(w.view, 185, 180)
    assert _view_pixel(w.view, 95, 75) != REFERENCE_RGB
    assert _grab_count(w.view, REFERENCE_RGB) > 4 * 40
    press(qtbot, w, Qt.Key.Key_A)
    assert not w.display.refs_check.isChecked() and not w.view.ref_item.isVisible()
    assert _grab_count(w.view, REFERENCE_RGB) == 0
    assert strip.references() == set() and _grab_count(strip, REFERENCE_RGB) == 0
    press(qtbot, w, Qt.Key.Key_A)
    assert _view_pixel(w.view, 90, 75) == REFERENCE_RGB
    # the findings list marks L1, not L2; the references list names the lesions on each
    t = w.reading.table
    marks = {t.item(r, 0).text(): t.item(r, t.columnCount() - 1).text() for r in range(t.rowCount())}
    assert marks == {"1": OVERLAP_MARK, "2": ""}
    assert "Nodule 1 (Reader 1)" in t.item(0, t.columnCount() - 1).toolTip()
    assert w.reading.lists.tabText(1) == "References (2)"
    rt = w.reading.references.table
    rows = [[rt.item(r, c).text() for c in range(rt.columnCount())] for r in range(rt.rowCount())]
    assert rows == [
        # 11 x 11 pixel squares: their mean diameter is the diagonal (pixel centres, plus one pixel)
        ["Nodule 1", "Reader 1", "4\u20135", f"{(10 * np.sqrt(2) + 1) * 0.7:.1f}", "L1"],
        ["Vessel", "\u2013", "4", f"{(10 * np.sqrt(2) + 1) * 0.7:.1f}", "none"],
    ]
    w.set_index(7)
    w.reading.references.activate_row(1)
    assert w.index == 3
    # the PNG draws what the screen shows; without the overlay on screen, it does not
    with qtbot.waitSignal(w.exportFinished, timeout=30_000):
        w.export_slices("current", tmp_path / "with")
    png = next((tmp_path / "with").glob("*.png"))
    px = np.asarray(Image.open(png).convert("RGB"))
    assert tuple(px[HEADER_PX + 90, 75]) == REFERENCE_RGB and tuple(px[HEADER_PX + 95, 75]) != REFERENCE_RGB
    press(qtbot, w, Qt.Key.Key_A)
    with qtbot.waitSignal(w.exportFinished, timeout=30_000):
        w.export_slices("current", tmp_path / "without")
    px2 = np.asarray(Image.open(next((tmp_path / "without").glob("*.png"))).convert("RGB"))
    assert not np.all(px2[HEADER_PX:] == REFERENCE_RGB, axis=2).any()


def _seg_on_phantom(folder: Path, out: Path, mask: np.ndarray) -> Path:
    from lungct_viewer.core.dicom import load_series, scan_folder, select_series
    from lungct_viewer.core.dicom_out import (
        AlgorithmInfo,
        LesionRecord,
        PatientCall,
        SeriesResults,
        write_dicom_results,
    )

    vol = load_series(select_series(scan_folder(folder)))
    les = LesionRecord(
        id=1,
        label="malignant",
        malignant_fraction=1.0,
        suspicion=None,
        long_axis_mm=5.0,
        short_axis_mm=4.0,
        volume_mm3=1.0,
        mask=mask,
    )
    results = SeriesResults(
        source_files=sorted(str(p) for p in folder.glob("*.dcm")),
        call=PatientCall("malignant", 1.0, 0.1),
        algorithm=AlgorithmInfo(model_version="test"),
        lesions=[les],
        source_sop_instance_uids=vol.sop_instance_uids,
    )
    return write_dicom_results(results, out).seg_path


def test_a_folders_references_load_with_it_and_a_chosen_file_from_the_menu(
    window, qtbot, phantom_dir, tmp_path, dialogs
):
    import shutil

    import pydicom

    mask = np.zeros((12, 256, 256), bool)
    mask[5:8, 100:120, 60:90] = True
    seg = _seg_on_phantom(phantom_dir, tmp_path / "seg-out", mask)
    study = tmp_path / "study"
    shutil.copytree(phantom_dir, study)
    shutil.copy(seg, study / "seg.dcm")
    other = pydicom.dcmread(seg)  # a segmentation of a series that is not in the folder
    other.FrameOfReferenceUID = "2.25.5"
    other.ReferencedSeriesSequence[0].SeriesInstanceUID = "2.25.6"
    for item in other.ReferencedSeriesSequence[0].ReferencedInstanceSequence:
        item.ReferencedSOPInstanceUID = "2.25.7"
    for fr in other.PerFrameFunctionalGroupsSequence:
        del fr.DerivationImageSequence
    other.save_as(study / "other.dcm")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in study.iterdir())
    with qtbot.waitSignal(window.studyLoaded, timeout=60_000):
        window.open_path(str(study))
    qtbot.waitUntil(lambda: not window.references.is_running() and bool(window.session.references), timeout=30_000)
    (ref,) = window.session.references
    assert ref.source == "seg.dcm" and ref.slices == (5, 6, 7)
    warnings = window.warnings_button.warnings
    assert any(x.startswith("other.dcm belongs to another series") for x in warnings), warnings
    assert not any("seg.dcm" in x for x in warnings) and not dialogs.errors  # no dialog for the folder's files
    # File > Open reference annotations: the same file again replaces it; a wrong one says why
    for path in (study / "seg.dcm", seg):
        dialogs.file = str(path)
        window.actions_by_key["open_references"].trigger()
        qtbot.waitUntil(lambda: not window.references.is_running(), timeout=30_000)
    refs = window.session.references
    assert [r.source for r in refs] == ["seg.dcm", Path(seg).name] and refs[0] is not ref
    (tmp_path / "notes.xml").write_text("<notes/>")
    dialogs.file = str(tmp_path / "notes.xml")
    window.actions_by_key["open_references"].trigger()
    qtbot.waitUntil(lambda: bool(dialogs.errors), timeout=30_000)
    assert dialogs.errors[-1] == (
        "Cannot show the reference annotations",
        "notes.xml is an XML file but not an LIDC reading file (LidcReadMessage).",
    )
    assert sorted((p.name, p.stat().st_mtime_ns) for p in study.iterdir()) == before  # nothing written there
