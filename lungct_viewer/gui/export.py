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
        out = self._folder(out_dir, source_dir)
        if out is None:
            return
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

    def export_dicom(
        self, session: ReadingSession, info, out_dir: str | Path | None, *, source_dir: str | None
    ) -> None:
        """The findings as a DICOM Segmentation and a TID 1500 measurement report
        (:mod:`lungct_viewer.core.dicom_out`); ``info`` is the series' ``SeriesInfo``."""
        if self.is_running():
            self.failed.emit("Export running", "An export is already running; wait for it or cancel it (Esc).")
            return
        if info is None or not session.findings():
            self._refuse(
                "Nothing to export",
                "There are no findings at the current settings, so there is no "
                "DICOM Segmentation or measurement report to write.",
            )
            return
        by_uid = {h.sop_uid: h.path for h in info.headers}
        missing = [u for u in session.volume.sop_instance_uids if u not in by_uid]
        if missing:
            self._refuse("Cannot export DICOM", "The source files of this series could not be found again.")
            return
        out = self._folder(out_dir, source_dir)
        if out is None:
            return
        from lungct_viewer.core.dicom_out import SEG_FILENAME, SR_FILENAME, series_results, write_dicom_results

        existing = [out / n for n in (SEG_FILENAME, SR_FILENAME) if (out / n).exists()]
        if existing and not self._dialogs.question(
            self._parent, "Replace existing files?", f"{existing[0].name} already exists in {out}. Replace it?"
        ):
            self.finished.emit(None)
            return
        snap = session.snapshot()
        files = [by_uid[u] for u in session.volume.sop_instance_uids]

        def run(control: WorkerControl):
            res = write_dicom_results(series_results(snap, files), out)
            return [res.seg_path, res.sr_path]

        self.started.emit(2)

        def connect(w: Worker) -> None:
            w.returned.connect(lambda paths: self._done([Path(p) for p in paths]))
            w.cancelled.connect(lambda _e: self._done(None))
            w.errored.connect(self._failed)

        self._worker = self._pool.start("export-dicom", run, connect)

    def _folder(self, out_dir: str | Path | None, source_dir: str | None) -> Path | None:
        """The export folder: ``out_dir``, else asked; ``None`` when the reader gave none or it
        lies inside the study's folder (refused, with the reason)."""
        if out_dir is None:
            out_dir = self._dialogs.export_folder(self._parent, self._settings.export_dir)
            if not out_dir:
                return None
        out = Path(out_dir)
        if source_dir and is_within(out, source_dir):
            self._refuse(
                "Choose another folder", "The viewer never writes into the study's folder; please choose another one."
            )
            return None
        self._settings.export_dir = str(out)
        return out

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
