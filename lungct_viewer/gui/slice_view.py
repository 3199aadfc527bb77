"""The central axial slice view: HU image with window/level, ROI, heatmap and reference
overlays, lesion marks.

Mouse (as Weasis / OHIF): wheel scrolls slices; left-drag changes window (horizontal) and
level (vertical); middle-drag pans; right-drag zooms. With a measuring tool armed, a left-drag
draws the ruler or the circle instead (see :mod:`.measure`).

The view draws only what it is given -- the HU slice, the session's boolean red mask, a
heatmap in [0, 1], the reference outlines (boolean) and the session's
:class:`~lungct_viewer.core.session.Mark` objects, all in native pixels -- with the
colours, boxes and texts of :mod:`lungct_viewer.core.labels` and
:mod:`lungct_viewer.core.render`, so the screen and the exported PNG agree. It computes
nothing about the study.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from lungct_viewer.core import constants as C
from lungct_viewer.core.labels import REFERENCE_RGB, ROI_ALPHA, ROI_RGB, heat_colours
from lungct_viewer.core.render import mark_box, mark_rgb
from lungct_viewer.core.session import Mark

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

#: RGBA of the ROI overlay: the PNG's red and opacity (:mod:`lungct_viewer.core.labels`).
ROI_RGBA = (*ROI_RGB, int(round(ROI_ALPHA * 255)))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` end-exclusive bounding box of a boolean mask (drawing only the box
    keeps painting cheap); None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _show_mask(item: pg.ImageItem, mask: np.ndarray | None) -> np.ndarray | None:
    """Show a boolean mask through ``item``'s two-colour lookup table, only over its bounding
    box; returns the mask shown (None: hidden)."""
    box = None if mask is None else _bbox(mask)
    if box is None:
        item.clear()
        item.setVisible(False)
        return None
    y0, y1, x0, x1 = box
    item.setImage(mask[y0:y1, x0:x1].view(np.uint8), autoLevels=False, levels=(0, 1))
    item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
    item.setVisible(True)
    return mask


class _ViewBox(pg.ViewBox):
    """ViewBox with radiology mouse bindings; emits intents, the owner decides."""

    sigWindowDrag = Signal(float, float)  # screen dx, dy in pixels
    sigWheelSlices = Signal(int)  # +1 = next slice (towards the feet)
    sigToolDrag = Signal(object, object, bool)  # start (x, y), end (x, y) in image pixels, finished

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._wheel_acc = 0.0
        self.tool_armed = False

    def wheelEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        self._wheel_acc += delta
        steps = int(self._wheel_acc / 120)
        if steps == 0 and delta != 0 and abs(delta) < 120:
            return ev.accept()  # high-resolution wheels: wait for a whole notch
        self._wheel_acc -= steps * 120
        if steps:
            self.sigWheelSlices.emit(-steps)
        ev.accept()

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        btn = ev.button()
        if btn == Qt.MouseButton.LeftButton and self.tool_armed:
            ev.accept()
            a, b = self.mapToView(ev.buttonDownPos()), self.mapToView(ev.pos())
            self.sigToolDrag.emit((a.x(), a.y()), (b.x(), b.y()), bool(ev.isFinish()))
        elif btn == Qt.MouseButton.LeftButton:
            ev.accept()
            d = ev.screenPos() - ev.lastScreenPos()
            if d.x() or d.y():
                self.sigWindowDrag.emit(float(d.x()), float(d.y()))
        elif btn == Qt.MouseButton.MiddleButton:
            ev.accept()
            tr = self.mapToView(ev.pos()) - self.mapToView(ev.lastPos())
            self.translateBy(x=-tr.x(), y=-tr.y())
        elif btn == Qt.MouseButton.RightButton:
            ev.accept()
            dy = (ev.screenPos() - ev.lastScreenPos()).y()
            s = 1.01**dy
            centre = self.mapToView(ev.buttonDownPos())
            self.scaleBy((s, s), center=centre)
        else:
            ev.ignore()

    def mouseClickEvent(self, ev):  # noqa: N802  (no context menu, no auto-range)
        ev.accept()


class TextTag(QtWidgets.QGraphicsRectItem):
    """Text on a dark box, constant size on screen, drawn above its anchor point.

    Built from plain Qt items (no Python ``paint``), so painting stays in C++.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setBrush(QtGui.QBrush(QtGui.QColor(0, 0, 0, 170)))
        self.setPen(QtGui.QPen(Qt.PenStyle.NoPen))
        self._text = QtWidgets.QGraphicsSimpleTextItem(self)
        f = self._text.font()
        f.setPointSizeF(max(8.0, f.pointSizeF()))
        self._text.setFont(f)

    def set_text(self, text: str, colour: QtGui.QColor) -> None:
        self._text.setText(text)
        self._text.setBrush(QtGui.QBrush(colour))
        br = self._text.boundingRect()
        self._text.setPos(3, -br.height() - 2)
        self.setRect(QtCore.QRectF(0, -br.height() - 4, br.width() + 6, br.height() + 4))

    def toPlainText(self) -> str:  # noqa: N802 (Qt naming)
        return self._text.text()

    def colour(self) -> QtGui.QColor:
        return self._text.brush().color()


