"""Reading reference annotations on workers: those of an opened folder, and a file the reader
chooses (File > Open reference annotations).

The files are read by :mod:`lungct_viewer.core.references` onto the series on screen and
handed to its :class:`~lungct_viewer.core.session.ReadingSession`. When a folder opens, its
segmentations, RT structure sets and LIDC reading files are read at once; whatever cannot be
shown goes into the load warnings (never a dialog). A file the reader chose and that cannot
be read is reported at once (``failed``).
"""

from __future__ import annotations

import logging

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

from lungct_viewer.core.errors import LungCTError
from lungct_viewer.core.references import LoadedReferences, find_references, read_references

from .dialogs import Dialogs
from .widgets import WarningsButton
from .workers import Worker, WorkerPool

log = logging.getLogger(__name__)


class ReferenceLoader(QtCore.QObject):
    """See module docstring. ``window`` is the main window (its ``session``, ``study`` and
    status bar)."""

    failed = Signal(str, str)  # title, message (a file the reader chose)
    idle = Signal()  # no reference file is being read any more

    def __init__(
        self, pool: WorkerPool, dialogs: Dialogs, warnings: WarningsButton, window: QtWidgets.QMainWindow
    ) -> None:
        super().__init__(window)
        self._pool = pool
        self._dialogs = dialogs
        self._warnings = warnings
        self._window = window
        self._running: set[Worker] = set()

    def is_running(self) -> bool:
        return bool(self._running)

    def find(self, study, session) -> None:
        """Read the reference annotations of the folder ``study`` (a loaded study) came from."""
        files, volume = study.reference_files, session.volume
        if files:
            self._run(lambda control: find_references(files, volume, control.cancelled), session, chosen=False)

    def open_dialog(self) -> None:
        """Ask for a file and read it onto the series on screen."""
        win = self._window
        if win.session is None:
            self.failed.emit("No study open", "Open a study first: reference annotations are drawn on its series.")
            return
        path = self._dialogs.open_file(win, win.study.path if win.study is not None else "")
        if path:
            self.open(path)

    def open(self, path: str) -> None:
        """Read one file onto the series on screen."""
        session = self._window.session
        if session is None:
            return
        volume = session.volume
        self._run(lambda control: read_references(path, volume), session, chosen=True)

    # ------------------------------------------------------------------------ internals
    def _run(self, fn, session, chosen: bool) -> None:
        def connect(w: Worker) -> None:
            w.returned.connect(lambda got: self._on_read(w, session, got))
            w.errored.connect(lambda exc: self._on_failed(w, session, exc, chosen))
            w.cancelled.connect(lambda _e: self._end(w))

        w = self._pool.start("references", fn, connect)
        if not self._pool.closed:
            self._running.add(w)

    def _end(self, w: Worker) -> None:
        self._running.discard(w)
        if not self._running:
            self.idle.emit()

    def _on_read(self, w: Worker, session, got: LoadedReferences) -> None:
        self._end(w)
        if session is not self._window.session:
            return  # another study is on screen now
        if got.references:
            session.add_references(got.references)
            files = sorted({r.source for r in got.references})
            self._window.statusBar().showMessage(
                f"{len(got.references)} reference outline(s) from {', '.join(files)} shown in green.", 10000
            )
        self._warn(got.warnings)

    def _on_failed(self, w: Worker, session, exc: BaseException, chosen: bool) -> None:
        self._end(w)
        if session is not self._window.session:
            return
        if isinstance(exc, LungCTError):
            msg = str(exc)
        else:
            log.error("reading reference annotations failed: %s: %s", type(exc).__name__, exc)
            msg = f"The reference annotations could not be read ({type(exc).__name__})."
        if chosen:
            self.failed.emit("Cannot show the reference annotations", msg)
        else:
            self._warn([msg])

    def _warn(self, lines) -> None:
        if lines:
            self._warnings.set_warnings([*self._warnings.warnings, *lines])
