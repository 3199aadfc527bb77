"""Small widgets: the patient banner, the slice navigator and its findings strip, the heatmap
legend, task progress and the load-warnings button."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from lungct_viewer import RESEARCH_NOTICE
from lungct_viewer.core.labels import LABEL_RGB, REFERENCE_RGB, Label, heat_lut
from lungct_viewer.core.study import CTVolume


def qcolor(rgb: Sequence[int], alpha: int = 255) -> QtGui.QColor:
    return QtGui.QColor(int(rgb[0]), int(rgb[1]), int(rgb[2]), alpha)


class PatientBanner(QtWidgets.QLabel):
    """Who and what is on screen: patient name, ID, birth date, study date and description,
    series -- so the reader can confirm the patient (never burned into exports by default)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("patientBanner")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # two lines always, so that the slice view does not jump when a study opens
        self.setMinimumHeight(2 * self.fontMetrics().lineSpacing() + 8)
        self.clear_study()

    def clear_study(self) -> None:
        self.setText("<i>No study open</i> &nbsp; (File \u203a Open folder\u2026 or drop a folder here)")

    def set_study(self, volume: CTVolume, series: str = "", note: str = "") -> None:
        """``series``: the series chooser's line for it (kernel, slices, thickness...)."""
        esc = html.escape

        def field(name: str, value: str) -> str:
            return f"<span style='color:#9fb4d0'>{name}</span> <b>{esc(value)}</b>" if value else ""

        name = volume.patient_name.replace("^", " ").strip() or "(no name)"
        first = [
            field("Patient", name),
            field("ID", volume.patient_id or "(none)"),
            field("Born", volume.patient_birth_date),
        ]
        study = " ".join(v for v in (volume.study_date, volume.study_description) if v)
        second = [field("Study", study), field("Series", series or volume.description or "(no description)")]
        dot = " &nbsp;\u00b7&nbsp; "
        lines = [dot.join(p for p in first if p), dot.join(p for p in second if p)]
        if note:
            lines.append(f"<span style='color:#ffd27a'>{esc(note)}</span>")
        self.setText("<br>".join(lines))


class FindingsStrip(QtWidgets.QWidget):
    """A thin bar under the slice slider: analysed slices in grey, slices with findings in the
    colour of their call (the session's :meth:`~lungct_viewer.core.session.ReadingSession.slice_label`),
    slices a reference annotation outlines as a green tick along the top edge. Clicking the
    strip jumps to the slice under the mouse."""

    sliceClicked = Signal(int)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._n = 0
        self._analysed: set[int] = set()
        self._marks: dict[int, Label] = {}
        self._references: set[int] = set()
        self._current = 0
        self.setFixedHeight(14)
        self.setToolTip(
            f"Slices with findings ({Label.MALIGNANT.display.lower()}: red, "
            f"{Label.BENIGN.display.lower()}: blue); grey: analysed; "
            "green along the top: outlined by a reference annotation"
        )

    def set_count(self, n: int) -> None:
        self._n = int(n)
        self._analysed.clear()
        self._marks.clear()
        self._references.clear()
        self.update()

    def set_analysed(self, indices: Iterable[int]) -> None:
        self._analysed = set(indices)
        self.update()

    def set_marks(self, marks: Mapping[int, Label]) -> None:
        self._marks = dict(marks)
        self.update()

    def marks(self) -> dict[int, Label]:
        return dict(self._marks)

    def set_references(self, indices: Iterable[int]) -> None:
        """Slices outlined by a reference annotation (none: the overlay is off)."""
        self._references = set(indices)
        self.update()

    def references(self) -> set[int]:
        return set(self._references)

    def set_current(self, index: int) -> None:
        self._current = int(index)
        self.update()

    def _x(self, i: float) -> float:
        return 1 + (i + 0.5) * (self.width() - 2) / max(1, self._n)

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor(30, 30, 34))
        if self._n > 0:
            h = self.height()
            step = (self.width() - 2) / self._n
            grey = QtGui.QColor(75, 75, 82)
            for i in self._analysed:
                p.fillRect(QtCore.QRectF(1 + i * step, h - 4, max(1.0, step), 4), grey)
            for i, lab in self._marks.items():
                x = self._x(i)
                p.fillRect(QtCore.QRectF(x - max(1.0, step / 2), 3, max(2.0, step), h - 7), qcolor(LABEL_RGB[lab]))
            green = qcolor(REFERENCE_RGB)
            for i in self._references:
                x = self._x(i)
                p.fillRect(QtCore.QRectF(x - max(1.0, step / 2), 0, max(2.0, step), 3), green)
            p.setPen(QtGui.QPen(QtGui.QColor(230, 230, 230), 1))
            x = self._x(self._current)
            p.drawLine(QtCore.QPointF(x, 0), QtCore.QPointF(x, h))
        p.end()

    def mousePressEvent(self, ev: QtGui.QMouseEvent) -> None:  # noqa: N802
        if self._n > 0:
            i = int((ev.position().x() - 1) / max(1e-6, (self.width() - 2) / self._n))
            self.sliceClicked.emit(max(0, min(self._n - 1, i)))


