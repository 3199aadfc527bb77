"""Application entry point: ``run_gui`` creates the QApplication and the main window."""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from lungct_viewer import RESEARCH_NOTICE
from lungct_viewer.core.atomic import atomic_path
from lungct_viewer.resources import STYLE_DIR

from .dialogs import Dialogs
from .main_window import MainWindow

log = logging.getLogger(__name__)

STYLE_FILE = STYLE_DIR / "dark.qss"
#: Longest wait for the analysis in ``--screenshot`` mode before the screenshot is taken anyway.
SCREENSHOT_TIMEOUT_S = 3600


class HeadlessDialogs(Dialogs):
    """Dialogs for ``--screenshot`` runs: nothing modal, errors go to stderr."""

    def error(self, parent, title, text, details=""):
        print(f"{title}: {text}", file=sys.stderr)

    def question(self, parent, title, text):
        return False

    def open_folder(self, parent, start=""):
        return None

    def open_file(self, parent, start=""):
        return None

    def export_folder(self, parent, start=""):
        return None

    def choose_series(self, parent, summaries, default):
        return default

    def about(self, parent, title, html_text):
        return None


def apply_style(app: QtWidgets.QApplication) -> None:
    """Dark Fusion palette (radiology reading rooms are dark) plus the project's style sheet."""
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    role = QtGui.QPalette.ColorRole
    pal.setColor(role.Window, QtGui.QColor(37, 38, 43))
    pal.setColor(role.WindowText, QtGui.QColor(222, 222, 222))
    pal.setColor(role.Base, QtGui.QColor(26, 27, 31))
    pal.setColor(role.AlternateBase, QtGui.QColor(44, 45, 51))
    pal.setColor(role.Text, QtGui.QColor(222, 222, 222))
    pal.setColor(role.Button, QtGui.QColor(50, 52, 58))
    pal.setColor(role.ButtonText, QtGui.QColor(222, 222, 222))
    pal.setColor(role.Highlight, QtGui.QColor(60, 110, 180))
    pal.setColor(role.HighlightedText, QtGui.QColor(255, 255, 255))
    pal.setColor(role.ToolTipBase, QtGui.QColor(50, 52, 58))
    pal.setColor(role.ToolTipText, QtGui.QColor(230, 230, 230))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, role.Text, QtGui.QColor(120, 120, 120))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, role.ButtonText, QtGui.QColor(120, 120, 120))
    app.setPalette(pal)
    if STYLE_FILE.is_file():
        app.setStyleSheet(STYLE_FILE.read_text(encoding="utf-8"))


def run_gui(
    path: str | None = None,
    *,
    model_path: str | None = None,
    series_uid: str | None = None,
    screenshot: str | None = None,
    slice_number: int | None = None,
) -> int:
    """Open the viewer on ``path`` (or the demo study) and run the event loop.

    The model starts loading in the background at once. With ``screenshot``, the analysis
    always runs; when it has finished (or failed) and the folder's reference annotations are
    read, the window is saved to that PNG file and the application exits (exit code 1 on
    failure); it shows slice ``slice_number`` (1-based) when given, else the central slice of
    the largest finding.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("LungCT Viewer")
    app.setOrganizationName("LungCT")
    apply_style(app)

    shot = screenshot is not None
    settings = None
    if shot:  # a screenshot neither reads nor changes the user's settings
        tmp_ini = Path(tempfile.mkdtemp(prefix="lungct-shot-")) / "settings.ini"
        settings = QtCore.QSettings(str(tmp_ini), QtCore.QSettings.Format.IniFormat)
    win = MainWindow(
        model_path=model_path,
        settings=settings,
        dialogs=HeadlessDialogs() if shot else None,
        auto_analyze=True if shot else None,
        preload_model=False,  # open_at_start loads it once the study's first slice is up
    )
    if shot:
        win.resize(1600, 1000)
    win.show()
    state = {"rc": 0, "saved": False}

    if shot:
        out = Path(screenshot)

        def save(ok: bool) -> None:
            if state["saved"]:
                return
            state["saved"] = True
            app.processEvents()
            win.repaint()
            img = win.grab()
            try:
                with atomic_path(out, suffix=".png") as tmp:
                    if not img.save(str(tmp), "PNG"):
                        raise OSError("not written")
                written = True
            except OSError:
                written = False
            if not written:
                print(f"Could not write the screenshot {out}.", file=sys.stderr)
                state["rc"] = 1
            else:
                print(f"Screenshot saved to {out}")
            if not ok:
                state["rc"] = 1
            win.close()
            app.quit()

        def when_done(analysis) -> None:
            # let the last slice's overlays paint before grabbing
            ok = analysis is not None
            session = win.session
            if slice_number is not None:
                win.set_index(slice_number - 1)
            elif ok and session is not None and session.largest_finding() is not None:
                win.set_index(session.largest_finding().central.slice_index)
            if win.references.is_running():  # the folder's reference annotations are on screen too
                win.references.idle.connect(lambda: QtCore.QTimer.singleShot(300, lambda: save(ok)))
            else:
                QtCore.QTimer.singleShot(300, lambda: save(ok))

        win.analysisFinished.connect(when_done)
        win.loadFailed.connect(lambda _m: QtCore.QTimer.singleShot(100, lambda: save(False)))
        win.loadCancelled.connect(lambda: QtCore.QTimer.singleShot(100, lambda: save(False)))
        QtCore.QTimer.singleShot(SCREENSHOT_TIMEOUT_S * 1000, lambda: save(False))

    if slice_number is not None:
        win.studyLoaded.connect(lambda _vol: win.set_index(slice_number - 1))
    # Open after the window is on screen, so it appears at once.
    QtCore.QTimer.singleShot(0, lambda: win.open_at_start(path, series_uid=series_uid))
    log.info("%s", RESEARCH_NOTICE)
    rc = app.exec()
    return int(state["rc"] or rc)
