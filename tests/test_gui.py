"""The viewer window, driven offscreen with pytest-qt.

Display tests use small in-memory volumes; overlay/diagnosis/export tests show patch
probabilities made up on the 47x47-style grid (test data for the display layer, as the core
tests do); analysis tests run a real, randomly initialised CNN of the project's architecture
on the worker thread over the synthetic phantom.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6 import QtCore
from PySide6.QtCore import Qt

from lungct_viewer import RESEARCH_NOTICE
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.study import CTVolume

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

    def export_folder(self, parent, start=""):
        return self.folder

    def choose_series(self, parent, summaries, default):
        self.series_offered = list(summaries)
        return self.series_choice

    def about(self, parent, title, html_text):
        self.about_html = html_text


def synth_volume(n: int = 8, size: int = 256) -> CTVolume:
    """A chest-like volume: body, two lungs, a soft-tissue nodule on some slices."""
    yy, xx = np.mgrid[:size, :size]
    hu = np.full((n, size, size), -1000, np.int16)
    body = ((yy - size / 2) / (0.43 * size)) ** 2 + ((xx - size / 2) / (0.37 * size)) ** 2 < 1
    hu[:, body] = 40
    for cx in (0.33 * size, 0.67 * size):
        hu[:, ((yy - 0.49 * size) / (0.3 * size)) ** 2 + ((xx - cx) / (0.12 * size)) ** 2 < 1] = -850
    hu[2:5, (yy - 110) ** 2 + (xx - 85) ** 2 < 100] = 30
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


#: A malignant-looking blob on slice 3 (9 patches) and a benign-looking one on slice 6 (16).
BLOBS = [(3, 6, 4, 3, (0.1, 0.15, 0.75)), (6, 10, 12, 4, (0.1, 0.7, 0.2))]


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
        assert not any(t.isRunning() for t in w._threads), "a worker thread outlived its window"


@pytest.fixture()
def window(make_window):
    return make_window()


@pytest.fixture()
def analysed(window):
    vol = synth_volume()
    window.set_volume(vol)
    window.set_analysis(synth_analysis(vol, BLOBS))
    return window


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    out = tmp_path_factory.mktemp("phantom")
    return Path(write_phantom_dicom(phantom_volume(seed=3, n_slices=12, size=256), out))


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory) -> str:
    """The project's CNN with random weights, output layer sharpened (no training, no fake)."""
    from lungct_viewer.core.model import ModelCard, build_model, save_model

    m = build_model(seed=7)
    fc2 = m.get_layer("fc2")
    k, b = fc2.get_weights()
    fc2.set_weights([k * 60.0, b])
    path = tmp_path_factory.mktemp("model") / "test_cnn.keras"
    save_model(m, path, ModelCard(version="test-random", training_data=["none (random weights)"],
                                  licences=["CC BY 3.0 (test)"]))
    return str(path)


def wait_analysis(qtbot, w, timeout=90_000):
    with qtbot.waitSignal(w.analysisFinished, timeout=timeout) as blocker:
        pass
    return blocker.args[0]