class SliceNavigator(QtWidgets.QWidget):
    """Slice slider, findings strip and the ``Slice 12 / 133 · z = -95.0 mm`` label."""

    indexRequested = Signal(int)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.indexRequested)
        self.label = QtWidgets.QLabel("No study")
        self.label.setMinimumWidth(250)
        self.label.setObjectName("sliceLabel")
        self.strip = FindingsStrip()
        self.strip.sliceClicked.connect(self.indexRequested)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 2, 6, 4)
        grid.setVerticalSpacing(1)
        grid.addWidget(self.slider, 0, 0)
        grid.addWidget(self.label, 0, 1, 2, 1)
        grid.addWidget(self.strip, 1, 0)

    def set_count(self, n: int) -> None:
        self.strip.set_count(n)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.blockSignals(False)
        self.slider.setEnabled(n > 0)
        if n == 0:
            self.label.setText("No study")

    def show_index(self, index: int, n: int, z_mm: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.strip.set_current(index)
        self.label.setText(f"Slice {index + 1} / {n}   \u00b7   z = {z_mm:.1f} mm")

    def show_loading(self, index: int, n: int) -> None:
        self.slider.setEnabled(False)
        self.label.setText(f"Slice {index + 1} / {n}   \u00b7   loading\u2026")


class HeatmapLegend(QtWidgets.QWidget):
    """A horizontal colour bar 0..1 of :func:`lungct_viewer.core.labels.heat_lut` with a caption."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption = "P(malignant)"
        self.lut = heat_lut(64)
        self.setMinimumHeight(34)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)

    def set_caption(self, caption: str) -> None:
        self.caption = caption
        self.update()

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QtGui.QPainter(self)
        r = self.rect().adjusted(4, 2, -4, -18)
        grad = QtGui.QLinearGradient(r.left(), 0, r.right(), 0)
        n = len(self.lut)
        for k, c in enumerate(self.lut):
            grad.setColorAt(k / (n - 1), qcolor(c))
        p.fillRect(r, QtGui.QBrush(grad))
        p.setPen(self.palette().color(QtGui.QPalette.ColorRole.WindowText))
        y = r.bottom() + 14
        p.drawText(r.left(), y, "0")
        fm = p.fontMetrics()
        p.drawText(r.right() - fm.horizontalAdvance("1"), y, "1")
        p.drawText(r.center().x() - fm.horizontalAdvance(self.caption) // 2, y, self.caption)
        p.end()


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
        self.cancel_button.setToolTip("Cancel (Esc)")
        self.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel_button.clicked.connect(self._cancel)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_button)
        self._t0 = 0.0
        self.setVisible(False)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.label.setText("Cancelling\u2026")
        self.cancelRequested.emit()

    def start(self, total: int, text: str | None = None) -> None:
        self._t0 = time.monotonic()
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
        if 0 < done < total:
            self.bar.setFormat(f"%v / %m  ({_fmt_s(elapsed / done * (total - done))} left)")
        else:
            self.bar.setFormat("%v / %m")

    def busy(self, text: str) -> None:
        """Indeterminate state (e.g. loading the model)."""
        self._t0 = time.monotonic()
        self.label.setText(text)
        self.bar.setRange(0, 0)
        self.cancel_button.setEnabled(True)
        self.setVisible(True)

    def finish(self) -> None:
        self.setVisible(False)


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


class WarningsButton(QtWidgets.QToolButton):
    """A status-bar warning icon that lists the load warnings (skipped files, uneven slice
    spacing...) until the reader dismisses them."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.warnings: list[str] = []
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setVisible(False)
        self.clicked.connect(self.show_list)
        self.dialog: QtWidgets.QDialog | None = None

    def set_warnings(self, warnings: Sequence[str]) -> None:
        self.warnings = list(warnings)
        n = len(self.warnings)
        self.setText(f"\u26a0 {n} load warning{'s' if n != 1 else ''}")
        self.setToolTip("\n".join(self.warnings[:20]) + ("\n\u2026" if n > 20 else "") + "\n\nClick for the list.")
        self.setVisible(n > 0)

    def dismiss(self) -> None:
        self.setVisible(False)
        if self.dialog is not None:
            self.dialog.close()

    def show_list(self) -> None:
        """A non-modal list with a Dismiss button (which hides the icon)."""
        if self.dialog is not None:
            self.dialog.close()
        dlg = QtWidgets.QDialog(self.window())
        dlg.setWindowTitle("Load warnings")
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        lay = QtWidgets.QVBoxLayout(dlg)
        lay.addWidget(QtWidgets.QLabel("Opening this study needed these repairs or left these files out:"))
        text = QtWidgets.QPlainTextEdit("\n".join(self.warnings))
        text.setReadOnly(True)
        lay.addWidget(text)
        buttons = QtWidgets.QDialogButtonBox()
        dismiss = buttons.addButton("Dismiss", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close)
        dismiss.clicked.connect(self.dismiss)
        buttons.rejected.connect(dlg.close)
        lay.addWidget(buttons)
        dlg.resize(640, 320)
        dlg.destroyed.connect(lambda *_: setattr(self, "dialog", None))
        self.dialog = dlg
        dlg.show()


def list_table(
    columns: Sequence[str], tips: Sequence[str], stretch_column: int, on_row: Callable[[int], None]
) -> QtWidgets.QTableWidget:
    """A read-only table of one-row items (findings, references): headers with tooltips, whole
    rows selected, columns fitted to their contents but ``stretch_column``, which takes the
    spare width; a click on a row calls ``on_row(row)``."""
    table = QtWidgets.QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    for c, tip in enumerate(tips):
        table.horizontalHeaderItem(c).setToolTip(tip)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch_column, QtWidgets.QHeaderView.ResizeMode.Stretch)
    table.cellClicked.connect(lambda r, _c: on_row(r))
    return table


