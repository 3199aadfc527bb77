"""The central axial slice view: HU image with window/level, ROI and heatmap overlays.

Mouse (as Weasis / OHIF): wheel scrolls slices; left-drag changes window (horizontal) and
level (vertical); middle-drag pans; right-drag zooms. The view draws only what it is given:
the HU slice, a boolean ROI mask, a heatmap in [0, 1] and finding boxes (all in native
pixels, ``[row, col]``). It computes nothing about the study.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

#: Colour of the ROI overlay (RGBA); alpha makes it semi-transparent.
ROI_RGBA = (255, 30, 30, 115)
#: Outline colours of findings by class.
FINDING_COLOURS = {"malignant": "#ffb000", "benign": "#34c6ff"}


def heatmap_colormap() -> pg.ColorMap:
    """Colour map of the class heatmap: transparent dark blue at 0 to opaque yellow at 1."""
    pos = np.array([0.0, 0.15, 0.4, 0.7, 1.0])
    col = np.array(
        [
            [20, 20, 120, 0],
            [40, 40, 200, 90],
            [170, 40, 190, 170],
            [250, 110, 30, 215],
            [255, 240, 60, 240],
        ],
        dtype=np.ubyte,
    )
    return pg.ColorMap(pos, col)


@dataclass(frozen=True)
class FindingMark:
    """What the view needs to draw one finding: native box, class and a short label."""

    bbox_px: tuple[int, int, int, int]  # x0, y0, x1, y1 end-exclusive
    kind: str  # "malignant" | "benign"
    text: str


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` end-exclusive bounding box of a boolean mask, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class _ViewBox(pg.ViewBox):
    """ViewBox with radiology mouse bindings; emits intents, the owner decides."""

    sigWindowDrag = Signal(float, float)  # screen dx, dy in pixels
    sigWheelSlices = Signal(int)  # +1 = next slice (towards the feet)

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._wheel_acc = 0.0

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
        if btn == Qt.MouseButton.LeftButton:
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


class _Label(QtWidgets.QGraphicsRectItem):
    """A finding label: text on a dark box, constant size on screen, above its anchor.

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

    def set_text(self, text: str, colour: str) -> None:
        self._text.setText(text)
        self._text.setBrush(QtGui.QBrush(QtGui.QColor(colour)))
        br = self._text.boundingRect()
        self._text.setPos(3, -br.height() - 2)
        self.setRect(QtCore.QRectF(0, -br.height() - 4, br.width() + 6, br.height() + 4))

    def toPlainText(self) -> str:  # noqa: N802 (Qt naming, used by tests)
        return self._text.text()