# ----------------------------------------------------------------------------- viewing
def test_no_tensorflow_at_import():
    import subprocess
    import sys

    code = (
        "import sys, lungct_viewer.gui.app, lungct_viewer.gui.main_window;"
        "heavy=('tensorflow','keras','lungct_viewer.core.model','lungct_viewer.core.pipeline');"
        "bad=[m for m in heavy if m in sys.modules];"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stdout + r.stderr


def test_scroll_keys_wheel_and_slider(window, qtbot):
    w = window
    w.set_volume(synth_volume(n=30))
    assert w.index == 15
    qtbot.keyClick(w.view, Qt.Key.Key_Down)
    assert w.index == 16
    qtbot.keyClick(w.view, Qt.Key.Key_Up)
    qtbot.keyClick(w.view, Qt.Key.Key_Up)
    assert w.index == 14
    qtbot.keyClick(w.view, Qt.Key.Key_PageDown)
    assert w.index == 24
    qtbot.keyClick(w.view, Qt.Key.Key_End)
    assert w.index == 29
    qtbot.keyClick(w.view, Qt.Key.Key_Home)
    assert w.index == 0
    qtbot.keyClick(w.view, Qt.Key.Key_PageUp)
    assert w.index == 0  # clamped
    w.view.vb.sigWheelSlices.emit(3)
    assert w.index == 3
    w.slider.setValue(20)
    assert w.index == 20
    assert w.slice_label.text().startswith("Slice 21 / 30")
    assert f"{w.volume.slice_positions_mm[20]:.1f} mm" in w.slice_label.text()
    shown = w.view.image_item.image
    assert np.array_equal(shown, w.volume.hu[20])


def test_window_presets_invert_drag_and_reset(window, qtbot):
    w = window
    w.set_volume(synth_volume())
    assert w.window_wl == (1500.0, -600.0)
    qtbot.keyClick(w.view, Qt.Key.Key_2)
    assert w.window_wl == (400.0, 40.0)
    assert tuple(w.view.image_item.levels) == (-160.0, 240.0)
    qtbot.keyClick(w.view, Qt.Key.Key_3)
    assert w.window_wl == (2500.0, 480.0)
    w.preset_combo.setCurrentIndex(0)
    w.preset_combo.activated.emit(0)
    assert w.window_wl == (1500.0, -600.0)
    w.view.windowDragged.emit(10.0, -5.0)  # left-drag: wider window, lower level
    wl = w.window_wl
    assert wl[0] > 1500 and wl[1] < -600
    assert w.preset_combo.currentText() == "Custom"
    qtbot.keyClick(w.view, Qt.Key.Key_I)
    assert w.inverted and w.invert_check.isChecked()
    w.view.vb.scaleBy((0.5, 0.5))
    zoomed = w.view.vb.viewRect().width()
    qtbot.keyClick(w.view, Qt.Key.Key_Space)
    assert w.view.vb.viewRect().width() > zoomed * 1.5


def test_mouse_drags_window_pan_zoom(window, qtbot):
    w = window
    w.set_volume(synth_volume())
    vp = w.view.viewport()
    c = vp.rect().center()
    wl0 = w.window_wl
    _drag(qtbot, vp, Qt.MouseButton.LeftButton, c, c + QtCore.QPoint(40, 0))
    assert w.window_wl[0] > wl0[0]
    r0 = w.view.vb.viewRect()
    _drag(qtbot, vp, Qt.MouseButton.MiddleButton, c, c + QtCore.QPoint(50, 30))
    r1 = w.view.vb.viewRect()
    assert r1.x() < r0.x() and abs(r1.width() - r0.width()) < 1e-6  # panned, same zoom
    _drag(qtbot, vp, Qt.MouseButton.RightButton, c, c + QtCore.QPoint(0, 60))
    assert w.view.vb.viewRect().width() != pytest.approx(r1.width())  # zoomed


def _drag(qtbot, widget, button, a, b):
    from PySide6 import QtGui, QtWidgets

    def send(kind, pos, btn, btns):
        ev = QtGui.QMouseEvent(kind, QtCore.QPointF(pos), QtCore.QPointF(widget.mapToGlobal(pos)),
                               btn, btns, Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(widget, ev)

    send(QtCore.QEvent.Type.MouseButtonPress, a, button, button)
    for k in range(1, 6):
        p = a + (b - a) * (k / 5)
        send(QtCore.QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button)
    send(QtCore.QEvent.Type.MouseButtonRelease, b, button, Qt.MouseButton.NoButton)
    qtbot.wait(10)


def test_cursor_readout_hu_pixel_and_patient_mm(window):
    w = window
    vol = synth_volume()
    w.set_volume(vol)
    text = w.cursor_text(110.4, 85.7)
    assert "HU +30" in text  # the nodule on slice 4 (index 4 is the middle slice)
    assert "row 110, col 85" in text
    x, y, z = vol.pixel_to_patient_mm(w.index, 110, 85)
    assert f"x {x:.1f}, y {y:.1f}, z {z:.1f} mm" in text
    # a real mouse move over the view updates the status bar
    from PySide6 import QtGui, QtWidgets

    vp = w.view.viewport()
    pos = vp.rect().center()
    ev = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(pos), QtCore.QPointF(vp.mapToGlobal(pos)),
                           Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(vp, ev)
    assert w.cursor_label.text().startswith("HU ")


def test_research_notice_always_visible(analysed):
    w = analysed
    assert w.notice_label.isVisible() and w.notice_label.text() == RESEARCH_NOTICE
    assert w.status_notice.isVisible()
    assert RESEARCH_NOTICE in w.windowTitle()


# ----------------------------------------------------------------------------- overlays & voting
def test_overlays_toggle_with_keys_and_checkboxes(analysed, qtbot):
    w = analysed
    w.set_index(3)
    assert w.view.roi_item.isVisible()
    roi = w.view.roi_mask
    assert roi.sum() > 0 and np.array_equal(roi, w.detections[3].roi_mask)
    qtbot.keyClick(w.view, Qt.Key.Key_R)
    assert not w.roi_check.isChecked() and not w.view.roi_item.isVisible()
    qtbot.keyClick(w.view, Qt.Key.Key_R)
    assert w.view.roi_item.isVisible()
    assert not w.view.heat_item.isVisible()
    qtbot.keyClick(w.view, Qt.Key.Key_H)
    assert w.view.heat_item.isVisible()
    heat = w.view.heatmap
    from lungct_viewer.core.detection import class_heatmap

    assert np.array_equal(heat, class_heatmap(w.slice_results[3], "malignant"))
    assert heat.shape == w.volume.hu.shape[1:] and heat.max() > 0.2
    w.heat_combo.setCurrentIndex(2)  # P(benign): lower on the malignant blob
    assert w.view.heatmap.max() < heat.max() / 2
    assert w.legend._caption == "P(benign)"
    w.opacity_slider.setValue(25)
    assert w.view.heat_item.opacity() == pytest.approx(0.25)
    w.heat_combo.setCurrentIndex(0)  # Off
    assert not w.view.heat_item.isVisible()
    # outlines and labels of the finding
    rects = [r for r, t in w.view._marks if r.isVisible()]
    assert len(rects) == len(w.detections[3].findings) == 1
    assert "MALIGNANT" in [t for r, t in w.view._marks if t.isVisible()][0].toPlainText()
    w.set_index(0)
    assert not w.view.roi_item.isVisible() and not any(r.isVisible() for r, _ in w.view._marks)


def test_threshold_slider_changes_diagnosis_live(analysed, qtbot):
    from lungct_viewer.core.voting import diagnose

    w = analysed
    assert len(w.sorted_findings) == 2
    calls = []
    import lungct_viewer.core.pipeline as pipeline

    orig = pipeline.Analyzer.analyze
    pipeline.Analyzer.analyze = lambda *a, **k: calls.append(1)  # the network must not run
    try:
        seen = set()
        for v in range(0, 101, 5):
            w.threshold_slider.setValue(v)
            expect = diagnose(w.all_findings(), v / 100)
            assert w.diagnosis == expect
            assert w.diag_label.text().startswith(expect.display)
            seen.add(expect.label)
        assert seen == {"malignant", "benign"}
        w.threshold_slider.setValue(0)
        assert w.diag_label.text().startswith("MALIGNANT")
        w.threshold_slider.setValue(100)
        assert w.diag_label.text().startswith("BENIGN")
        assert "Findings: 2" in w.diag_detail.text()
        # the findings list and strip follow the threshold too
        for v in (0, 60, 100):
            w.threshold_slider.setValue(v)
            shown = [w.findings_table.item(r, 2).text() for r in range(2)]
            assert shown == [f.label(v / 100) for f in w.sorted_findings]
        assert shown == ["malignant", "benign"]  # at 1.0 only a purely malignant finding stays so
        w.threshold_slider.setValue(0)
        assert [w.findings_table.item(r, 2).text() for r in range(2)] == ["malignant"] * 2
        # sensitivity: a stricter P(ROI) drops both blobs (max P(ROI) is 0.9)
        w.set_sensitivity(0.95)
        assert w.sorted_findings == [] and w.diag_label.text().startswith("NO FINDINGS")
        assert w.strip.marks() == {}
        w.set_sensitivity(0.5)
        assert len(w.sorted_findings) == 2 and set(w.strip.marks()) == {3, 6}
        # minimum votes: the spin box starts at the model's setting; the strictest keeps only
        # pixels covered by 25 ROI patches, and the findings follow detect_slice exactly
        from lungct_viewer.core.detection import detect_slice

        assert w.votes_spin.value() == w.params.min_votes
        areas = sum(f.area_mm2 for f in w.sorted_findings)
        w.set_min_votes(25)
        assert w.params.min_votes == 25
        expect = [
            f for i in sorted(w.slice_results) for f in detect_slice(w.slice_results[i], w.volume, w.params).findings
        ]
        assert w.all_findings() == expect
        assert sum(f.area_mm2 for f in w.all_findings()) < areas
        w.set_min_votes(1)
        assert sum(f.area_mm2 for f in w.all_findings()) > areas
        w.set_min_votes(4)
        assert len(w.sorted_findings) == 2
    finally:
        pipeline.Analyzer.analyze = orig
    assert calls == []


def test_findings_list_click_and_next_previous(analysed, qtbot):
    w = analysed
    t = w.findings_table
    assert t.rowCount() == 2
    assert [t.item(r, 0).text() for r in range(2)] == ["4", "7"]  # 1-based slice numbers
    assert [t.item(r, 4).text() for r in range(2)] == ["1", "2"]  # slices 4 and 7: two lesions
    assert "in 2 lesion(s)" in w.diag_detail.text()
    assert float(t.item(0, 1).text()) > 5
    w.set_index(0)
    rect = t.visualItemRect(t.item(1, 0))
    qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    f = w.sorted_findings[1]
    assert w.index == f.slice_index == 6
    cy, cx = w.view.view_centre()
    assert abs(cy - f.centroid_px[0]) < 1 and abs(cx - f.centroid_px[1]) < 1
    qtbot.keyClick(w.view, Qt.Key.Key_N)
    assert w.index == 3  # wraps to the first finding
    qtbot.keyClick(w.view, Qt.Key.Key_N)
    assert w.index == 6
    qtbot.keyClick(w.view, Qt.Key.Key_P)
    assert w.index == 3
    w.set_index(5)
    qtbot.keyClick(w.view, Qt.Key.Key_P)
    assert w.index == 3


# ----------------------------------------------------------------------------- export
def test_export_current_slice_pixels_report_and_no_silent_overwrite(analysed, qtbot, tmp_path, dialogs):
    from lungct_viewer.core.export import slice_png_name
    from lungct_viewer.core.render import image_region, window_to_uint8

    w = analysed
    w.set_index(3)
    out = tmp_path / "export"
    dialogs.folder = str(out)
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        w.act_export_current.trigger()
    paths = b.args[0]
    assert paths, dialogs.errors
    png = out / slice_png_name(3, w.volume.sop_instance_uids[3])
    assert png in paths and (out / "report.json") in paths
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files
    with Image.open(png) as im:
        px = image_region(im.convert("RGB"), w.volume.hu.shape[1:]).astype(int)
    roi = w.detections[3].roi_mask
    r, g, b_ = px[..., 0], px[..., 1], px[..., 2]
    assert np.all(r[roi] > g[roi] + 40) and np.all(g[roi] == b_[roi])
    grey = window_to_uint8(w.volume.hu[3], (1500, -600)).astype(int)
    far = np.ones_like(roi)
    x0, y0, x1, y1 = w.detections[3].findings[0].bbox_px
    far[max(0, y0 - 40): y1 + 25, max(0, x0 - 25): x1 + 160] = False  # ROI, outline, label
    assert np.array_equal(r[far], grey[far]) and np.array_equal(g[far], grey[far])
    import json

    rep = json.loads((out / "report.json").read_text())
    assert rep["diagnosis"]["label"] == w.diagnosis.label
    assert rep["notice"] == RESEARCH_NOTICE
    assert len(rep["findings"]) == 2

    # exporting again asks first; "No" leaves the file alone
    before = png.stat().st_mtime_ns
    dialogs.answer = False
    w.act_export_current.trigger()
    qtbot.wait(100)
    assert len(dialogs.questions) == 1 and png.stat().st_mtime_ns == before
    dialogs.answer = True
    with qtbot.waitSignal(w.exportFinished, timeout=30_000):
        w.act_export_current.trigger()
    assert len(dialogs.questions) == 2


def test_export_slices_with_findings_and_all_with_cancel(analysed, qtbot, tmp_path, dialogs):
    w = analysed
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        w.export_slices("findings", tmp_path / "f")
    names = sorted(p.name for p in b.args[0])
    assert len(names) == 3 and "report.json" in names
    assert [n[:10] for n in names if n.endswith(".png")] == ["slice_0004", "slice_0007"]
    # cancelling a multi-file export keeps what was written and writes no report
    import lungct_viewer.core.export as ex

    orig = ex.render_slice

    def slow(*a, **k):
        time.sleep(0.05)
        return orig(*a, **k)

    ex.render_slice = slow
    try:
        with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
            w.export_slices("all", tmp_path / "all")
            qtbot.waitUntil(lambda: w.export_progress.bar.value() >= 1, timeout=10_000)
            w.export_progress.cancel_button.click()
        assert b.args[0] is None
    finally:
        ex.render_slice = orig
    written = list((tmp_path / "all").glob("*.png"))
    assert 1 <= len(written) < w.volume.num_slices
    assert not (tmp_path / "all" / "report.json").exists()
    assert not dialogs.errors


def test_patient_name_only_when_opted_in(analysed, qtbot, tmp_path):
    w = analysed
    w.volume.patient_name = "DOE^JANE"
    w.set_index(3)
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        w.export_slices("current", tmp_path / "a")
    a = np.asarray(Image.open(b.args[0][0]).convert("RGB"))
    w.act_patient_name.setChecked(True)
    with qtbot.waitSignal(w.exportFinished, timeout=30_000) as b:
        w.export_slices("current", tmp_path / "b")
    bb = np.asarray(Image.open(b.args[0][0]).convert("RGB"))
    assert not np.array_equal(a, bb)


# ----------------------------------------------------------------------------- opening
def test_open_junk_folder_shows_error_not_crash(window, qtbot, tmp_path, dialogs):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    (junk / "random.dcm").write_bytes(os.urandom(4096))
    (junk / "empty.dcm").write_bytes(b"")
    with qtbot.waitSignal(window.loadFailed, timeout=30_000):
        window.open_path(str(junk))
    assert dialogs.errors, "the user must be told"
    assert "CT" in dialogs.errors[0][1] or "DICOM" in dialogs.errors[0][1]
    window.set_volume(synth_volume())  # still usable
    assert window.index == 4
    with qtbot.waitSignal(window.loadFailed, timeout=30_000):
        window.open_path(str(tmp_path / "does-not-exist"))
    assert len(dialogs.errors) == 2


def test_open_phantom_folder_recent_and_drop(window, qtbot, phantom_dir, dialogs):
    from PySide6 import QtGui

    dialogs.folder = str(phantom_dir)
    with qtbot.waitSignal(window.studyLoaded, timeout=60_000):
        window.act_open.trigger()
    assert window.volume.num_slices == 12 and not dialogs.errors
    assert window.recent_folders()[0] == str(phantom_dir)
    assert window.recent_menu.actions()[0].text() == str(phantom_dir)
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(phantom_dir))])
    assert window._drop_folder(mime) == str(phantom_dir)
    ev = QtGui.QDropEvent(QtCore.QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                          Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.studyLoaded, timeout=60_000):
        window.dropEvent(ev)


