"""The reading area: patient banner, slice view, slice navigator and measuring tools, drawing
one :class:`~lungct_viewer.core.session.ReadingSession` at the current slice.

Everything drawn is asked of the session: ``red_mask`` (the findings' objects, or the vote
map), ``heatmap``, ``reference_outline`` (a reader's outlines), ``marks`` (lesion boxes and
texts) and ``slice_label`` (the findings strip). The keyboard's
single-key shortcuts belong to this widget (see :mod:`.actions`).
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

from lungct_viewer.core import constants as C
from lungct_viewer.core.session import ReadingSession

from .display_panel import DisplayOptions
from .loading import Preview
from .measure import MeasureTools, Tool
from .slice_view import SliceView
from .widgets import PatientBanner, SliceNavigator


class SliceViewer(QtWidgets.QWidget):
    """Shows the session's current slice with the chosen overlays (see module docstring)."""

    indexChanged = Signal(int)
    cursorText = Signal(str)  # HU and position under the mouse ("" outside the image)
    previewShown = Signal(int)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.banner = PatientBanner()
        self.view = SliceView()
        self.nav = SliceNavigator()
        self.tools = MeasureTools(self.view, self)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.nav)
        self.session: ReadingSession | None = None
        self.index = 0
        self.options = DisplayOptions(C.WINDOW_PRESETS["Lung"], False, True, "lesions", True, None, 0.4)
        self.include_candidates = False
        self.previewing = False
        self._step = 1
        self.view.wheelSlices.connect(self.step)
        self.nav.indexRequested.connect(self.set_index)
        self.view.cursorMoved.connect(lambda _pos: self.update_cursor())
        self._prefetch_timer = QtCore.QTimer(self, singleShot=True, interval=0)
        self._prefetch_timer.timeout.connect(self._prefetch)

    @property
    def num_slices(self) -> int:
        return 0 if self.session is None else self.session.volume.num_slices

    # -- what is shown ---------------------------------------------------------------------
    def set_session(self, session: ReadingSession | None, *, series: str = "", note: str = "") -> None:
        self.previewing = False
        self.session = session
        self.view.clear()
        self.tools.clear()
        if session is None:
            self.nav.set_count(0)
            self.banner.clear_study()
            self.update_cursor()
            return
        self.banner.set_study(session.volume, series, note)
        self.nav.set_count(session.volume.num_slices)
        self.index = -1
        self.set_index(session.volume.num_slices // 2)
        self.view.reset_view()
        self.refresh_strip()

    def set_options(self, options: DisplayOptions, include_candidates: bool) -> None:
        self.options = options
        self.include_candidates = include_candidates
        self.view.set_window(*options.window)
        self.view.set_inverted(options.inverted)
        self.refresh()
        self.refresh_strip()

    def show_preview(self, preview: Preview) -> None:
        """A slice of a series that is still loading (navigation waits until it has)."""
        self.previewing = True
        self.view.clear()
        self.view.set_slice(preview.hu)
        self.nav.show_loading(preview.index, preview.num_slices)
        self.previewShown.emit(preview.index)

    def end_preview(self) -> None:
        """The load was cancelled or failed: back to the study that was open (or nothing)."""
        if self.previewing:
            self.set_session(self.session)

    # -- navigation ------------------------------------------------------------------------
    def set_index(self, index: int) -> None:
        if self.session is None or self.previewing:
            return
        index = int(max(0, min(self.num_slices - 1, index)))
        if index == self.index:
            return
        self._step = 1 if index >= self.index else -1
        self.index = index
        vol = self.session.volume
        self.view.set_slice(vol.hu[index])
        self.nav.show_index(index, vol.num_slices, float(vol.slice_positions_mm[index]))
        self.tools.set_slice(vol.hu[index], vol.pixel_spacing_mm)
        self.refresh()
        self.update_cursor()
        self._prefetch_timer.start()
        self.indexChanged.emit(index)

    def step(self, delta: int) -> None:
        self.set_index(self.index + delta)

    def go_to_end(self, end: int) -> None:
        """The first slice (``end`` < 0) or the last."""
        self.set_index(0 if end < 0 else self.num_slices - 1)

    def arm_tool(self, name: str) -> None:
        """The next left-drag on the image draws a ruler ("ruler") or a circle ("circle")."""
        self.tools.arm(Tool(name))

    def centre_on(self, row: float, col: float) -> None:
        self.view.centre_on(row, col)

    # -- drawing ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Draw the session's overlays of the current slice."""
        s, i, o = self.session, self.index, self.options
        if s is None or self.previewing or not 0 <= i < self.num_slices:
            return
        self.view.set_roi(s.red_mask(i, o.red, self.include_candidates) if o.show_roi else None)
        self.view.set_heatmap(s.heatmap(i, o.heat_kind) if o.heat_kind else None, o.heat_opacity)
        self.view.set_references(s.reference_outline(i) if o.show_references else None)
        self.view.set_marks(s.marks(i, self.include_candidates) if o.show_marks else [])

    def refresh_strip(self) -> None:
        """Analysed slices, slices with findings and slices with reference outlines along the
        slider."""
        s = self.session
        if s is None:
            return
        self.nav.strip.set_analysed(s.analysis.slices.keys())
        marks = {}
        if s.candidates_ready:
            marks = {i: lab for i in range(s.volume.num_slices) if (lab := s.slice_label(i)) is not None}
        self.nav.strip.set_marks(marks)
        shown = s.references if self.options.show_references else ()
        self.nav.strip.set_references(k for ref in shown for k in ref.slices)

    def _prefetch(self) -> None:
        """While idle, compute the heatmap of the next slice in the scrolling direction."""
        s, kind = self.session, self.options.heat_kind
        i = self.index + self._step
        if s is not None and kind and 0 <= i < self.num_slices:
            s.heatmap(i, kind)

    # -- cursor readout --------------------------------------------------------------------
    def update_cursor(self) -> None:
        """The HU readout of the pixel under the mouse on the slice now shown (a wheel scroll
        changes the slice under a still mouse)."""
        pos = self.view.cursor()
        if self.session is None or self.previewing or pos is None:
            self.cursorText.emit("")
            return
        self.cursorText.emit(self.cursor_text(*pos))

    def cursor_text(self, row: float, col: float) -> str:
        vol = self.session.volume
        r, c = int(row), int(col)
        hu = int(vol.hu[self.index, r, c])
        x, y, z = vol.pixel_to_patient_mm(self.index, r, c)
        return f"HU {hu:+d}    pixel (row {r}, col {c})    patient x {x:.1f}, y {y:.1f}, z {z:.1f} mm"