class SliceView(pg.GraphicsView):
    """Displays one slice with overlays. Signals carry user intents to the main window."""

    windowDragged = Signal(float, float)
    wheelSlices = Signal(int)
    cursorMoved = Signal(object)  # (row, col) floats, or None when outside the image

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent, background="k")
        self.setMinimumSize(320, 320)
        self.vb = _ViewBox()
        self.setCentralItem(self.vb)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item = pg.ImageItem(axisOrder="row-major")
        self.roi_item = pg.ImageItem(axisOrder="row-major")
        for z, item in enumerate((self.image_item, self.heat_item, self.roi_item)):
            item.setZValue(z)
            self.vb.addItem(item)
        self.heat_item.setLookupTable(heatmap_colormap().getLookupTable(0.0, 1.0, 256, alpha=True))
        lut = np.zeros((2, 4), dtype=np.ubyte)
        lut[1] = ROI_RGBA
        self.roi_item.setLookupTable(lut)
        self._grey = np.repeat(np.arange(256, dtype=np.ubyte)[:, None], 3, axis=1)
        self._grey_inv = self._grey[::-1].copy()
        self.image_item.setLookupTable(self._grey)
        self._marks: list[tuple[QtWidgets.QGraphicsRectItem, _Label]] = []
        self.roi_mask: np.ndarray | None = None
        self.heatmap: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._window = (1500.0, -600.0)
        self._inverted = False
        self.vb.sigWindowDrag.connect(self.windowDragged)
        self.vb.sigWheelSlices.connect(self.wheelSlices)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)  # the main window takes drops

    # -- content -------------------------------------------------------------------------
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
        self._inverted = bool(inverted)
        self.image_item.setLookupTable(self._grey_inv if inverted else self._grey)

    def set_roi(self, mask: np.ndarray | None) -> None:
        """Red semi-transparent overlay of a boolean native mask (None or empty: hidden)."""
        box = None if mask is None else _bbox(mask)
        if box is None:
            self.roi_item.clear()
            self.roi_item.setVisible(False)
            self.roi_mask = None
            return
        self.roi_mask = mask
        y0, y1, x0, x1 = box  # only the mask's bounding box is drawn: painting stays cheap
        self.roi_item.setImage(mask[y0:y1, x0:x1].view(np.uint8), autoLevels=False, levels=(0, 1))
        self.roi_item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        self.roi_item.setVisible(True)

    def set_heatmap(self, heat: np.ndarray | None, opacity: float = 0.6) -> None:
        """Class heatmap in [0, 1] over native pixels (None: hidden)."""
        box = None if heat is None else _bbox(heat > 0.02)
        self.heatmap = heat
        if box is None:
            self.heat_item.clear()
            self.heat_item.setVisible(False)
            return
        y0, y1, x0, x1 = box
        self.heat_item.setImage(heat[y0:y1, x0:x1], autoLevels=False, levels=(0.0, 1.0))
        self.heat_item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        self.heat_item.setOpacity(float(opacity))
        self.heat_item.setVisible(True)

    def set_heat_opacity(self, opacity: float) -> None:
        self.heat_item.setOpacity(float(opacity))

    def set_findings(self, marks: list[FindingMark]) -> None:
        """Outline and label findings (boxes are reused between slices)."""
        while len(self._marks) < len(marks):
            rect = QtWidgets.QGraphicsRectItem()
            rect.setZValue(10)
            text = _Label()
            text.setZValue(11)
            self.vb.addItem(rect)
            self.vb.addItem(text)
            self._marks.append((rect, text))
        for k, (rect, text) in enumerate(self._marks):
            if k >= len(marks):
                rect.setVisible(False)
                text.setVisible(False)
                continue
            m = marks[k]
            x0, y0, x1, y1 = m.bbox_px
            pad = 3
            colour = FINDING_COLOURS.get(m.kind, "#ffffff")
            pen = pg.mkPen(colour, width=2)
            pen.setCosmetic(True)
            rect.setPen(pen)
            rect.setRect(QtCore.QRectF(x0 - pad, y0 - pad, (x1 - x0) + 2 * pad, (y1 - y0) + 2 * pad))
            text.set_text(m.text, colour)
            text.setPos(x0 - pad, y0 - pad)
            rect.setVisible(True)
            text.setVisible(True)

    def clear(self) -> None:
        self.image_item.clear()
        self.set_roi(None)
        self.set_heatmap(None)
        self.set_findings([])
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
        self.vb.setRange(
            xRange=(col - w / 2.0, col + w / 2.0), yRange=(row - h / 2.0, row + h / 2.0), padding=0
        )

    def view_centre(self) -> tuple[float, float]:
        c = self.vb.viewRect().center()
        return (c.y(), c.x())

    def _on_mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if self._shape is None or not self.vb.sceneBoundingRect().contains(scene_pos):
            self.cursorMoved.emit(None)
            return
        p = self.vb.mapSceneToView(scene_pos)
        row, col = p.y(), p.x()
        rows, cols = self._shape
        if 0 <= row < rows and 0 <= col < cols:
            self.cursorMoved.emit((row, col))
        else:
            self.cursorMoved.emit(None)

    def leaveEvent(self, ev: QtCore.QEvent) -> None:  # noqa: N802
        self.cursorMoved.emit(None)
        super().leaveEvent(ev)


class HeatmapLegend(QtWidgets.QWidget):
    """A horizontal colour bar 0..1 for the heatmap, with a caption."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._caption = "P(malignant)"
        self._lut = heatmap_colormap().getLookupTable(0.0, 1.0, 64, alpha=True)
        self.setMinimumHeight(34)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)

    def set_caption(self, caption: str) -> None:
        self._caption = caption
        self.update()

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QtGui.QPainter(self)
        r = self.rect().adjusted(4, 2, -4, -18)
        # checkerboard-free dark backing so transparency reads as "low"
        p.fillRect(r, QtGui.QColor(0, 0, 0))
        grad = QtGui.QLinearGradient(r.left(), 0, r.right(), 0)
        n = len(self._lut)
        for k, c in enumerate(self._lut):
            grad.setColorAt(k / (n - 1), QtGui.QColor(int(c[0]), int(c[1]), int(c[2]), int(c[3])))
        p.fillRect(r, QtGui.QBrush(grad))
        p.setPen(self.palette().color(QtGui.QPalette.ColorRole.WindowText))
        y = r.bottom() + 14
        p.drawText(r.left(), y, "0")
        fm = p.fontMetrics()
        p.drawText(r.right() - fm.horizontalAdvance("1"), y, "1")
        cw = fm.horizontalAdvance(self._caption)
        p.drawText(r.center().x() - cw // 2, y, self._caption)
        p.end()