def test_several_series_offer_a_choice(window, qtbot, tmp_path, dialogs):
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    root = tmp_path / "two"
    write_phantom_dicom(phantom_volume(seed=1, n_slices=5, size=128), root / "a")
    write_phantom_dicom(phantom_volume(seed=2, n_slices=7, size=128), root / "b")
    dialogs.series_choice = None  # user cancels: nothing loaded
    with qtbot.waitSignal(window.loadFailed, timeout=30_000):
        window.open_path(str(root))
    assert len(dialogs.series_offered) == 2, dialogs.series_offered
    assert any("7 slices" in s for s in dialogs.series_offered)
    assert window.volume is None
    k = next(i for i, s in enumerate(dialogs.series_offered) if "5 slices" in s)
    dialogs.series_choice = k
    with qtbot.waitSignal(window.studyLoaded, timeout=30_000):
        window.open_path(str(root))
    assert window.volume.num_slices == 5


def test_about_shows_model_card_and_notice(window, random_model_path, dialogs):
    window.model_path = random_model_path
    window.show_about()
    html = dialogs.about_html
    assert RESEARCH_NOTICE in html.replace("&mdash;", "\u2014")
    assert "test-random" in html and "CC BY 3.0 (test)" in html and "Training data" in html


# ----------------------------------------------------------------------------- analysis thread
def test_analysis_on_worker_keeps_event_loop_turning(make_window, qtbot, random_model_path, monkeypatch):
    """The CNN runs on a worker thread while the GUI thread keeps handling events.

    The worker waits, before its first batch, for an event that only the GUI thread's event
    loop sets (a zero-delay timer started after ``start_analysis`` returns): if the analysis
    ran on the GUI thread, or kept its event loop from turning, it could not finish.
    """
    import threading

    import lungct_viewer.core.pipeline as pipeline

    gui_thread = threading.current_thread()
    gui_turned = threading.Event()
    waited: list[tuple[threading.Thread, bool]] = []
    analyse_group = pipeline.Analyzer._analyze_group

    def after_gui_turned(self, volume, indices):
        waited.append((threading.current_thread(), gui_turned.wait(60)))  # 60 s: a guard, not a timing
        return analyse_group(self, volume, indices)

    monkeypatch.setattr(pipeline.Analyzer, "_analyze_group", after_gui_turned)
    w = make_window(model_path=random_model_path)
    vol = synth_volume(n=10)
    w.set_volume(vol)
    w.set_index(7)
    first: list[int] = []

    def on_partial(item):
        if item[0] == "slice" and not first:
            first.append(item[1].index)

    w.start_analysis()
    QtCore.QTimer.singleShot(0, gui_turned.set)
    w._analysis_task.partial.connect(on_partial)
    assert w.is_analysing() and w.analysis_progress.isVisible()
    res = wait_analysis(qtbot, w)
    assert res is not None and not res.cancelled and len(res.slices) == 10
    assert waited and all(thread is not gui_thread and ok for thread, ok in waited), waited
    assert first == [7], "the current slice is analysed first"
    assert w.analysis is res and set(w.slice_results) == set(range(10))
    assert not w.analysis_progress.isVisible()
    assert w.diag_label.text() != "NOT ANALYSED"


