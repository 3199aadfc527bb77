"""Small widgets: the findings strip along the slice slider and a task progress box."""

from __future__ import annotations

import time

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal


class FindingsStrip(QtWidgets.QWidget):
    """A thin bar under the slice slider: analysed slices in grey, findings as coloured ticks.

    Clicking the strip jumps to the slice under the mouse.
    """

    sliceClicked = Signal(int)

    COLOURS = {"malignant": QtGui.QColor("#ffb000"), "benign": QtGui.QColor("#34c6ff")}

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._n = 0
        self._analysed: set[int] = set()
        self._marks: dict[int, str] = {}
        self._current = 0
        self.setFixedHeight(12)
        self.setToolTip("Slices with findings (orange: malignant, blue: benign); grey: analysed")

    def set_count(self, n: int) -> None:
        self._n = int(n)
        self._analysed.clear()
        self._marks.clear()
        self.update()

    def set_analysed(self, indices) -> None:
        self._analysed = set(indices)
        self.update()

    def set_marks(self, marks: dict[int, str]) -> None:
        """``{slice index: "malignant" | "benign"}`` (the worst finding of each slice)."""
        self._marks = dict(marks)
        self.update()

    def marks(self) -> dict[int, str]:
        return dict(self._marks)

    def set_current(self, index: int) -> None:
        self._current = int(index)
        self.update()

    def _x(self, i: float) -> float:
        w = self.width() - 2
        return 1 + (i + 0.5) * w / max(1, self._n)

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor(30, 30, 34))
        if self._n <= 0:
            p.end()
            return
        h = self.height()
        step = (self.width() - 2) / self._n
        grey = QtGui.QColor(75, 75, 82)
        for i in self._analysed:
            p.fillRect(QtCore.QRectF(1 + i * step, h - 4, max(1.0, step), 4), grey)
        for i, kind in self._marks.items():
            x = self._x(i)
            p.fillRect(QtCore.QRectF(x - max(1.0, step / 2), 0, max(2.0, step), h - 4), self.COLOURS.get(kind, Qt.GlobalColor.white))
        p.setPen(QtGui.QPen(QtGui.QColor(230, 230, 230), 1))
        x = self._x(self._current)
        p.drawLine(QtCore.QPointF(x, 0), QtCore.QPointF(x, h))
        p.end()

    def mousePressEvent(self, ev: QtGui.QMouseEvent) -> None:  # noqa: N802
        if self._n > 0:
            i = int((ev.position().x() - 1) / max(1e-6, (self.width() - 2) / self._n))
            self.sliceClicked.emit(max(0, min(self._n - 1, i)))


class TaskProgress(QtWidgets.QWidget):
    """Label + progress bar (done/total, time left) + cancel button, for the status bar."""

    cancelRequested = Signal()

    def __init__(self, name: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._name = name
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QtWidgets.QLabel(name)
        self.bar = QtWidgets.QProgressBar()
        self.bar.setFixedWidth(180)
        self.bar.setTextVisible(True)
        self.cancel_button = QtWidgets.QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self.cancelRequested)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_button)
        self._t0 = 0.0
        self._first_done = 0
        self.setVisible(False)

    def start(self, total: int, text: str | None = None) -> None:
        self._t0 = time.monotonic()
        self._first_done = 0
        self.label.setText(text or self._name)
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(0)
        self.bar.setFormat("%v / %m")
        self.cancel_button.setEnabled(True)
        self.setVisible(True)

    def update_progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
        elapsed = time.monotonic() - self._t0
        if done > 0 and total > done:
            left = elapsed / done * (total - done)
            self.bar.setFormat(f"%v / %m  ({_fmt_s(left)} left)")
        else:
            self.bar.setFormat("%v / %m")

    def busy(self, text: str) -> None:
        """Indeterminate state (e.g. loading the model)."""
        self.label.setText(text)
        self.bar.setRange(0, 0)
        self.setVisible(True)

    def finish(self) -> None:
        self.setVisible(False)


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