def set_cell(table: QtWidgets.QTableWidget, row: int, col: int, text: str) -> QtWidgets.QTableWidgetItem:
    """The item at ``(row, col)`` (made when missing, reused otherwise) showing ``text``."""
    item = table.item(row, col)
    if item is None:
        item = QtWidgets.QTableWidgetItem()
        table.setItem(row, col, item)
    item.setText(text)
    return item


def research_notice() -> QtWidgets.QLabel:
    """The red "research use only" banner of the side panel."""
    label = QtWidgets.QLabel(RESEARCH_NOTICE)
    label.setObjectName("researchNotice")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label


def side_panel(*widgets: QtWidgets.QWidget) -> QtWidgets.QWidget:
    """The right-hand column: ``widgets`` top to bottom, the last one taking the spare height."""
    panel = QtWidgets.QWidget()
    panel.setObjectName("sidePanel")
    lay = QtWidgets.QVBoxLayout(panel)
    lay.setContentsMargins(8, 8, 8, 8)
    for k, w in enumerate(widgets):
        lay.addWidget(w, 1 if k == len(widgets) - 1 else 0)
    panel.setMinimumWidth(360)
    panel.setMaximumWidth(460)
    return panel


class StatusBar(QtWidgets.QStatusBar):
    """HU readout on the left; load warnings, task progress and the notice on the right."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.cursor_label = QtWidgets.QLabel("")
        self.cursor_label.setObjectName("cursorLabel")
        self.addWidget(self.cursor_label, 1)
        self.warnings_button = WarningsButton()
        self.load = TaskProgress("Loading")
        self.analysis = TaskProgress("Analysis")
        self.export = TaskProgress("Export")
        self.notice = QtWidgets.QLabel(RESEARCH_NOTICE)
        self.notice.setObjectName("statusNotice")
        for w in (self.warnings_button, self.load, self.analysis, self.export, self.notice):
            self.addPermanentWidget(w)
        # as tall as a progress bar, shown or not: the slice view does not jump
        self.setFixedHeight(self.load.sizeHint().height() + 6)
