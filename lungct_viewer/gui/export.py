"""Exporting the reading on screen: annotated PNGs and ``report.json`` through
:func:`lungct_viewer.core.export.export_reading`, on a worker.

The export works on a :meth:`~lungct_viewer.core.session.ReadingSession.snapshot` taken when
it starts, so what is written is what was on screen then, whatever the reader does meanwhile.
``report.json`` and the PNGs carry no patient name, ID or file path unless the reader ticked
File > Export > Include patient name and ID.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

from lungct_viewer.core.errors import ExportError, LungCTError
from lungct_viewer.core.export import ImageOptions, existing_outputs, export_reading, is_within
from lungct_viewer.core.report import build_report
from lungct_viewer.core.session import ReadingSession

from .dialogs import Dialogs
from .display_panel import DisplayOptions
from .settings import ViewerSettings
from .workers import Worker, WorkerControl, WorkerPool

log = logging.getLogger(__name__)


def export_indices(session: ReadingSession, mode: str, current: int) -> list[int]:
    """The slices an export ``mode`` ("current", "findings" or "all") writes."""
    if mode == "current":
        return [current]
    if mode == "findings":
        return session.slices_with_findings()
    if mode == "all":
        return list(range(session.volume.num_slices))
    raise ValueError(f"unknown export mode {mode!r}")


def image_options(display: DisplayOptions, include_candidates: bool, include_identifiers: bool) -> ImageOptions:
    """The PNGs drawn as the screen is: window, heatmap, ROI overlay, candidates, reference
    outlines."""
    return ImageOptions(
        window=display.window,
        heatmap_kind=display.heat_kind,
        heatmap_opacity=display.heat_opacity,
        show_roi=display.show_roi,
        roi_source=display.red,
        include_candidates=include_candidates,
        include_patient_name=include_identifiers,
        show_references=display.show_references,
    )


class ExportController(QtCore.QObject):
    """Asks where, refuses the DICOM folder, asks before replacing files, then exports."""

    started = Signal(int)  # files to write
    progressed = Signal(int, int)
    finished = Signal(object)  # list[Path] written, or None (cancelled, refused or failed)
    failed = Signal(str, str)  # title, message

    def __init__(
        self, pool: WorkerPool, dialogs: Dialogs, settings: ViewerSettings, parent_widget: QtWidgets.QWidget
    ) -> None:
        super().__init__(parent_widget)
        self._pool = pool
        self._dialogs = dialogs
        self._settings = settings
        self._parent = parent_widget
        self._worker: Worker | None = None
        self.last_written: list[Path] | None = None

    def is_running(self) -> bool:
        return self._worker is not None

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def export(
        self,
        session: ReadingSession,
        indices: Sequence[int],
        out_dir: str | Path | None,
        *,
        options: ImageOptions,
        source_dir: str | None,
        warnings: Sequence[str],
        model_path: str,
    ) -> None:
        """Export ``indices`` of ``session`` (asks for the folder when ``out_dir`` is None)."""
        if self.is_running():
            self.failed.emit("Export running", "An export is already running; wait for it or cancel it (Esc).")
            return
        if not indices:
            self._refuse("Nothing to export", "No slice has a finding at the current settings.")
            return
        if out_dir is None:
            out_dir = self._dialogs.export_folder(self._parent, self._settings.export_dir)
            if not out_dir:
                return
        out = Path(out_dir)
        if source_dir and is_within(out, source_dir):
            self._refuse(
                "Choose another folder", "The viewer never writes into the study's folder; please choose another one."
            )
            return
        self._settings.export_dir = str(out)
        existing = existing_outputs(out, session.volume, indices, report=True)
        overwrite = False
        if existing:
            names = ", ".join(p.name for p in existing[:3]) + (" \u2026" if len(existing) > 3 else "")
            if not self._dialogs.question(
                self._parent,
                "Replace existing files?",
                f"{len(existing)} file(s) already exist in {out} ({names}). Replace them?",
            ):
                self.finished.emit(None)
                return
            overwrite = True
        snap = session.snapshot()
        ident = options.include_patient_name
        indices = list(indices)

        def run(control: WorkerControl):
            report = build_report(
                snap,
                warnings=list(warnings),
                include_identifiers=ident,
                source=str(Path(source_dir).resolve()) if ident and source_dir else None,
                model_path=str(Path(model_path).resolve()) if ident else None,
            )
            return export_reading(
                snap,
                out,
                indices,
                report=report,
                source_dir=source_dir,
                overwrite=overwrite,
                options=options,
                progress=control.progress,
                should_cancel=control.cancelled,
            )

        self.started.emit(len(indices))

        def connect(w: Worker) -> None:
            w.progressed.connect(self.progressed)
            w.returned.connect(lambda paths: self._done([Path(p) for p in paths]))
            w.cancelled.connect(lambda _e: self._done(None))
            w.errored.connect(self._failed)

        self._worker = self._pool.start("export", run, connect)

    def _refuse(self, title: str, text: str) -> None:
        self.failed.emit(title, text)
        self.finished.emit(None)

    def _done(self, paths: list[Path] | None) -> None:
        self._worker = None
        self.last_written = paths
        self.finished.emit(paths)

    def _failed(self, exc: BaseException) -> None:
        self._worker = None
        self.last_written = None
        if isinstance(exc, (ExportError, LungCTError)):
            msg = str(exc)
        else:
            log.error("the export failed: %s: %s", type(exc).__name__, exc)
            msg = f"The export failed ({type(exc).__name__}: {exc})."
        self.failed.emit("Export failed", msg)
        self.finished.emit(None)
