"""Measuring on the slice: a ruler that reads millimetres and a circle that reads HU statistics.

Arm a tool (Tools menu, or L / C), then left-drag on the image: the ruler from end to end,
the circle from its centre outwards. Both stay on screen as pyqtgraph ROIs whose handles can
be dragged; the circle's statistics follow the slice as you scroll. The arithmetic is
:mod:`lungct_viewer.core.measure`.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui
from PySide6.QtCore import Signal

from lungct_viewer.core.measure import HUStats, circle_stats, segment_length_mm

from .slice_view import SliceView, TextTag

TOOL_RGB = (255, 220, 60)


class Tool(Enum):
    RULER = "ruler"
    CIRCLE = "circle"


class _Measurement:
    def __init__(self, roi: pg.ROI, tag: TextTag) -> None:
        self.roi = roi
        self.tag = tag
        self.text = ""


class MeasureTools(QtCore.QObject):
    """Rulers and circles on a :class:`SliceView` (see module docstring)."""

    changed = Signal()
    armedChanged = Signal(object)  # Tool | None

    def __init__(self, view: SliceView, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.armed: Tool | None = None
        self.rulers: list[_Measurement] = []
        self.circles: list[_Measurement] = []
        self._drawing: _Measurement | None = None
        self._hu: np.ndarray | None = None
        self._spacing = (1.0, 1.0)
        view.toolDragged.connect(self._on_drag)

    # -- state ----------------------------------------------------------------------------
    def arm(self, tool: Tool | None) -> None:
        """The next left-drag on the image draws ``tool`` (None: back to window/level)."""
        self.armed = tool
        self.view.vb.tool_armed = tool is not None
        shape = QtCore.Qt.CursorShape.CrossCursor if tool else QtCore.Qt.CursorShape.ArrowCursor
        self.view.setCursor(QtGui.QCursor(shape))
        self.armedChanged.emit(tool)

    def set_slice(self, hu: np.ndarray | None, pixel_spacing_mm: tuple[float, float]) -> None:
        """The slice the circles measure (after a scroll or a new study)."""
        self._hu = hu
        self._spacing = pixel_spacing_mm
        for m in self.rulers:
            self._update_ruler(m)
        for m in self.circles:
            self._update_circle(m)
        self.changed.emit()

    def clear(self) -> None:
        for m in self.rulers + self.circles:
            self.view.vb.removeItem(m.roi)
            self.view.vb.removeItem(m.tag)
        self.rulers.clear()
        self.circles.clear()
        self.changed.emit()

    def texts(self) -> list[str]:
        return [m.text for m in self.rulers + self.circles]

    # -- drawing --------------------------------------------------------------------------
    def _pen(self) -> QtGui.QPen:
        pen = pg.mkPen(TOOL_RGB, width=2)
        pen.setCosmetic(True)
        return pen

    def _new(self, roi: pg.ROI) -> _Measurement:
        roi.setZValue(20)
        tag = TextTag()
        tag.setZValue(21)
        self.view.vb.addItem(roi)
        self.view.vb.addItem(tag)
        return _Measurement(roi, tag)

    def add_ruler(self, start: tuple[float, float], end: tuple[float, float]) -> _Measurement:
        """A ruler from ``start`` to ``end`` (``(row, col)`` image pixels)."""
        roi = pg.LineSegmentROI([(start[1], start[0]), (end[1], end[0])], pen=self._pen())
        m = self._new(roi)
        roi.sigRegionChanged.connect(lambda _r, m=m: (self._update_ruler(m), self.changed.emit()))
        self.rulers.append(m)
        self._update_ruler(m)
        self.changed.emit()
        return m

    def add_circle(self, centre: tuple[float, float], radius_px: float) -> _Measurement:
        """A circle around ``centre`` (``(row, col)``) of ``radius_px`` image pixels."""
        r = max(float(radius_px), 0.5)
        roi = pg.CircleROI((centre[1] - r, centre[0] - r), (2 * r, 2 * r), pen=self._pen())
        m = self._new(roi)
        roi.sigRegionChanged.connect(lambda _r, m=m: (self._update_circle(m), self.changed.emit()))
        self.circles.append(m)
        self._update_circle(m)
        self.changed.emit()
        return m

    def _on_drag(self, start, end, finished: bool) -> None:
        if self.armed is None:
            return
        if self._drawing is None:
            if self.armed is Tool.RULER:
                self._drawing = self.add_ruler(start, end)
            else:
                self._drawing = self.add_circle(start, math.dist(start, end))
        elif self.armed is Tool.RULER:
            h0, h1 = self._drawing.roi.getHandles()
            self._drawing.roi.movePoint(h1, pg.Point(end[1], end[0]), finish=finished)
        else:
            r = max(math.dist(start, end), 0.5)
            self._drawing.roi.setPos((start[1] - r, start[0] - r), update=False)
            self._drawing.roi.setSize((2 * r, 2 * r), finish=finished)
        if finished:
            self._drawing = None
            self.arm(None)

    # -- readouts -------------------------------------------------------------------------
    def _ruler_ends(self, m: _Measurement) -> tuple[tuple[float, float], tuple[float, float]]:
        h = m.roi.getHandles()
        a, b = (m.roi.mapToParent(x.pos()) for x in h[:2])
        return (a.y(), a.x()), (b.y(), b.x())

    def _update_ruler(self, m: _Measurement) -> None:
        a, b = self._ruler_ends(m)
        m.text = f"{segment_length_mm(a, b, self._spacing):.1f} mm"
        m.tag.set_text(m.text, QtGui.QColor(*TOOL_RGB))
        top = a if a[0] <= b[0] else b
        m.tag.setPos(top[1], top[0])

    def circle_geometry(self, m: _Measurement) -> tuple[tuple[float, float], float]:
        """``((row, col) centre, radius px)`` of a circle."""
        pos, size = m.roi.pos(), m.roi.size()
        r = size[0] / 2.0
        return (pos.y() + r, pos.x() + r), r

    def circle_stats(self, m: _Measurement) -> HUStats | None:
        if self._hu is None:
            return None
        centre, r = self.circle_geometry(m)
        return circle_stats(self._hu, centre, r, self._spacing)

    def _update_circle(self, m: _Measurement) -> None:
        stats = self.circle_stats(m)
        m.text = "" if stats is None else stats.text()
        m.tag.set_text(m.text, QtGui.QColor(*TOOL_RGB))
        (row, col), r = self.circle_geometry(m)
        m.tag.setPos(col + r + 2, row + 6)  # beside the circle, clear of a ruler's label