class SliceView(pg.GraphicsView):
    """Displays one slice with overlays. Signals carry user intents to the owner."""

    windowDragged = Signal(float, float)
    wheelSlices = Signal(int)
    cursorMoved = Signal(object)  # (row, col) floats, or None when outside the image
    toolDragged = Signal(object, object, bool)  # (row, col) start, (row, col) end, finished

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent, background="k")
        self.setMinimumSize(320, 320)
        self.vb = _ViewBox()
        self.setCentralItem(self.vb)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item = pg.ImageItem(axisOrder="row-major")
        self.roi_item = pg.ImageItem(axisOrder="row-major")
        self.ref_item = pg.ImageItem(axisOrder="row-major")
        for z, item in enumerate((self.image_item, self.heat_item, self.roi_item, self.ref_item)):
            item.setZValue(z)
            self.vb.addItem(item)
        for item, rgba in ((self.roi_item, ROI_RGBA), (self.ref_item, (*REFERENCE_RGB, 255))):
            lut = np.zeros((2, 4), dtype=np.ubyte)
            lut[1] = rgba
            item.setLookupTable(lut)
        self._grey = np.repeat(np.arange(256, dtype=np.ubyte)[:, None], 3, axis=1)
        self._grey_inv = self._grey[::-1].copy()
        self.image_item.setLookupTable(self._grey)
        self.mark_items: list[tuple[QtWidgets.QGraphicsRectItem, TextTag]] = []
        self.marks: list[Mark] = []
        self.roi_mask: np.ndarray | None = None
        self.reference_mask: np.ndarray | None = None
        self.heatmap: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._window = C.WINDOW_PRESETS["Lung"]
        self._cursor: tuple[float, float] | None = None
        self.vb.sigWindowDrag.connect(self.windowDragged)
        self.vb.sigWheelSlices.connect(self.wheelSlices)
        self.vb.sigToolDrag.connect(lambda a, b, done: self.toolDragged.emit((a[1], a[0]), (b[1], b[0]), done))
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)  # the main window takes drops

    # -- content -------------------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int] | None:
        return self._shape

    def set_slice(self, hu: np.ndarray) -> None:
        """Show a native HU slice ``(rows, cols)`` with the current window."""
        first = self._shape != hu.shape
        self._shape = hu.shape
        self.image_item.setImage(hu, autoLevels=False, levels=self._levels())
        if first:
            self.reset_view()

    def set_window(self, width: float, level: float) -> None:
        self._window = (max(1.0, float(width)), float(level))
        self.image_item.setLevels(self._levels())

    def _levels(self) -> tuple[float, float]:
        w, lvl = self._window
        return (lvl - w / 2.0, lvl + w / 2.0)

    def set_inverted(self, inverted: bool) -> None:
        self.image_item.setLookupTable(self._grey_inv if inverted else self._grey)

    def set_roi(self, mask: np.ndarray | None) -> None:
        """Red semi-transparent overlay of a boolean native mask (None or empty: hidden)."""
        self.roi_mask = _show_mask(self.roi_item, mask)

    def set_references(self, outline: np.ndarray | None) -> None:
        """Reference outlines (boolean native mask), opaque in the reference colour as in the
        PNG (None or empty: hidden)."""
        self.reference_mask = _show_mask(self.ref_item, outline)

    def set_heatmap(self, heat: np.ndarray | None, opacity: float = 0.4) -> None:
        """Class heatmap in [0, 1] over native pixels (None: hidden), coloured as the PNG."""
        self.heatmap = heat
        box = None if heat is None else _bbox(heat > 0.0)
        if box is None:
            self.heat_item.clear()
            self.heat_item.setVisible(False)
            return
        y0, y1, x0, x1 = box
        rgb, covered = heat_colours(heat[y0:y1, x0:x1])
        rgba = np.dstack([rgb, np.where(covered, 255, 0).astype(np.uint8)])
        self.heat_item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.heat_item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        self.heat_item.setOpacity(float(opacity))
        self.heat_item.setVisible(True)

    def set_heat_opacity(self, opacity: float) -> None:
        self.heat_item.setOpacity(float(opacity))

    def set_marks(self, marks: Sequence[Mark]) -> None:
        """Outline and label lesions as the PNG does (boxes are reused between slices)."""
        self.marks = list(marks)
        while len(self.mark_items) < len(self.marks):
            rect = QtWidgets.QGraphicsRectItem()
            rect.setZValue(10)
            tag = TextTag()
            tag.setZValue(11)
            self.vb.addItem(rect)
            self.vb.addItem(tag)
            self.mark_items.append((rect, tag))
        for k, (rect, tag) in enumerate(self.mark_items):
            if k >= len(self.marks) or self._shape is None:
                rect.setVisible(False)
                tag.setVisible(False)
                continue
            m = self.marks[k]
            colour = QtGui.QColor(*mark_rgb(m))
            x0, y0, x1, y1 = mark_box(m, self._shape)  # inclusive pixel box, as the PNG
            pen = pg.mkPen(colour, width=2)
            pen.setCosmetic(True)
            rect.setPen(pen)
            rect.setRect(QtCore.QRectF(x0, y0, x1 - x0 + 1, y1 - y0 + 1))
            tag.set_text(m.text, colour)
            tag.setPos(x0, y0)
            rect.setVisible(True)
            tag.setVisible(True)

    def clear(self) -> None:
        self.image_item.clear()
        self.set_roi(None)
        self.set_references(None)
        self.set_heatmap(None)
        self.set_marks([])
        self._shape = None

    # -- navigation ----------------------------------------------------------------------
    def reset_view(self) -> None:
        if self._shape is None:
            return
        rows, cols = self._shape
        self.vb.setRange(QtCore.QRectF(0, 0, cols, rows), padding=0.01)

    def centre_on(self, row: float, col: float) -> None:
        rect = self.vb.viewRect()
        w, h = rect.width(), rect.height()
        self.vb.setRange(xRange=(col - w / 2.0, col + w / 2.0), yRange=(row - h / 2.0, row + h / 2.0), padding=0)

    def view_centre(self) -> tuple[float, float]:
        c = self.vb.viewRect().center()
        return (c.y(), c.x())

    def cursor(self) -> tuple[float, float] | None:
        """The image pixel ``(row, col)`` under the mouse, or None (outside, or no image)."""
        return self._cursor

    def _on_mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        self._cursor = None
        if self._shape is not None and self.vb.sceneBoundingRect().contains(scene_pos):
            p = self.vb.mapSceneToView(scene_pos)
            row, col = p.y(), p.x()
            if 0 <= row < self._shape[0] and 0 <= col < self._shape[1]:
                self._cursor = (row, col)
        self.cursorMoved.emit(self._cursor)

    def leaveEvent(self, ev: QtCore.QEvent) -> None:  # noqa: N802
        self._cursor = None
        self.cursorMoved.emit(None)
        super().leaveEvent(ev)