def test_cancel_and_close_during_analysis(make_window, qtbot, random_model_path, phantom_dir):
    w = make_window(model_path=random_model_path)
    from lungct_viewer.core.phantom import phantom_volume

    w.set_volume(phantom_volume(seed=0, n_slices=40, size=256).volume)
    w.start_analysis()
    qtbot.waitUntil(lambda: len(w.slice_results) >= 2, timeout=90_000)
    w.analysis_progress.cancel_button.click()
    res = wait_analysis(qtbot, w)
    assert res.cancelled and 2 <= len(res.slices) < 40
    assert w.analyze_button.isEnabled()
    # the partial result is shown, marked as partial
    assert w.diagnosis is not None
    assert w.diag_label.text().endswith(" (partial)"), w.diag_label.text()
    # start again, then close the window mid-way: the worker stops cleanly
    w.start_analysis()
    qtbot.waitUntil(lambda: len(w.slice_results) >= 1, timeout=90_000)
    task = w._analysis_task
    w.close()
    assert not task.isRunning(), "closing the window stops the worker before it returns"


def test_worker_exception_shows_dialog_and_app_stays_usable(
    make_window, qtbot, random_model_path, dialogs, monkeypatch
):
    import lungct_viewer.core.pipeline as pipeline

    def boom(self, *a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(pipeline.Analyzer, "analyze", boom)
    w = make_window(model_path=random_model_path)
    w.set_volume(synth_volume())
    w.start_analysis()
    assert wait_analysis(qtbot, w) is None
    assert dialogs.errors and "simulated failure" in dialogs.errors[-1][1]
    assert w.analyze_button.isEnabled() and not w.is_analysing()
    w.set_index(1)
    assert w.index == 1


def test_missing_model_is_reported(make_window, qtbot, tmp_path, dialogs):
    w = make_window(model_path=str(tmp_path / "nope.keras"))
    w.set_volume(synth_volume())
    w.start_analysis()
    assert wait_analysis(qtbot, w) is None
    assert "No model file" in dialogs.errors[-1][1] and "still be viewed" in dialogs.errors[-1][1]


def test_screenshot_mode_end_to_end(qtbot, tmp_path, phantom_dir, random_model_path):
    from lungct_viewer.gui.app import run_gui

    out = tmp_path / "shot.png"
    rc = run_gui(str(phantom_dir), model_path=random_model_path, screenshot=str(out))
    assert rc == 0 and out.is_file()
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape[0] > 500 and img.shape[1] > 900
    assert img.std() > 20, "the screenshot looks empty"
    if os.environ.get("LUNGCT_KEEP_SCREENSHOT"):
        import shutil

        shutil.copy(out, os.environ["LUNGCT_KEEP_SCREENSHOT"])
