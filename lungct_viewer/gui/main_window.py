"""The main window: slice view, display/overlay/diagnosis panel, findings list, export.

The window owns no maths: loading, inference, detection, voting, rendering and export are
calls into :mod:`lungct_viewer.core`. TensorFlow and the model/pipeline modules are only
imported on the analysis worker thread, so the window and the first slice appear before
TensorFlow has finished importing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from lungct_viewer import RESEARCH_NOTICE
from lungct_viewer.core import constants as C
from lungct_viewer.core.errors import LungCTError, ModelLoadError, StudyLoadError
from lungct_viewer.core.study import CTVolume, FolderScan

from .dialogs import Dialogs, model_card_html
from .slice_view import FindingMark, HeatmapLegend, SliceView
from .widgets import FindingsStrip, TaskProgress
from .workers import TaskThread

log = logging.getLogger(__name__)

HEATMAP_KINDS = (("Off", None), ("P(malignant)", "malignant"), ("P(benign)", "benign"), ("P(ROI)", "roi"))
MAX_RECENT = 8
_CACHE_SLICES = 48


class _LRU(OrderedDict):
    def __init__(self, maxlen: int) -> None:
        super().__init__()
        self.maxlen = maxlen

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.maxlen:
            self.popitem(last=False)

    def get_hit(self, key):
        v = self.get(key)
        if v is not None:
            self.move_to_end(key)
        return v


class MainWindow(QtWidgets.QMainWindow):
    """The viewer window. ``dialogs`` and ``settings`` are injectable for tests."""

    studyLoaded = Signal(object)  # CTVolume
    loadFailed = Signal(str)
    analysisFinished = Signal(object)  # StudyAnalysis, or None when it failed / was unavailable
    exportFinished = Signal(object)  # list of written paths, or None when cancelled/failed
    indexChanged = Signal(int)
    previewShown = Signal(int)  # a slice is on screen while the series loads

    def __init__(
        self,
        *,
        model_path: str | None = None,
        settings: QtCore.QSettings | None = None,
        dialogs: Dialogs | None = None,
        auto_analyze: bool | None = None,
    ) -> None:
        super().__init__()
        self.dialogs = dialogs or Dialogs()
        self.settings = settings or QtCore.QSettings("LungCT", "LungCT Viewer")
        self.model_path = model_path
        self._auto_analyze_override = auto_analyze

        self.volume: CTVolume | None = None
        self.scan: FolderScan | None = None
        self.study_path: str | None = None
        self.index = 0
        self.window_wl = C.WINDOW_PRESETS["Lung"]
        self.inverted = False
        self.threshold = float(C.DEFAULT_VOTING_THRESHOLD)
        self.params = self._default_params()
        self.loaded_model: Any = None
        self._analyzer: Any = None
        self.slice_results: dict[int, Any] = {}
        self.analysis: Any = None
        self.detections: dict[int, Any] = {}
        self.diagnosis: Any = None
        self.sorted_findings: list[Any] = []
        self.lesion_of: dict[int, int] = {}  # id(finding) -> lesion number
        self._finding_cursor: int | None = None
        self._heat_cache = _LRU(_CACHE_SLICES * 2)
        self._generation = 0
        self._threads: set[TaskThread] = set()
        self._analysis_task: TaskThread | None = None
        self._export_task: TaskThread | None = None
        self._load_task: TaskThread | None = None
        self._load_s = 0.0
        self._load_t0 = 0.0
        self._closing = False
        self.last_error: str | None = None
        self.last_export: list[Path] | None = None
        self._skipped_text = ""

        self.setWindowTitle(f"LungCT Viewer \u2014 {RESEARCH_NOTICE}")
        self.setAcceptDrops(True)
        self._build_ui()
        self._build_actions()
        self._update_enabled()
        self._sens_timer = QtCore.QTimer(self, singleShot=True, interval=60)
        self._sens_timer.timeout.connect(self._recompute_detections)
        # when the event loop is idle, compute the heatmaps of the next slices in the
        # scrolling direction, so that scrolling with the heatmap on stays smooth
        self._prefetch_timer = QtCore.QTimer(self, singleShot=True, interval=0)
        self._prefetch_timer.timeout.connect(self._prefetch)
        self._prefetch_step = 1
        self._last_index = 0
        self.resize(1360, 860)
        QtCore.QTimer.singleShot(0, self._warm_up)

    def _warm_up(self) -> None:
        """Import the DICOM reader off the GUI thread so opening a folder starts at once."""

        def warm(task: TaskThread):
            from lungct_viewer.core import dicom  # noqa: F401

        self._start_task("warm-up", warm)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _default_params():
        from lungct_viewer.core.detection import DetectionParams

        return DetectionParams()

    def _build_ui(self) -> None:
        self.view = SliceView()
        self.view.windowDragged.connect(self._on_window_drag)
        self.view.wheelSlices.connect(lambda s: self.set_index(self.index + s))
        self.view.cursorMoved.connect(self._on_cursor)

        self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.set_index)
        self.slice_label = QtWidgets.QLabel("No study")
        self.slice_label.setMinimumWidth(250)
        self.slice_label.setObjectName("sliceLabel")
        self.strip = FindingsStrip()
        self.strip.sliceClicked.connect(self.set_index)

        nav = QtWidgets.QGridLayout()
        nav.setContentsMargins(6, 2, 6, 4)
        nav.setVerticalSpacing(1)
        nav.addWidget(self.slider, 0, 0)
        nav.addWidget(self.slice_label, 0, 1, 2, 1)
        nav.addWidget(self.strip, 1, 0)

        left = QtWidgets.QWidget()
        lv = QtWidgets.QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.setSpacing(0)
        lv.addWidget(self.view, 1)
        lv.addLayout(nav)

        panel = QtWidgets.QWidget()
        panel.setObjectName("sidePanel")
        pv = QtWidgets.QVBoxLayout(panel)
        pv.setContentsMargins(8, 8, 8, 8)

        self.notice_label = QtWidgets.QLabel(RESEARCH_NOTICE)
        self.notice_label.setObjectName("researchNotice")
        self.notice_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.notice_label.setWordWrap(True)
        pv.addWidget(self.notice_label)

        # Display
        disp = QtWidgets.QGroupBox("Display")
        dl = QtWidgets.QGridLayout(disp)
        self.preset_combo = QtWidgets.QComboBox()
        for name, (w, lvl) in C.WINDOW_PRESETS.items():
            self.preset_combo.addItem(f"{name}  (W{w:g} / L{lvl:g})", name)
        self.preset_combo.addItem("Custom", None)
        self.preset_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.preset_combo.activated.connect(self._on_preset_combo)
        self.wl_label = QtWidgets.QLabel()
        self.invert_check = QtWidgets.QCheckBox("Invert (I)")
        self.invert_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.invert_check.toggled.connect(self.set_inverted)
        reset_btn = QtWidgets.QPushButton("Reset view (Space)")
        reset_btn.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        reset_btn.clicked.connect(self.reset_view)
        dl.addWidget(QtWidgets.QLabel("Window"), 0, 0)
        dl.addWidget(self.preset_combo, 0, 1, 1, 2)
        dl.addWidget(self.wl_label, 1, 0, 1, 3)
        dl.addWidget(self.invert_check, 2, 0, 1, 2)
        dl.addWidget(reset_btn, 2, 2)
        pv.addWidget(disp)

        # Overlays
        ov = QtWidgets.QGroupBox("Overlays")
        ol = QtWidgets.QGridLayout(ov)
        self.roi_check = QtWidgets.QCheckBox("Red ROI overlay (R)")
        self.roi_check.setChecked(True)
        self.roi_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.roi_check.toggled.connect(lambda _=None: self._refresh_overlays())
        self.outline_check = QtWidgets.QCheckBox("Finding outlines and labels")
        self.outline_check.setChecked(True)
        self.outline_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.outline_check.toggled.connect(lambda _=None: self._refresh_overlays())
        self.heat_combo = QtWidgets.QComboBox()
        for text, kind in HEATMAP_KINDS:
            self.heat_combo.addItem(text, kind)
        self.heat_combo.setCurrentIndex(1)
        self.heat_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.heat_combo.currentIndexChanged.connect(self._on_heat_kind)
        self.heat_check = QtWidgets.QCheckBox("Heatmap (H)")
        self.heat_check.setChecked(False)
        self.heat_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.heat_check.toggled.connect(lambda _=None: self._refresh_overlays())
        self.opacity_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity_slider.valueChanged.connect(lambda v: self.view.set_heat_opacity(v / 100.0))
        self.legend = HeatmapLegend()
        ol.addWidget(self.roi_check, 0, 0, 1, 3)
        ol.addWidget(self.outline_check, 1, 0, 1, 3)
        ol.addWidget(self.heat_check, 2, 0)
        ol.addWidget(self.heat_combo, 2, 1, 1, 2)
        ol.addWidget(QtWidgets.QLabel("Opacity"), 3, 0)
        ol.addWidget(self.opacity_slider, 3, 1, 1, 2)
        ol.addWidget(self.legend, 4, 0, 1, 3)
        pv.addWidget(ov)

        # Diagnosis
        dg = QtWidgets.QGroupBox("Patient-level result (majority vote)")
        gl = QtWidgets.QGridLayout(dg)
        self.diag_label = QtWidgets.QLabel("NOT ANALYSED")
        self.diag_label.setObjectName("diagnosisLabel")
        self.diag_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.diag_detail = QtWidgets.QLabel("")
        self.diag_detail.setWordWrap(True)
        self.threshold_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(int(round(self.threshold * 100)))
        self.threshold_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.threshold_slider.valueChanged.connect(lambda v: self.set_threshold(v / 100.0))
        self.threshold_value = QtWidgets.QLabel()
        self.sens_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.sens_slider.setRange(5, 95)
        self.sens_slider.setInvertedAppearance(True)  # right = more sensitive = lower P(ROI)
        self.sens_slider.setValue(int(round(self.params.min_roi_probability * 100)))
        self.sens_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.sens_slider.setToolTip(
            "Detection sensitivity: minimum P(ROI) of a patch to count as a tumour vote. "
            "Right = more sensitive (more findings, more false positives)."
        )
        self.sens_slider.valueChanged.connect(self._on_sensitivity)
        self.sens_value = QtWidgets.QLabel()
        self.votes_spin = QtWidgets.QSpinBox()
        self.votes_spin.setRange(1, (C.PATCH_SIZE_PX // C.PATCH_STRIDE_PX) ** 2)
        self.votes_spin.setValue(int(self.params.min_votes))
        self.votes_spin.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the slice view
        self.votes_spin.setToolTip(
            "Minimum votes: a pixel is ROI when at least this many ROI patches cover it (of 25). "
            "Higher = fewer, more certain findings."
        )
        self.votes_spin.valueChanged.connect(self._on_min_votes)
        self.analyze_button = QtWidgets.QPushButton("Analyse study")
        self.analyze_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.analyze_button.clicked.connect(self.start_analysis)
        gl.addWidget(self.diag_label, 0, 0, 1, 3)
        gl.addWidget(self.diag_detail, 1, 0, 1, 3)
        gl.addWidget(QtWidgets.QLabel("Voting threshold"), 2, 0)
        gl.addWidget(self.threshold_slider, 2, 1)
        gl.addWidget(self.threshold_value, 2, 2)
        gl.addWidget(QtWidgets.QLabel("Sensitivity"), 3, 0)
        gl.addWidget(self.sens_slider, 3, 1)
        gl.addWidget(self.sens_value, 3, 2)
        gl.addWidget(QtWidgets.QLabel("Minimum votes"), 4, 0)
        gl.addWidget(self.votes_spin, 4, 1)
        gl.addWidget(self.analyze_button, 5, 0, 1, 3)
        pv.addWidget(dg)

        # Findings
        fg = QtWidgets.QGroupBox("Findings (N / P: next / previous)")
        fl = QtWidgets.QVBoxLayout(fg)
        self.findings_table = QtWidgets.QTableWidget(0, 5)
        self.findings_table.setHorizontalHeaderLabels(["Slice", "Size (mm)", "Class", "P", "Lesion"])
        self.findings_table.horizontalHeaderItem(4).setToolTip(
            "Findings on adjacent slices with overlapping boxes share a lesion number")
        self.findings_table.verticalHeader().setVisible(False)
        self.findings_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.findings_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.findings_table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.findings_table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.findings_table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.findings_table.cellClicked.connect(lambda r, _c: self.go_to_finding(r))
        fl.addWidget(self.findings_table)
        pv.addWidget(fg, 1)

        panel.setMinimumWidth(330)
        panel.setMaximumWidth(420)
        splitter = QtWidgets.QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(panel)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)

        sb = self.statusBar()
        self.cursor_label = QtWidgets.QLabel("")
        self.cursor_label.setObjectName("cursorLabel")
        sb.addWidget(self.cursor_label, 1)
        self.skipped_button = QtWidgets.QToolButton()
        self.skipped_button.setVisible(False)
        self.skipped_button.clicked.connect(self._show_skipped)
        sb.addPermanentWidget(self.skipped_button)
        self.load_progress = TaskProgress("Loading")
        self.load_progress.cancelRequested.connect(self._cancel_load)
        sb.addPermanentWidget(self.load_progress)
        self.analysis_progress = TaskProgress("Analysis")
        self.analysis_progress.cancelRequested.connect(self.cancel_analysis)
        sb.addPermanentWidget(self.analysis_progress)
        self.export_progress = TaskProgress("Export")
        self.export_progress.cancelRequested.connect(self.cancel_export)
        sb.addPermanentWidget(self.export_progress)
        self.status_notice = QtWidgets.QLabel(RESEARCH_NOTICE)
        self.status_notice.setObjectName("statusNotice")
        sb.addPermanentWidget(self.status_notice)

        self._apply_window_label()
        self._update_threshold_labels()

    def _action(self, text: str, slot, shortcut=None, menu=None, checkable=False, tip=""):
        act = QtGui.QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, (list, tuple)):
                act.setShortcuts([QtGui.QKeySequence(s) for s in shortcut])
            else:
                act.setShortcut(QtGui.QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.setCheckable(checkable)
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        self.addAction(act)
        if menu is not None:
            menu.addAction(act)
        return act

    def _build_actions(self) -> None:
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        self.act_open = self._action("&Open folder\u2026", self.open_folder_dialog, QtGui.QKeySequence.StandardKey.Open, fm)
        self.recent_menu = fm.addMenu("Open &recent")
        self._action("Open &demo study", lambda: self.open_path(None), None, fm)
        fm.addSeparator()
        em = fm.addMenu("&Export annotated PNGs")
        self.act_export_current = self._action("&Current slice\u2026", lambda: self.export_slices("current"), "Ctrl+E", em)
        self.act_export_findings = self._action("Slices with &findings\u2026", lambda: self.export_slices("findings"), None, em)
        self.act_export_all = self._action("&All slices\u2026", lambda: self.export_slices("all"), None, em)
        em.addSeparator()
        self.act_patient_name = self._action(
            "Include patient &name in exports", lambda: None, None, em, checkable=True,
            tip="Off by default: exports carry no patient name unless you ask for it",
        )
        fm.addSeparator()
        self._action("&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit, fm)

        vm = mb.addMenu("&View")
        for k, name in enumerate(C.WINDOW_PRESETS, start=1):
            self._action(f"{name} window", lambda _=False, n=name: self.apply_preset(n), str(k), vm)
        self._action("&Invert", lambda: self.invert_check.toggle(), "I", vm)
        self._action("&Reset view", self.reset_view, "Space", vm)
        vm.addSeparator()
        self._action("Toggle &ROI overlay", lambda: self.roi_check.toggle(), "R", vm)
        self._action("Toggle &heatmap", lambda: self.heat_check.toggle(), "H", vm)
        vm.addSeparator()
        self._action("&Next finding", lambda: self.next_finding(+1), "N", vm)
        self._action("&Previous finding", lambda: self.next_finding(-1), "P", vm)
        vm.addSeparator()
        self._action("Previous slice", lambda: self.set_index(self.index - 1), "Up", vm)
        self._action("Next slice", lambda: self.set_index(self.index + 1), "Down", vm)
        self._action("Back 10 slices", lambda: self.set_index(self.index - 10), "PgUp", vm)
        self._action("Forward 10 slices", lambda: self.set_index(self.index + 10), "PgDown", vm)
        self._action("First slice", lambda: self.set_index(0), "Home", vm)
        self._action("Last slice", lambda: self.set_index(self._n() - 1), "End", vm)

        am = mb.addMenu("&Analysis")
        self.act_analyze = self._action("&Analyse study", self.start_analysis, "F5", am)
        self.act_cancel = self._action("&Cancel analysis", self.cancel_analysis, None, am)
        am.addSeparator()
        self.act_auto = self._action(
            "Analyse &automatically after loading", self._on_auto_toggled, None, am, checkable=True
        )
        self.act_auto.setChecked(self.auto_analyze)

        hm = mb.addMenu("&Help")
        self._action("&About LungCT Viewer and the model\u2026", self.show_about, None, hm)
        self._rebuild_recent_menu()

    # ------------------------------------------------------------------ settings
    @property
    def auto_analyze(self) -> bool:
        if self._auto_analyze_override is not None:
            return self._auto_analyze_override
        v = self.settings.value("analysis/auto", True)
        return v in (True, "true", "1", 1)

    def _on_auto_toggled(self, checked: bool) -> None:
        self._auto_analyze_override = None
        self.settings.setValue("analysis/auto", bool(checked))

    def recent_folders(self) -> list[str]:
        v = self.settings.value("recent/folders", [])
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in (v or [])]

    def _remember(self, path: str) -> None:
        rec = [p for p in self.recent_folders() if p != path]
        rec.insert(0, path)
        self.settings.setValue("recent/folders", rec[:MAX_RECENT])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        rec = self.recent_folders()
        for p in rec:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _=False, p=p: self.open_path(p))
        self.recent_menu.setEnabled(bool(rec))

    # ------------------------------------------------------------------ opening
    def open_folder_dialog(self) -> None:
        start = self.recent_folders()[0] if self.recent_folders() else ""
        path = self.dialogs.open_folder(self, start)
        if path:
            self.open_path(path)

    def open_path(self, path: str | os.PathLike[str] | None, series_uid: str | None = None) -> None:
        """Open a study folder (or the demo study when ``path`` is None) without blocking."""
        self._cancel_tasks()
        self._generation += 1
        gen = self._generation
        demo = path is None
        self._load_t0 = time.perf_counter()
        self.load_progress.busy("Preparing the demo study\u2026" if demo else "Reading the folder\u2026")

        def scan(task: TaskThread):
            from lungct_viewer.core import dicom

            p = path
            if p is None:
                from lungct_viewer.core.phantom import ensure_demo_study

                p = ensure_demo_study()
            return str(p), dicom.scan_folder(p)

        t = self._start_task("scan", scan)
        t.succeeded.connect(lambda res: self._on_scanned(gen, res, series_uid, demo))
        t.failed.connect(lambda exc, tb: self._on_load_failed(gen, exc, tb))
        self._load_task = t

    def _on_scanned(self, gen: int, res, series_uid: str | None, demo: bool) -> None:
        if gen != self._generation:
            return
        path, scan = res
        self.scan = scan
        self.study_path = path
        self._report_skipped(scan)
        if not scan.series:
            self.load_progress.finish()
            msg = f"No CT images were found in {path}."
            if scan.skipped:
                msg += f" {len(scan.skipped)} file(s) were skipped (see the list in the status bar)."
            self._error("Cannot open the folder", msg)
            self.loadFailed.emit(msg)
            return
        info = None
        if series_uid:
            info = next((s for s in scan.series if s.uid == series_uid), None)
            if info is None:
                self.load_progress.finish()
                msg = f"The folder has no series with UID {series_uid}."
                self._error("Cannot open the series", msg)
                self.loadFailed.emit(msg)
                return
        elif len(scan.series) > 1:
            series = list(scan.series)
            default = series.index(scan.default_series())
            k = self.dialogs.choose_series(self, [s.summary() for s in series], default)
            if k is None:
                self.load_progress.finish()
                self.loadFailed.emit("cancelled")
                return
            info = series[k]
        else:
            info = scan.series[0]
        if demo:
            self.statusBar().showMessage(
                "Demo study: a synthetic phantom, not a patient. The model was trained on real CT, "
                "so its findings here only show how the viewer works.", 20000)
        else:
            self._remember(path)
        self._load_series(gen, info)

    def _load_series(self, gen: int, info) -> None:
        self.load_progress.start(info.num_slices, "Loading slices")

        def load(task: TaskThread):
            from lungct_viewer.core import dicom

            if info.num_slices > 1 and len(info.files) == info.num_slices:
                # the files are ordered head to feet: decode the middle one first, so a
                # slice is on screen while the rest of the series loads
                mid = info.num_slices // 2
                try:
                    one = dataclasses.replace(info, files=(info.files[mid],), num_slices=1)
                    task.partial.emit((mid, dicom.load_series(one).hu[0]))
                except Exception:  # noqa: BLE001 - the preview is optional
                    log.debug("preview slice failed", exc_info=True)
            return dicom.load_series(
                info,
                progress=lambda done, total: task.progressed.emit(int(done), int(total)),
                cancel=task.is_cancelled,
            )

        t = self._start_task("load", load)
        t.progressed.connect(self.load_progress.update_progress)
        t.partial.connect(lambda item: self._on_preview(gen, info, *item))
        t.succeeded.connect(lambda vol: self._on_loaded(gen, vol))
        t.failed.connect(lambda exc, tb: self._on_load_failed(gen, exc, tb))
        self._load_task = t

    def _on_preview(self, gen: int, info, index: int, hu: np.ndarray) -> None:
        """Show one decoded slice while the series is still loading (navigation waits)."""
        if gen != self._generation:
            return
        self.volume = None
        self._update_enabled()
        self.view.clear()
        self.view.set_slice(hu)
        self.slice_label.setText(f"Slice {index + 1} / {info.num_slices}   \u00b7   loading\u2026")
        self.previewShown.emit(index)

    def _on_loaded(self, gen: int, volume: CTVolume) -> None:
        if gen != self._generation:
            return
        self.load_progress.finish()
        self._load_s = time.perf_counter() - self._load_t0
        self.set_volume(volume)
        if volume.warnings:
            self.statusBar().showMessage(" ".join(volume.warnings), 15000)
        if self.auto_analyze:
            self.start_analysis()

    def _on_load_failed(self, gen: int, exc: BaseException, tb: str) -> None:
        if gen != self._generation:
            return
        self.load_progress.finish()
        if isinstance(exc, LungCTError):
            msg = str(exc)
        else:
            log.error("loading failed:\n%s", tb)
            msg = f"The study could not be opened ({type(exc).__name__}: {exc})."
        if type(exc).__name__ == "AnalysisCancelled":
            self.statusBar().showMessage("Loading cancelled.", 5000)
            self.loadFailed.emit("cancelled")
            return
        self._error("Cannot open the study", msg, tb if not isinstance(exc, LungCTError) else "")
        self.loadFailed.emit(msg)

    def _cancel_load(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()

    def _report_skipped(self, scan: FolderScan) -> None:
        """Skipped files are reported without blocking: a status-bar button lists them."""
        n = len(scan.skipped)
        if not n:
            self.skipped_button.setVisible(False)
            self._skipped_text = ""
            return
        lines = [f"{Path(s.path).name}: {s.reason}" for s in scan.skipped[:500]]
        if n > 500:
            lines.append(f"\u2026 and {n - 500} more")
        self._skipped_text = "\n".join(lines)
        self.skipped_button.setText(f"\u26a0 {n} file(s) skipped")
        self.skipped_button.setToolTip(self._skipped_text[:2000])
        self.skipped_button.setVisible(True)
        self.statusBar().showMessage(f"{n} file(s) in the folder were skipped; click the warning for details.", 10000)

    def _show_skipped(self) -> None:
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Information, "Skipped files",
                                    "These files were not used:", parent=self)
        box.setDetailedText(self._skipped_text)
        box.setModal(False)
        box.show()  # non-blocking

    # drag and drop --------------------------------------------------------------------
    @staticmethod
    def _drop_folder(mime: QtCore.QMimeData) -> str | None:
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                p = Path(url.toLocalFile())
                if p.is_dir():
                    return str(p)
                if p.is_file():
                    return str(p.parent)
        return None

    def dragEnterEvent(self, ev: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if self._drop_folder(ev.mimeData()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev: QtGui.QDropEvent) -> None:  # noqa: N802
        folder = self._drop_folder(ev.mimeData())
        if folder:
            ev.acceptProposedAction()
            self.open_path(folder)

    # ------------------------------------------------------------------ volume & slices
    def _n(self) -> int:
        return 0 if self.volume is None else self.volume.num_slices

    def set_volume(self, volume: CTVolume) -> None:
        """Show a loaded volume (also used directly by tests and benchmarks)."""
        self.volume = volume
        self.slice_results = {}
        self.analysis = None
        self.detections = {}
        self.diagnosis = None
        self.sorted_findings = []
        self.lesion_of = {}
        self._finding_cursor = None
        self._heat_cache.clear()
        self.strip.set_count(volume.num_slices)
        self.slider.blockSignals(True)
        self.slider.setRange(0, volume.num_slices - 1)
        self.slider.blockSignals(False)
        self.index = -1
        desc = volume.description or "CT series"
        self.setWindowTitle(f"LungCT Viewer \u2014 {desc} ({volume.num_slices} slices) \u2014 {RESEARCH_NOTICE}")
        self.view.clear()
        self.set_index(volume.num_slices // 2)
        self.view.reset_view()
        self._update_findings_table()
        self._update_diagnosis()
        self._update_enabled()
        self.studyLoaded.emit(volume)

    def set_index(self, index: int) -> None:
        if self.volume is None:
            return
        index = int(max(0, min(self._n() - 1, index)))
        if index == self.index:
            return
        self.index = index
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.strip.set_current(index)
        self.view.set_slice(self.volume.hu[index])
        self._refresh_overlays()
        self._prefetch_step = 1 if index >= self._last_index else -1
        self._last_index = index
        self._prefetch_timer.start()
        z = float(self.volume.slice_positions_mm[index])
        self.slice_label.setText(f"Slice {index + 1} / {self._n()}   \u00b7   z = {z:.1f} mm")
        self.indexChanged.emit(index)

    # window / level ---------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        self.set_window(*C.WINDOW_PRESETS[name])

    def set_window(self, width: float, level: float) -> None:
        self.window_wl = (max(1.0, float(width)), float(level))
        self.view.set_window(*self.window_wl)
        self._apply_window_label()

    def _apply_window_label(self) -> None:
        w, lvl = self.window_wl
        self.wl_label.setText(f"W {w:.0f}   L {lvl:.0f}   (left-drag to adjust)")
        k = next((i for i, (_, v) in enumerate(C.WINDOW_PRESETS.items()) if v == (w, lvl)), None)
        self.preset_combo.setCurrentIndex(self.preset_combo.count() - 1 if k is None else k)

    def _on_preset_combo(self, k: int) -> None:
        name = self.preset_combo.itemData(k)
        if name:
            self.apply_preset(name)

    def _on_window_drag(self, dx: float, dy: float) -> None:
        w, lvl = self.window_wl
        step = max(1.0, w / 256.0)
        self.set_window(w + dx * step * 2.0, lvl + dy * step)

    def set_inverted(self, inverted: bool) -> None:
        self.inverted = bool(inverted)
        if self.invert_check.isChecked() != self.inverted:
            self.invert_check.setChecked(self.inverted)
        self.view.set_inverted(self.inverted)

    def reset_view(self) -> None:
        self.view.reset_view()

    # cursor readout ---------------------------------------------------------------------
    def _on_cursor(self, pos) -> None:
        if pos is None or self.volume is None:
            self.cursor_label.setText("")
            return
        self.cursor_label.setText(self.cursor_text(*pos))

    def cursor_text(self, row: float, col: float) -> str:
        """Status-bar text for a (fractional) pixel of the current slice."""
        vol = self.volume
        r, c = int(row), int(col)
        hu = int(vol.hu[self.index, r, c])
        x, y, z = vol.pixel_to_patient_mm(self.index, r, c)
        return (
            f"HU {hu:+d}    pixel (row {r}, col {c})    "
            f"patient x {x:.1f}, y {y:.1f}, z {z:.1f} mm"
        )

    # ------------------------------------------------------------------ overlays
    def _heat_kind(self) -> str | None:
        return self.heat_combo.currentData() if self.heat_check.isChecked() else None

    def _on_heat_kind(self, _k: int) -> None:
        kind = self.heat_combo.currentData()
        self.legend.set_caption(self.heat_combo.currentText() if kind else "heatmap off")
        if kind and not self.heat_check.isChecked():
            self.heat_check.setChecked(True)  # refreshes
        elif not kind and self.heat_check.isChecked():
            self.heat_check.setChecked(False)
        else:
            self._refresh_overlays()

    def heatmap_for(self, index: int, kind: str):
        sa = self.slice_results.get(index)
        if sa is None:
            return None
        key = (index, kind)
        heat = self._heat_cache.get_hit(key)
        if heat is None:
            from lungct_viewer.core.detection import class_heatmap

            heat = class_heatmap(sa, kind)
            self._heat_cache.put(key, heat)
        return heat

    def _prefetch(self) -> None:
        kind = self._heat_kind()
        if self.volume is None or not kind:
            return
        for k in (1, 2):
            i = self.index + k * self._prefetch_step
            if 0 <= i < self._n() and (i, kind) not in self._heat_cache:
                self.heatmap_for(i, kind)
                self._prefetch_timer.start()  # one slice per idle turn
                return

    def _refresh_overlays(self) -> None:
        if self.volume is None:
            return
        i = self.index
        det = self.detections.get(i)
        self.view.set_roi(det.roi_mask if (det is not None and self.roi_check.isChecked()) else None)
        kind = self._heat_kind()
        heat = self.heatmap_for(i, kind) if kind else None
        self.view.set_heatmap(heat, self.opacity_slider.value() / 100.0)
        marks: list[FindingMark] = []
        if det is not None and self.outline_check.isChecked():
            for f in det.findings:
                label = f.label(self.threshold)
                p = f.p_malignant if label == "malignant" else f.p_benign
                marks.append(
                    FindingMark(
                        tuple(int(v) for v in f.bbox_px),
                        label,
                        f"{label.upper()} {p:.2f} \u00b7 {f.diameter_mm:.0f} mm",
                    )
                )
        self.view.set_findings(marks)

    # ------------------------------------------------------------------ analysis
    def start_analysis(self) -> None:
        """Run the CNN on a worker thread, current slice first; results appear slice by slice."""
        if self.volume is None:
            return
        old = self._analysis_task
        if old is not None and old.isRunning():
            if getattr(old, "generation", None) == self._generation:
                return  # already analysing this study
            old.cancel()  # a previous study's analysis: it stops after its current slice
            old.wait(60000)
        volume = self.volume
        gen = self._generation
        current = self.index
        loaded = self.loaded_model
        analyzer = self._analyzer
        model_path = self.model_path
        self.slice_results = {}
        self.analysis = None
        self.detections = {}
        self._heat_cache.clear()
        self.strip.set_analysed([])
        self.strip.set_marks({})
        self._update_findings_table()
        self._update_diagnosis()

        def run(task: TaskThread):
            from lungct_viewer.core import pipeline

            nonlocal loaded, analyzer
            if analyzer is None:
                if loaded is None:
                    task.message.emit("Loading the model\u2026")
                    from lungct_viewer.core.model import load_model

                    loaded = load_model(model_path or pipeline.default_model_path())
                analyzer = pipeline.Analyzer(loaded)
                task.partial.emit(("model", loaded, analyzer))
            task.message.emit("Analysing")
            order = pipeline.slice_order_from(current, volume.num_slices)

            def on_slice(sa, done, total):
                task.partial.emit(("slice", sa))
                task.progressed.emit(int(done), int(total))

            return analyzer.analyze(volume, order=order, on_slice=on_slice, should_cancel=task.is_cancelled)

        self.analysis_progress.busy("Loading the model\u2026" if analyzer is None else "Analysing")
        t = self._start_task("analysis", run)
        t.generation = gen
        t.message.connect(lambda m: self._on_analysis_message(gen, m))
        t.partial.connect(lambda item: self._on_analysis_partial(gen, item))
        t.progressed.connect(lambda d, n: gen == self._generation and self.analysis_progress.update_progress(d, n))
        t.succeeded.connect(lambda res: self._on_analysis_done(gen, res))
        t.failed.connect(lambda exc, tb: self._on_analysis_failed(gen, exc, tb))
        self._analysis_task = t
        self._update_enabled()

    def _on_analysis_message(self, gen: int, msg: str) -> None:
        if gen != self._generation:
            return
        if msg == "Analysing":
            self.analysis_progress.start(self._n(), "Analysing")
        else:
            self.analysis_progress.busy(msg)

    def _on_analysis_partial(self, gen: int, item) -> None:
        if item[0] == "model":
            first = self.loaded_model is None
            self.loaded_model, self._analyzer = item[1], item[2]
            if first:
                self._adopt_operating_point(item[1])
            return
        if gen != self._generation or self.volume is None:
            return
        from lungct_viewer.core.detection import detect_slice

        sa = item[1]
        self.slice_results[sa.index] = sa
        self.detections[sa.index] = detect_slice(sa, self.volume, self.params)
        self.strip.set_analysed(self.slice_results.keys())
        self._after_detections_changed(refresh_slice=sa.index == self.index)

    def _adopt_operating_point(self, model) -> None:
        """Start from the voting threshold and detection settings chosen for this model."""
        self.params = model.detection_params()
        self.sens_slider.blockSignals(True)
        self.sens_slider.setValue(int(round(self.params.min_roi_probability * 100)))
        self.sens_slider.blockSignals(False)
        self.votes_spin.blockSignals(True)
        self.votes_spin.setValue(int(self.params.min_votes))
        self.votes_spin.blockSignals(False)
        self.set_threshold(model.voting_threshold)

    def _on_analysis_done(self, gen: int, analysis) -> None:
        if gen != self._generation:
            return
        self._analysis_task = None
        self.analysis_progress.finish()
        self.analysis = analysis
        # the final object is the source of truth (it may hold slices whose signal is pending)
        missing = set(analysis.slices) - set(self.slice_results)
        self.slice_results = dict(analysis.slices)
        if missing:
            self._recompute_detections()
        else:
            self._update_diagnosis()
        state = "cancelled" if analysis.cancelled else "finished"
        self.statusBar().showMessage(
            f"Analysis {state}: {len(analysis.slices)} of {analysis.num_slices} slices in "
            f"{analysis.inference_s:.1f} s on {getattr(analysis, 'device', 'CPU')}.",
            15000,
        )
        self._update_enabled()
        self.analysisFinished.emit(analysis)

    def _on_analysis_failed(self, gen: int, exc: BaseException, tb: str) -> None:
        if gen != self._generation:
            return
        self._analysis_task = None
        self.analysis_progress.finish()
        self._update_enabled()
        if isinstance(exc, LungCTError):
            msg = str(exc)
            details = ""
        else:
            log.error("analysis failed:\n%s", tb)
            msg = f"The analysis stopped because of an unexpected error ({type(exc).__name__}: {exc})."
            details = tb
        if isinstance(exc, ModelLoadError):
            msg += " The study can still be viewed; analysis is unavailable."
        self._error("Analysis failed", msg, details)
        self.analysisFinished.emit(None)

    def set_analysis(self, analysis) -> None:
        """Show an existing :class:`~lungct_viewer.core.results.StudyAnalysis` of the volume."""
        if self.volume is None:
            raise ValueError("open a study before showing its analysis")
        self.analysis = analysis
        self.slice_results = dict(analysis.slices)
        self._heat_cache.clear()
        self.strip.set_analysed(self.slice_results.keys())
        self._recompute_detections()
        self._update_enabled()

    def cancel_analysis(self) -> None:
        if self._analysis_task is not None and self._analysis_task.isRunning():
            self._analysis_task.cancel()
            self.analysis_progress.cancel_button.setEnabled(False)
            self.analysis_progress.label.setText("Cancelling\u2026")

    def is_analysing(self) -> bool:
        return self._analysis_task is not None and self._analysis_task.isRunning()

    # ------------------------------------------------------------------ detection, voting
    def _on_sensitivity(self, v: int) -> None:
        self.params = dataclasses.replace(self.params, min_roi_probability=v / 100.0)
        self._update_threshold_labels()
        self._sens_timer.start()

    def _on_min_votes(self, v: int) -> None:
        self.params = dataclasses.replace(self.params, min_votes=int(v))
        self._sens_timer.start()

    def set_min_votes(self, min_votes: int) -> None:
        """Set the minimum votes for an ROI pixel and recompute at once."""
        self.votes_spin.setValue(int(min_votes))
        self._sens_timer.stop()
        self._recompute_detections()

    def set_sensitivity(self, min_roi_probability: float) -> None:
        """Set the detection sensitivity (minimum P(ROI)) and recompute at once."""
        self.sens_slider.setValue(int(round(min_roi_probability * 100)))
        self._sens_timer.stop()
        self._recompute_detections()

    def _recompute_detections(self) -> None:
        if self.volume is None:
            return
        from lungct_viewer.core.detection import detect_slice

        self.detections = {i: detect_slice(sa, self.volume, self.params) for i, sa in self.slice_results.items()}
        self._after_detections_changed(refresh_slice=True)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)
        v = int(round(self.threshold * 100))
        if self.threshold_slider.value() != v:
            self.threshold_slider.blockSignals(True)
            self.threshold_slider.setValue(v)
            self.threshold_slider.blockSignals(False)
        self._update_threshold_labels()
        self._after_detections_changed(refresh_slice=True)

    def _update_threshold_labels(self) -> None:
        self.threshold_value.setText(f"{self.threshold:.2f}")
        self.sens_value.setText(f"P(ROI) \u2265 {self.params.min_roi_probability:.2f}")

    def all_findings(self) -> list:
        from lungct_viewer.core.detection import all_findings

        return all_findings(self.detections)

    def _after_detections_changed(self, refresh_slice: bool) -> None:
        from lungct_viewer.core.detection import group_lesions

        self.sorted_findings = sorted(
            self.all_findings(), key=lambda f: (f.slice_index, f.centroid_px[0], f.centroid_px[1])
        )
        self.lesion_of = {id(f): les.id for les in group_lesions(self.sorted_findings) for f in les.findings}
        if self._finding_cursor is not None and self._finding_cursor >= len(self.sorted_findings):
            self._finding_cursor = None
        marks: dict[int, str] = {}
        for f in self.sorted_findings:
            lab = f.label(self.threshold)
            if marks.get(f.slice_index) != "malignant":
                marks[f.slice_index] = lab
        self.strip.set_marks(marks)
        self._update_findings_table()
        self._update_diagnosis()
        if refresh_slice:
            self._refresh_overlays()

    def _update_diagnosis(self) -> None:
        if self.volume is None or not self.slice_results:
            self.diagnosis = None
            self.diag_label.setText("NOT ANALYSED" if not self.is_analysing() else "ANALYSING\u2026")
            self.diag_label.setProperty("kind", "none")
            self.diag_detail.setText("")
            self._restyle(self.diag_label)
            return
        from lungct_viewer.core.voting import diagnose

        d = diagnose(self.all_findings(), self.threshold)
        self.diagnosis = d
        text = d.display
        partial = "" if (self.analysis is not None and not self.analysis.cancelled) else " (partial)"
        if self.analysis is None and self.is_analysing():
            partial = " (so far)"
        self.diag_label.setText(text + partial)
        frac = "\u2013" if d.malignant_fraction is None else f"{d.malignant_fraction:.2f}"
        self.diag_label.setProperty("kind", d.label)
        self._restyle(self.diag_label)
        self.diag_detail.setText(
            f"Malignant fraction {frac} (threshold {d.threshold:.2f})\n"
            f"Votes: {d.votes_malignant} malignant / {d.votes_benign} benign patches\n"
            f"Findings: {d.n_findings} in {len(set(self.lesion_of.values()))} lesion(s) on "
            f"{len({f.slice_index for f in self.sorted_findings})} slice(s); "
            f"{len(self.slice_results)} of {self._n()} slices analysed"
        )

    @staticmethod
    def _restyle(w: QtWidgets.QWidget) -> None:
        w.style().unpolish(w)
        w.style().polish(w)

    def _update_findings_table(self) -> None:
        t = self.findings_table
        fs = self.sorted_findings
        t.setUpdatesEnabled(False)
        t.setRowCount(len(fs))
        for r, f in enumerate(fs):
            lab = f.label(self.threshold)
            p = f.p_malignant if lab == "malignant" else f.p_benign
            vals = (str(f.slice_index + 1), f"{f.diameter_mm:.1f}", lab, f"{p:.2f}",
                    str(self.lesion_of.get(id(f), "")))
            for c, v in enumerate(vals):
                item = t.item(r, c)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    t.setItem(r, c, item)
                item.setText(v)
                if c == 2:
                    item.setForeground(QtGui.QColor("#ffb000" if lab == "malignant" else "#34c6ff"))
        t.setUpdatesEnabled(True)

    # findings navigation ----------------------------------------------------------------
    def go_to_finding(self, k: int) -> None:
        if not (0 <= k < len(self.sorted_findings)):
            return
        f = self.sorted_findings[k]
        self._finding_cursor = k
        self.set_index(f.slice_index)
        self.view.centre_on(float(f.centroid_px[0]), float(f.centroid_px[1]))
        if self.findings_table.currentRow() != k:
            self.findings_table.selectRow(k)

    def next_finding(self, step: int) -> None:
        fs = self.sorted_findings
        if not fs:
            return
        cur = self._finding_cursor
        if cur is not None and cur < len(fs) and fs[cur].slice_index == self.index:
            k = (cur + step) % len(fs)
        elif step > 0:
            k = next((i for i, f in enumerate(fs) if f.slice_index > self.index), 0)
        else:
            k = next((i for i in range(len(fs) - 1, -1, -1) if fs[i].slice_index < self.index), len(fs) - 1)
        self.go_to_finding(k)

    # ------------------------------------------------------------------ export
    def export_indices(self, mode: str) -> list[int]:
        if mode == "current":
            return [self.index]
        if mode == "findings":
            return sorted({f.slice_index for f in self.sorted_findings})
        return list(range(self._n()))

    def export_slices(self, mode: str, out_dir: str | os.PathLike[str] | None = None) -> None:
        """Export annotated PNGs (+ report.json) for ``mode`` in {"current", "findings", "all"}."""
        if self.volume is None or self.analysis is None:
            self._error("Nothing to export", "Open a study and let the analysis finish (or cancel it) first.")
            self.exportFinished.emit(None)
            return
        if self._export_task is not None and self._export_task.isRunning():
            self.statusBar().showMessage("An export is already running.", 5000)
            return
        indices = self.export_indices(mode)
        if not indices:
            self._error("Nothing to export", "No slice has a finding at the current settings.")
            self.exportFinished.emit(None)
            return
        if out_dir is None:
            start = str(self.settings.value("export/last_dir", "") or "")
            out_dir = self.dialogs.export_folder(self, start)
            if not out_dir:
                return
        out_dir = Path(out_dir)
        from lungct_viewer.core import export as export_mod

        if self.study_path and export_mod.is_within(out_dir, self.study_path):
            self._error("Choose another folder", "The app never writes into the study's folder; please choose another one.")
            self.exportFinished.emit(None)
            return
        self.settings.setValue("export/last_dir", str(out_dir))

        existing = list(export_mod.existing_outputs(out_dir, self.volume, indices))
        overwrite = False
        if existing:
            names = ", ".join(p.name for p in existing[:3]) + (" \u2026" if len(existing) > 3 else "")
            if not self.dialogs.question(
                self,
                "Replace existing files?",
                f"{len(existing)} file(s) already exist in {out_dir} ({names}). Replace them?",
            ):
                return
            overwrite = True
        volume, detections = self.volume, dict(self.detections)
        analysis, diagnosis, params = self.analysis, self.diagnosis, self.params
        threshold = self.threshold
        model = self.loaded_model
        model_version = getattr(analysis, "model_version", "") or (model.version if model else "unknown")
        include_name = self.act_patient_name.isChecked()
        load_s = self._load_s

        def run(task: TaskThread):
            from lungct_viewer.core import export as ex
            from lungct_viewer.core import report as rp

            paths = ex.export_annotated_slices(
                volume, detections, indices, out_dir,
                threshold=threshold, model_version=model_version, overwrite=overwrite,
                include_patient_name=include_name,
                progress=lambda d, n: task.progressed.emit(int(d), int(n)),
                should_cancel=task.is_cancelled,
            )
            if task.is_cancelled():
                return None
            rep = rp.build_report(volume, analysis, detections, diagnosis, params, load_s=load_s)
            paths = list(paths) + [rp.write_report(out_dir, rep)]
            return paths

        self.export_progress.start(len(indices), "Exporting")
        t = self._start_task("export", run)
        t.progressed.connect(self.export_progress.update_progress)
        t.succeeded.connect(self._on_export_done)
        t.failed.connect(self._on_export_failed)
        self._export_task = t

    def _on_export_done(self, paths) -> None:
        self._export_task = None  # its thread may still be winding down; it is not "busy"
        self.export_progress.finish()
        self.last_export = None if paths is None else [Path(p) for p in paths]
        if paths is None:
            self.statusBar().showMessage("Export cancelled; the files already written were kept.", 10000)
        else:
            self.statusBar().showMessage(f"Exported {len(paths)} file(s) to {Path(paths[-1]).parent}.", 10000)
        self.exportFinished.emit(self.last_export)

    def _on_export_failed(self, exc: BaseException, tb: str) -> None:
        self._export_task = None
        self.export_progress.finish()
        cancelled = type(exc).__name__ == "AnalysisCancelled"
        if cancelled:
            self.statusBar().showMessage("Export cancelled; the files already written were kept.", 10000)
        else:
            msg = str(exc) if isinstance(exc, LungCTError) else f"The export failed ({type(exc).__name__}: {exc})."
            if not isinstance(exc, LungCTError):
                log.error("export failed:\n%s", tb)
            self._error("Export failed", msg)
        self.last_export = None
        self.exportFinished.emit(None)

    def cancel_export(self) -> None:
        if self._export_task is not None and self._export_task.isRunning():
            self._export_task.cancel()

    # ------------------------------------------------------------------ about
    def show_about(self) -> None:
        card = self.loaded_model.card if self.loaded_model is not None else None
        path = self.loaded_model.path if self.loaded_model is not None else self.model_path
        if card is None:
            card, path = _read_card_only(path)
        self.dialogs.about(self, "About LungCT Viewer", model_card_html(card, path))

    # ------------------------------------------------------------------ plumbing
    def _start_task(self, name: str, fn) -> TaskThread:
        t = TaskThread(name, fn, self)
        self._threads.add(t)
        t.finished.connect(lambda t=t: self._threads.discard(t))
        t.finished.connect(self._update_enabled)
        t.start()
        return t

    def _cancel_tasks(self) -> None:
        for t in list(self._threads):
            t.cancel()

    def _update_enabled(self) -> None:
        if self._closing:
            return
        has = self.volume is not None
        busy = self.is_analysing()
        self.analyze_button.setEnabled(has and not busy)
        self.act_analyze.setEnabled(has and not busy)
        self.act_cancel.setEnabled(busy)
        can_export = has and self.analysis is not None
        for a in (self.act_export_current, self.act_export_findings, self.act_export_all):
            a.setEnabled(can_export)

    def _error(self, title: str, text: str, details: str = "") -> None:
        self.last_error = text
        self.statusBar().showMessage(text, 15000)
        if not self._closing:
            self.dialogs.error(self, title, text, details)

    def stop_workers(self, timeout_ms: int = 60000) -> bool:
        """Cancel every background task and wait for them; True when all stopped."""
        self._cancel_tasks()
        ok = True
        for t in list(self._threads):
            ok = t.wait(timeout_ms) and ok
        return ok

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802
        self._closing = True
        self._generation += 1  # late signals are ignored
        self.stop_workers()
        super().closeEvent(ev)


def _read_card_only(model_path: str | None):
    """The model card JSON without loading Keras (for About before the model is loaded)."""
    try:
        from lungct_viewer.core.model import card_path_for, read_model_card

        if model_path is None:
            from lungct_viewer.core.pipeline import default_model_path

            model_path = str(default_model_path())
        if card_path_for(model_path).is_file():
            return read_model_card(model_path), model_path
    except Exception:  # noqa: BLE001 - About must always open
        log.debug("model card unreadable", exc_info=True)
    return None, model_path


__all__ = ["MainWindow", "StudyLoadError"]
