"""Background work: one worker per task on its own QThread (napari's ``thread_worker``, trimmed).

A :class:`Worker` runs ``fn(control)`` off the GUI thread, where ``control`` is the worker's
:class:`WorkerControl`: ``control.cancelled`` is the ``cancel=`` / ``should_cancel=`` callable
the core functions poll, ``control.progress`` their ``progress=`` callback.

* A **generator function** hands over its results one by one: each value it yields arrives in
  :attr:`Worker.yielded`; when the user cancels, the worker stops pulling at the next yield
  and closes the generator.
* A **plain function**'s result arrives in :attr:`Worker.returned` (a generator's return value
  too).

There is one cancellation type: a task that stops because it was cancelled ends with
:attr:`Worker.cancelled` carrying a :class:`~lungct_viewer.core.errors.AnalysisCancelled`
(the core's :class:`~lungct_viewer.core.errors.LoadCancelled` is one); any other exception
arrives in :attr:`Worker.errored`. Every worker ends with exactly one of ``returned``,
``cancelled`` or ``errored``, then ``finished``. Signals are queued, so their slots run on
the GUI thread; nothing here blocks it.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore
from PySide6.QtCore import Signal

from lungct_viewer.core.errors import AnalysisCancelled

log = logging.getLogger(__name__)


class WorkerControl:
    """What a running task sees of its worker: whether to stop, and where to report progress."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def cancelled(self) -> bool:
        """True once the user asked the task to stop (poll it between units of work)."""
        return self._worker.is_cancelled()

    def progress(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` (delivered to :attr:`Worker.progressed`)."""
        self._worker.progressed.emit(int(done), int(total))


class Worker(QtCore.QThread):
    """Runs ``fn(control)`` on its own thread (see module docstring)."""

    yielded = Signal(object)
    progressed = Signal(int, int)  # done, total
    returned = Signal(object)
    cancelled = Signal(object)  # AnalysisCancelled
    errored = Signal(object)  # the exception (its traceback is logged)

    def __init__(self, name: str, fn: Callable[[WorkerControl], Any], parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._fn = fn
        self._cancel = threading.Event()
        self.control = WorkerControl(self)
        #: seconds the task ran (set when it ends)
        self.seconds = 0.0
        self.setObjectName(f"lungct-{name}")

    def cancel(self) -> None:
        """Ask the task to stop (it does at its next poll or yield)."""
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:  # the worker thread
        t0 = time.perf_counter()
        try:
            result = self._fn(self.control)
            if inspect.isgenerator(result):
                result = self._drain(result)
        except AnalysisCancelled as exc:
            self.seconds = time.perf_counter() - t0
            self.cancelled.emit(exc)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI thread
            self.seconds = time.perf_counter() - t0
            log.debug("task %s failed:\n%s", self.name, traceback.format_exc())
            self.errored.emit(exc)
        else:
            self.seconds = time.perf_counter() - t0
            self.returned.emit(result)

    def _drain(self, gen) -> Any:
        try:
            while True:
                if self.is_cancelled():
                    raise AnalysisCancelled(f"{self.name.capitalize()} was cancelled.")
                try:
                    value = next(gen)
                except StopIteration as stop:
                    return stop.value
                self.yielded.emit(value)
        finally:
            gen.close()


class WorkerPool(QtCore.QObject):
    """The window's running workers: started here, cancelled and awaited together on close."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._running: set[Worker] = set()
        self.closed = False

    def start(self, name: str, fn: Callable[[WorkerControl], Any], connect: Callable[[Worker], Any]) -> Worker:
        """A new worker running ``fn``. ``connect(worker)`` connects its signals before its
        thread starts, so that no signal of a task that ends at once is lost. Once the pool is
        closed (its window is closing) the worker never runs: late signals start no new work."""
        w = Worker(name, fn, self)
        connect(w)
        if self.closed:
            return w
        self._running.add(w)
        w.finished.connect(lambda w=w: self._running.discard(w))
        w.start()
        return w

    def running(self) -> list[Worker]:
        return [w for w in self._running if w.isRunning()]

    def cancel_all(self) -> None:
        for w in list(self._running):
            w.cancel()

    def wait_all(self, timeout_ms: int = 60_000, close: bool = False) -> bool:
        """Cancel every worker and wait for them (and start no more when ``close``); True
        when all stopped in time."""
        self.closed = self.closed or close
        self.cancel_all()
        ok = True
        for w in list(self._running):
            ok = w.wait(timeout_ms) and ok
        return ok
