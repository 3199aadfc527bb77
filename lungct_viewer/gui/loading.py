"""Opening a study: scan the folder, choose the series, load it -- on workers, cancellable.

The study on screen is not touched until the new series has loaded: a cancel (Esc, the
Cancel button, or Cancel in the series chooser) or a failure leaves the previous study (or the
empty view) as it was. While the series loads, its middle slice is decoded first and offered
as a :class:`Preview`, so something is on screen at once. The time reported as ``seconds``
is the scan plus the load, not the time the reader spends in the series chooser.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

from lungct_viewer.core.errors import LungCTError, StudyLoadError
from lungct_viewer.core.study import CTVolume, FolderScan, SeriesInfo

from .dialogs import Dialogs
from .workers import Worker, WorkerControl, WorkerPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preview:
    """One decoded slice of a series that is still loading."""

    index: int
    num_slices: int
    hu: np.ndarray


@dataclass(frozen=True)
class ScanResult:
    """A scanned folder: where, what it holds, and how long the scan took (s)."""

    folder: str
    scan: FolderScan
    seconds: float


@dataclass(frozen=True)
class LoadedStudy:
    """A series that finished loading, with where it came from."""

    path: str
    demo: bool
    scan: FolderScan
    info: SeriesInfo
    volume: CTVolume
    seconds: float
    #: files of the folder that may hold reference annotations (read after the series, on a
    #: worker, by :mod:`.references`; any that cannot be shown is reported then)
    reference_files: tuple[str, ...] = ()

    def warnings(self) -> list[str]:
        """Load warnings for the reader: the volume's repairs, then the skipped files (by name)
        that are not reference annotations."""
        refs = set(self.reference_files)
        skipped = [f"{Path(s.path).name}: {s.reason}" for s in self.scan.skipped if s.path not in refs]
        if len(skipped) > 200:
            skipped = skipped[:200] + [f"\u2026 and {len(skipped) - 200} more skipped files"]
        return [*self.volume.warnings, *skipped]


class LoadController(QtCore.QObject):
    """Scans and loads on workers (see module docstring)."""

    busy = Signal(str)  # indeterminate step ("Reading the folder...")
    started = Signal(int)  # loading a series of n slices
    progressed = Signal(int, int)
    preview = Signal(object)  # Preview
    loaded = Signal(object)  # LoadedStudy
    failed = Signal(str)  # a message for the reader
    cancelled = Signal()

    def __init__(self, pool: WorkerPool, dialogs: Dialogs, parent_widget: QtWidgets.QWidget) -> None:
        super().__init__(parent_widget)
        self._pool = pool
        self._dialogs = dialogs
        self._parent = parent_widget
        self._worker: Worker | None = None
        self._choosing = False

    def is_running(self) -> bool:
        return self._worker is not None or self._choosing

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def open(self, path: str | None, series_uid: str | None = None) -> None:
        """Open the study folder ``path`` (the demo study when None)."""
        self.cancel()
        self.busy.emit("Preparing the demo study\u2026" if path is None else "Reading the folder\u2026")

        def scan(control: WorkerControl):
            from lungct_viewer.core.demo import ensure_demo_study
            from lungct_viewer.core.dicom import scan_folder

            t0 = time.perf_counter()
            folder = str(path) if path is not None else str(ensure_demo_study())
            scan = scan_folder(folder, progress=control.progress, cancel=control.cancelled)
            return ScanResult(folder, scan, time.perf_counter() - t0)

        self._start("scan", scan, lambda w, res: self._on_scanned(w, res, series_uid, path is None))

    def _start(self, name: str, fn, on_returned, on_yielded=None) -> None:
        """Run ``fn``; signals of a worker that is no longer the current one are ignored."""

        def connect(w: Worker) -> None:
            w.progressed.connect(lambda d, n: self._is(w) and self.progressed.emit(d, n))
            w.cancelled.connect(lambda _e: self._is(w) and self._end(self.cancelled.emit))
            w.errored.connect(lambda exc: self._is(w) and self._end(lambda: self.failed.emit(_message(exc))))
            w.returned.connect(lambda res: on_returned(w, res))
            if on_yielded is not None:
                w.yielded.connect(lambda value: self._is(w) and on_yielded(value))

        self._worker = self._pool.start(name, fn, connect)

    def _is(self, w: Worker) -> bool:
        return self._worker is w

    def _end(self, emit) -> None:
        self._worker = None
        emit()

    def _on_scanned(self, w: Worker, res: ScanResult, series_uid: str | None, demo: bool) -> None:
        if not self._is(w):
            return
        self._worker = None
        try:
            info = self._choose(res.scan, series_uid)
        except StudyLoadError as exc:
            self.failed.emit(str(exc))
            return
        if info is None:
            self.cancelled.emit()
            return
        self._load(res, demo, info)

    def _choose(self, scan: FolderScan, series_uid: str | None) -> SeriesInfo | None:
        from lungct_viewer.core.dicom import select_series

        if series_uid or len(scan.series) <= 1:
            return select_series(scan, series_uid)
        series = list(scan.series)
        self._choosing = True
        try:
            k = self._dialogs.choose_series(
                self._parent, [s.summary() for s in series], series.index(scan.default_series())
            )
        finally:
            self._choosing = False
        return None if k is None else series[k]

    def _load(self, scanned: ScanResult, demo: bool, info: SeriesInfo) -> None:
        self.started.emit(info.num_slices)

        def load(control: WorkerControl):
            from lungct_viewer.core.dicom import load_series
            from lungct_viewer.core.references import reference_files

            t0 = time.perf_counter()
            if info.num_slices > 1 and len(info.files) == info.num_slices:
                # files are ordered head to feet: decode the middle one first, so a slice is
                # on screen while the rest of the series loads
                mid = info.num_slices // 2
                try:
                    one = dataclasses.replace(info, files=(info.files[mid],), num_slices=1)
                    yield Preview(mid, info.num_slices, load_series(one).hu[0])
                except LungCTError:
                    log.debug("preview slice failed", exc_info=True)
            volume = load_series(info, progress=control.progress, cancel=control.cancelled)
            seconds = scanned.seconds + time.perf_counter() - t0
            refs = tuple(reference_files(scanned.scan))
            return LoadedStudy(scanned.folder, demo, scanned.scan, info, volume, seconds, refs)

        self._start(
            "load",
            load,
            lambda w, study: self._is(w) and self._end(lambda: self.loaded.emit(study)),
            on_yielded=self.preview.emit,
        )


def dropped_folder(mime: QtCore.QMimeData) -> str | None:
    """The folder a drag and drop brings (a dropped file's folder), or None."""
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile():
            p = Path(url.toLocalFile())
            if p.exists():
                return str(p if p.is_dir() else p.parent)
    return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, LungCTError):
        return str(exc)
    log.error("opening the study failed: %s: %s", type(exc).__name__, exc)
    return f"The study could not be opened ({type(exc).__name__}: {exc})."
