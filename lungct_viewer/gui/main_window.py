"""The main window: composes the reading area, the panels, the actions and the background work.

One :class:`~lungct_viewer.core.session.ReadingSession` per opened series holds the reading;
the window listens to it and asks the reading area and the panels to draw. Opening (:mod:`.loading`),
reference annotations (:mod:`.references`), the network (:mod:`.analysis`) and exporting
(:mod:`.export`) run on workers; menus and shortcuts come from the table in :mod:`.actions`;
settings persist through :mod:`.settings`. The window owns no reading logic.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Signal

from lungct_viewer import RESEARCH_NOTICE
from lungct_viewer.core.demo import demo_study_note
from lungct_viewer.core.errors import LungCTError, ModelLoadError
from lungct_viewer.core.session import ReadingSession
from lungct_viewer.core.study import CTVolume

from .actions import build_actions
from .analysis import AnalysisController, ModelLoader
from .dialogs import Dialogs
from .display_panel import DisplayPanel
from .export import ExportController, export_indices, image_options
from .help import HelpWindows
from .loading import LoadController, LoadedStudy, dropped_folder
from .reading_panel import ReadingPanel
from .references import ReferenceLoader
from .settings import ViewerSettings, restore_window, save_window
from .viewer import SliceViewer
from .widgets import StatusBar, research_notice, side_panel
from .workers import WorkerPool

log = logging.getLogger(__name__)


class MainWindow(QtWidgets.QMainWindow):
    """The viewer window. ``settings`` and ``dialogs`` are injectable for tests; the model
    starts loading in the background when the window opens unless ``preload_model`` is False."""

    studyLoaded = Signal(object)  # CTVolume
    loadFailed = Signal(str)
    loadCancelled = Signal()
    analysisFinished = Signal(object)  # StudyAnalysis once read, or None when it could not run
    exportFinished = Signal(object)  # written paths, or None
    indexChanged = Signal(int)
    previewShown = Signal(int)

    def __init__(
        self,
        *,
        model_path: str | None = None,
        settings: QtCore.QSettings | None = None,
        dialogs: Dialogs | None = None,
        auto_analyze: bool | None = None,
        preload_model: bool = True,
    ) -> None:
        super().__init__()
        self.dialogs = dialogs or Dialogs()
        self.settings = ViewerSettings(settings)
        self._auto_override = auto_analyze
        self.session: ReadingSession | None = None
        self.study: LoadedStudy | None = None
        self.include_identifiers = False
        self.last_error: str | None = None
        self._unsubscribe = None
        self._current_lesion: int | None = None
        self._closing = False
        self.workers = WorkerPool(self)
        self.model = ModelLoader(self.workers, model_path, self)
        self.loader = LoadController(self.workers, self.dialogs, self)
        self.analysis = AnalysisController(self.workers, self.model, self)
        self.exporter = ExportController(self.workers, self.dialogs, self.settings, self)
        self.help = HelpWindows(
            self, self.model, self.dialogs, lambda: self.session.voting_threshold if self.session else None
        )
        self._build_ui()
        self.references = ReferenceLoader(self.workers, self.dialogs, self.warnings_button, self)
        self.actions_by_key, submenus = build_actions(self, self.viewer)
        self.recent_menu = submenus["recent"]
        self._connect()
        restore_window(self.settings, self, self.display)
        self.actions_by_key["auto"].setChecked(self.auto_analyze)
        self._rebuild_recent_menu()
        self._apply_display()
        self.setWindowTitle(f"LungCT Viewer \u2014 {RESEARCH_NOTICE}")
        self.setAcceptDrops(True)
        self._refresh_timer = QtCore.QTimer(self, singleShot=True, interval=0)
        self._refresh_timer.timeout.connect(self._refresh_reading)
        self._update_enabled()
        if preload_model:
            self.model.start()  # TensorFlow imports on its worker while the window opens

    # ------------------------------------------------------------------ composition
    def _build_ui(self) -> None:
        self.viewer = SliceViewer()
        self.view = self.viewer.view
        self.display = DisplayPanel()
        self.reading = ReadingPanel()
        self.notice_label = research_notice()
        splitter = QtWidgets.QSplitter()
        splitter.addWidget(self.viewer)
        splitter.addWidget(side_panel(self.notice_label, self.display, self.reading))
        splitter.setStretchFactor(0, 1)
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)
        self.setStatusBar(sb := StatusBar())
        self.cursor_label, self.warnings_button, self.status_notice = sb.cursor_label, sb.warnings_button, sb.notice
        self.load_progress, self.analysis_progress, self.export_progress = sb.load, sb.analysis, sb.export

    def _connect(self) -> None:
        v, r = self.viewer, self.reading
        v.indexChanged.connect(self.indexChanged)
        v.previewShown.connect(self.previewShown)
        v.cursorText.connect(self.cursor_label.setText)
        v.view.windowDragged.connect(self.display.drag_window)
        self.display.changed.connect(self._apply_display)
        self.display.resetRequested.connect(self.view.reset_view)
        r.showCandidatesChanged.connect(lambda _on: self._apply_display())
        r.analyseRequested.connect(self.start_analysis)
        r.lesionActivated.connect(self.show_lesion)
        r.references.referenceActivated.connect(lambda k, centre: self.show_lesion(None, k, centre))
        self.references.failed.connect(self._error)
        r.editingDone.connect(lambda: self.view.setFocus())
        ld, lp = self.loader, self.load_progress
        ld.busy.connect(lp.busy)
        ld.started.connect(self._on_load_started)
        ld.progressed.connect(lp.update_progress)
        ld.preview.connect(v.show_preview)
        ld.loaded.connect(self._on_loaded)
        ld.failed.connect(self._on_load_failed)
        ld.cancelled.connect(self._on_load_cancelled)
        lp.cancelRequested.connect(ld.cancel)
        an, ap = self.analysis, self.analysis_progress
        an.waitingForModel.connect(lambda: ap.busy("Loading the model\u2026"))
        an.started.connect(lambda n: ap.start(n, "Analysing"))
        an.started.connect(lambda _n: self._refresh_reading())
        an.progressed.connect(ap.update_progress)
        an.finished.connect(self._on_analysis_finished)
        an.failed.connect(self._on_analysis_failed)
        ap.cancelRequested.connect(an.cancel)
        ex, ep = self.exporter, self.export_progress
        ex.started.connect(lambda n: ep.start(n, "Exporting"))
        ex.progressed.connect(ep.update_progress)
        ex.finished.connect(self._on_export_finished)
        ex.failed.connect(self._error)
        ep.cancelRequested.connect(ex.cancel)

    # ------------------------------------------------------------------ the session
    def set_session(self, session: ReadingSession | None, study: LoadedStudy | None = None) -> None:
        """Show ``session`` (None: the empty view); ``study`` says where it came from."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.session, self.study, self._current_lesion = session, study, None
        self._unsubscribe = session.subscribe(self._on_session_event) if session is not None else None
        note = demo_study_note(study.path) if study is not None and study.demo else ""
        self.reading.set_session(session)
        self.viewer.set_session(session, series=study.info.summary() if study else "", note=note)
        vol = session.volume if session is not None else None
        self.warnings_button.set_warnings(study.warnings() if study else list(vol.warnings) if vol else [])
        desc = f"{vol.description or 'CT series'} ({vol.num_slices} slices) \u2014 " if vol else ""
        self.setWindowTitle(f"LungCT Viewer \u2014 {desc}{RESEARCH_NOTICE}")
        self._refresh_reading()

    def set_volume(self, volume: CTVolume) -> ReadingSession:
        """Show a loaded volume in a new session with the model's card and second reading."""
        session = ReadingSession(volume, self.model.card(), self.model.second_reading())
        self.set_session(session)
        return session

    def set_analysis(self, analysis, candidates=None) -> None:
        """Adopt an analysis of the volume; its candidates are given or found on a worker."""
        self.session.set_analysis(analysis)
        if candidates is not None:
            self.session.set_candidates(candidates)
            self.analysisFinished.emit(analysis)
        else:
            self.analysis.find_candidates(self.session)
        self._update_enabled()

    def _on_session_event(self, what: str) -> None:
        if what == "analysis":
            self._refresh_timer.start()  # slices stream in: draw once per turn of the event loop
        else:
            self._refresh_reading()

    def _refresh_reading(self) -> None:
        self._refresh_timer.stop()
        self._update_enabled()
        self.viewer.refresh()
        self.viewer.refresh_strip()
        self._refresh_panel()
        if self.session is not None:
            self.help.set_threshold(self.session.voting_threshold)

    def _refresh_panel(self) -> None:
        busy = self.analysis.is_running() and self.session is not None and not self.session.candidates_ready
        self.reading.refresh("ANALYSING\u2026" if busy else None)

    def _apply_display(self) -> None:
        self.viewer.set_options(self.display.options, self.reading.show_candidates)
        self._refresh_panel()

    # ------------------------------------------------------------------ opening
    def open_path(self, path: str | None, series_uid: str | None = None) -> None:
        """Open a study folder (the demo study when ``path`` is None) without blocking."""
        self.loader.open(None if path is None else str(path), series_uid)

    def open_at_start(self, path: str | None, series_uid: str | None = None) -> None:
        """Open the study the viewer was started with; the model loads after its first slice
        (:meth:`.ModelLoader.start_on_first`), which puts the image up about a second sooner."""
        self.model.start_on_first(self.previewShown, self.studyLoaded, self.loadFailed, self.loadCancelled)
        self.open_path(path, series_uid)

    def open_demo(self) -> None:
        self.open_path(None)

    def open_folder_dialog(self) -> None:
        rec = self.settings.recent_folders()
        path = self.dialogs.open_folder(self, rec[0] if rec else "")
        if path:
            self.open_path(path)

    def _on_load_started(self, n: int) -> None:
        self.load_progress.start(n, "Loading slices")
        if self.session is not None:
            self.analysis.stop_for(self.session)  # the old study's analysis frees the CPU

    def _on_loaded(self, study: LoadedStudy) -> None:
        self.load_progress.finish()
        session = ReadingSession(study.volume, self.model.card(), self.model.second_reading())
        session.load_s = study.seconds
        self.set_session(session, study)
        self.references.find(study, session)
        if not study.demo:
            self.settings.remember_folder(study.path)
            self._rebuild_recent_menu()
        self.view.setFocus()
        self.studyLoaded.emit(study.volume)
        if self.auto_analyze:
            self.start_analysis()

    def _on_load_failed(self, message: str) -> None:
        self.load_progress.finish()
        self.viewer.end_preview()
        self._error("Cannot open the study", message)
        self.loadFailed.emit(message)

    def _on_load_cancelled(self) -> None:
        self.load_progress.finish()
        self.viewer.end_preview()
        self.statusBar().showMessage("Opening cancelled; the study on screen is unchanged.", 8000)
        self.loadCancelled.emit()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_folders():
            self.recent_menu.addAction(p).triggered.connect(lambda _=False, p=p: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders()))

    # ------------------------------------------------------------------ analysis
    @property
    def auto_analyze(self) -> bool:
        return self.settings.auto_analyze if self._auto_override is None else self._auto_override

    def set_auto_analyze(self, on: bool) -> None:
        self._auto_override = None
        self.settings.auto_analyze = on

    def start_analysis(self) -> None:
        """Run the network over the slices not yet analysed, the current one first."""
        if self.session is not None:
            self.analysis.start(self.session, self.viewer.index)
            self._update_enabled()

    def _on_analysis_finished(self, analysis) -> None:
        self.analysis_progress.finish()
        if analysis is not None and (self.session is None or analysis is not self.session.analysis):
            return  # a study no longer on screen
        if analysis is not None:
            state = "cancelled" if analysis.cancelled else "finished"
            self.statusBar().showMessage(
                f"Analysis {state}: {len(analysis.slices)} of {analysis.num_slices} slices, "
                f"network {analysis.inference_s:.1f} s on {analysis.device}.",
                15000,
            )
        self._refresh_reading()
        self._update_enabled()
        self.analysisFinished.emit(analysis)

    def _on_analysis_failed(self, exc: BaseException) -> None:
        msg = str(exc) if isinstance(exc, LungCTError) else f"The analysis stopped ({type(exc).__name__}: {exc})."
        if isinstance(exc, ModelLoadError):
            msg += " The study can still be viewed; analysis is unavailable."
        self._error("Analysis failed", msg)

    def cancel_work(self) -> None:
        """Esc: cancel whatever runs (opening a study, the analysis, an export)."""
        self.loader.cancel()
        self.analysis.cancel()
        self.exporter.cancel()

    # ------------------------------------------------------------------ export
    def export_slices(self, mode: str, out_dir: str | Path | None = None) -> None:
        """Export PNGs + report.json ("current", "findings", "all") or DICOM SEG + SR ("dicom")."""
        s = self.session
        if s is None or not s.candidates_ready:
            self._error("Nothing to export", "Open a study and let the analysis finish (or cancel it) first.")
            self.exportFinished.emit(None)
            return
        self.reading.apply_pending()
        info, source = (self.study.info, self.study.path) if self.study else (None, None)
        if mode == "dicom":
            return self.exporter.export_dicom(s, info, out_dir, source_dir=source)
        options = image_options(self.display.options, self.reading.show_candidates, self.include_identifiers)
        warnings = self.study.warnings() if self.study else list(s.volume.warnings)
        indices = export_indices(s, mode, self.viewer.index)
        self.exporter.export(
            s, indices, out_dir, options=options, source_dir=source, warnings=warnings, model_path=str(self.model.path)
        )

    def set_include_identifiers(self, on: bool) -> None:
        self.include_identifiers = bool(on)

    def _on_export_finished(self, paths) -> None:
        self.export_progress.finish()
        if paths:
            self.statusBar().showMessage(f"Exported {len(paths)} file(s) to {paths[-1].parent}.", 10000)
        elif paths is None and not self.last_error:
            self.statusBar().showMessage("Export cancelled; nothing was written.", 10000)
        self.exportFinished.emit(paths)

    # ------------------------------------------------------------------ findings
    def set_index(self, index: int) -> None:
        self.viewer.set_index(index)

    @property
    def index(self) -> int:
        return self.viewer.index

    def show_lesion(self, lesion_id: int | None, slice_index: int, centre) -> None:
        """Go to a lesion's (or a reference's: ``lesion_id`` None) central slice, centred."""
        self._current_lesion = lesion_id
        self.viewer.set_index(slice_index)
        self.viewer.centre_on(*centre)

    def next_finding(self, step: int) -> None:
        if self.session is None or not self.session.candidates_ready:
            return
        les = self.session.next_finding(self._current_lesion, step)
        if les is not None:
            self.show_lesion(les.id, les.central.slice_index, les.central.centroid_px)
            self.reading.select_lesion(les.id)

    # ------------------------------------------------------------------ plumbing
    def _update_enabled(self) -> None:
        if self._closing:
            return
        has = self.session is not None
        done = has and self.session.analysis.complete and self.session.candidates_ready
        can_run = has and not self.analysis.is_running() and not done
        self.reading.analyse_button.setEnabled(can_run)
        self.actions_by_key["analyze"].setEnabled(can_run)
        for key in ("export_current", "export_findings", "export_all", "export_dicom"):
            self.actions_by_key[key].setEnabled(has and self.session.candidates_ready)

    def _error(self, title: str, text: str) -> None:
        self.last_error = text
        self.statusBar().showMessage(text, 15000)
        if not self._closing:
            self.dialogs.error(self, title, text)

    def dragEnterEvent(self, ev: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if dropped_folder(ev.mimeData()):
            ev.acceptProposedAction()

    def dropEvent(self, ev: QtGui.QDropEvent) -> None:  # noqa: N802
        folder = dropped_folder(ev.mimeData())
        if folder:
            ev.acceptProposedAction()
            self.open_path(folder)

    def stop_workers(self, timeout_ms: int = 60000) -> bool:
        """Cancel every background task and wait for them; True when all stopped."""
        return self.workers.wait_all(timeout_ms, close=self._closing)

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802
        self._closing = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        save_window(self.settings, self, self.display)
        self.help.close_all()
        self.stop_workers()
        super().closeEvent(ev)
