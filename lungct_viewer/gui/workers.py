"""Background work on QThreads: loading a study, running the CNN, exporting PNGs.

A :class:`TaskThread` runs ``fn(task)`` off the GUI thread; ``fn`` reports through the
task's signals (``progressed``, ``partial``) and polls ``task.is_cancelled()``. Results and
exceptions come back as queued signals, so slots always run on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any, Callable

from PySide6 import QtCore
from PySide6.QtCore import Signal

log = logging.getLogger(__name__)


class TaskThread(QtCore.QThread):
    progressed = Signal(int, int)  # done, total
    partial = Signal(object)  # intermediate result (e.g. one analysed slice)
    message = Signal(str)  # a short state text ("Loading the model...")
    succeeded = Signal(object)
    failed = Signal(object, str)  # exception, formatted traceback

    def __init__(self, name: str, fn: Callable[["TaskThread"], Any], parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._fn = fn
        self._cancel = threading.Event()
        self.setObjectName(f"lungct-{name}")

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:  # runs on the worker thread
        try:
            result = self._fn(self)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI
            tb = traceback.format_exc()
            log.debug("task %s failed:\n%s", self.name, tb)
            self.failed.emit(exc, tb)
            return
        self.succeeded.emit(result)
