"""The display and overlay panel: window/level presets, invert, and which overlays are drawn.

It holds the display state (:class:`DisplayOptions`) and says when it changes; the window
draws. Nothing here depends on the study.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtWidgets
from PySide6.QtCore import Qt, Signal

from lungct_viewer.core import constants as C
from lungct_viewer.core.export import ImageOptions

from .widgets import HeatmapLegend

#: Heatmap choices: (menu text, kind for the session's heatmap).
HEATMAP_KINDS = (("P(malignant)", "malignant"), ("P(benign)", "benign"), ("P(ROI)", "roi"))
#: What the red overlay shows: (menu text, source for the session's ``red_mask``); the first is
#: what the PNG export paints by default.
RED_SOURCES = tuple(
    sorted(
        (("the findings' objects", "lesions"), ("the vote map (ROI patches)", "votes")),
        key=lambda item: item[1] != ImageOptions().roi_source,
    )
)


@dataclass(frozen=True)
class DisplayOptions:
    """What is drawn over the slice, and how."""

    window: tuple[float, float]
    inverted: bool
    show_roi: bool
    red: str  # "lesions" (the findings' objects) or "votes" (the method's vote map)
    show_marks: bool
    heat_kind: str | None  # None: heatmap off
    heat_opacity: float
    show_references: bool = True  # a reader's outlines (reference annotations), when loaded


def _no_focus(w: QtWidgets.QWidget) -> QtWidgets.QWidget:
    """Panel controls leave the keyboard to the slice view (its single-key shortcuts)."""
    w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return w


class DisplayPanel(QtWidgets.QWidget):
    """Display (window, invert, reset) and Overlays (ROI, outlines, reference outlines,
    heatmap, opacity)."""

    changed = Signal()  # any option (read them from :attr:`options`)
    resetRequested = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._window = C.WINDOW_PRESETS["Lung"]
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

        disp = QtWidgets.QGroupBox("Display")
        dl = QtWidgets.QGridLayout(disp)
        self.preset_combo = _no_focus(QtWidgets.QComboBox())
        for name, (w, lvl) in C.WINDOW_PRESETS.items():
            self.preset_combo.addItem(f"{name}  (W{w:g} / L{lvl:g})", name)
        self.preset_combo.addItem("Custom", None)
        self.preset_combo.activated.connect(self._on_preset_combo)
        self.wl_label = QtWidgets.QLabel()
        self.invert_check = _no_focus(QtWidgets.QCheckBox("Invert (I)"))
        self.invert_check.toggled.connect(self.changed)
        reset_btn = _no_focus(QtWidgets.QPushButton("Reset view (Space)"))
        reset_btn.clicked.connect(self.resetRequested)
        dl.addWidget(QtWidgets.QLabel("Window"), 0, 0)
        dl.addWidget(self.preset_combo, 0, 1, 1, 2)
        dl.addWidget(self.wl_label, 1, 0, 1, 3)
        dl.addWidget(self.invert_check, 2, 0, 1, 2)
        dl.addWidget(reset_btn, 2, 2)
        lay.addWidget(disp)

        ov = QtWidgets.QGroupBox("Overlays")
        ol = QtWidgets.QGridLayout(ov)
        self.roi_check = _no_focus(QtWidgets.QCheckBox("Red (R)"))
        self.roi_check.setChecked(True)
        self.red_combo = _no_focus(QtWidgets.QComboBox())
        for text, source in RED_SOURCES:
            self.red_combo.addItem(text, source)
        self.red_combo.setToolTip(
            "Red: the findings as segmented (as the exported PNGs by default), or the "
            "method's ROI vote map (pixels covered by enough ROI patches)"
        )
        self.marks_check = _no_focus(QtWidgets.QCheckBox("Lesion outlines and labels (O)"))
        self.marks_check.setChecked(True)
        self.refs_check = _no_focus(QtWidgets.QCheckBox("Reference outlines (A)"))
        self.refs_check.setChecked(True)
        self.refs_check.setToolTip(
            "A reader's outlines (DICOM SEG, RT structure set or LIDC reading file), in green, "
            "when the study folder holds them or File › Open reference annotations loaded them"
        )
        self.heat_check = _no_focus(QtWidgets.QCheckBox("Heatmap (H)"))
        self.heat_combo = _no_focus(QtWidgets.QComboBox())
        for text, kind in HEATMAP_KINDS:
            self.heat_combo.addItem(text, kind)
        self.opacity_slider = _no_focus(QtWidgets.QSlider(Qt.Orientation.Horizontal))
        self.opacity_slider.setRange(5, 100)
        self.opacity_slider.setValue(40)
        self.legend = HeatmapLegend()
        for sig in (
            self.roi_check.toggled,
            self.red_combo.currentIndexChanged,
            self.marks_check.toggled,
            self.refs_check.toggled,
            self.heat_check.toggled,
            self.heat_combo.currentIndexChanged,
            self.opacity_slider.valueChanged,
        ):
            sig.connect(self._on_overlay_changed)
        ol.addWidget(self.roi_check, 0, 0)
        ol.addWidget(self.red_combo, 0, 1, 1, 2)
        ol.addWidget(self.marks_check, 1, 0, 1, 3)
        ol.addWidget(self.refs_check, 2, 0, 1, 3)
        ol.addWidget(self.heat_check, 3, 0)
        ol.addWidget(self.heat_combo, 3, 1, 1, 2)
        ol.addWidget(QtWidgets.QLabel("Opacity"), 4, 0)
        ol.addWidget(self.opacity_slider, 4, 1, 1, 2)
        ol.addWidget(self.legend, 5, 0, 1, 3)
        lay.addWidget(ov)
        self._show_window()
        self._on_overlay_changed()

    # -- state ----------------------------------------------------------------------------
    @property
    def options(self) -> DisplayOptions:
        return DisplayOptions(
            window=self._window,
            inverted=self.invert_check.isChecked(),
            show_roi=self.roi_check.isChecked(),
            red=self.red_combo.currentData(),
            show_marks=self.marks_check.isChecked(),
            heat_kind=self.heat_combo.currentData() if self.heat_check.isChecked() else None,
            heat_opacity=self.opacity_slider.value() / 100.0,
            show_references=self.refs_check.isChecked(),
        )

    def set_window(self, width: float, level: float) -> None:
        self._window = (max(1.0, float(width)), float(level))
        self._show_window()
        self.changed.emit()

    def apply_preset(self, name: str) -> None:
        self.set_window(*C.WINDOW_PRESETS[name])

    def toggle(self, which: str) -> None:
        """Switch an overlay on or off: "roi", "marks", "references" or "heat"."""
        checks = {"roi": self.roi_check, "marks": self.marks_check, "references": self.refs_check}
        checks["heat"] = self.heat_check
        checks[which].toggle()

    def preset_name(self) -> str | None:
        """The preset the window matches (None: custom)."""
        return next((n for n, v in C.WINDOW_PRESETS.items() if v == self._window), None)

    def drag_window(self, dx: float, dy: float) -> None:
        """Left-drag on the image: right widens the window, down raises the level."""
        w, lvl = self._window
        step = max(1.0, w / 256.0)
        self.set_window(w + dx * step * 2.0, lvl + dy * step)

    def _show_window(self) -> None:
        w, lvl = self._window
        self.wl_label.setText(f"W {w:.0f}   L {lvl:.0f}   (left-drag on the image to adjust)")
        name = self.preset_name()
        self.preset_combo.setCurrentIndex(self.preset_combo.findData(name) if name else self.preset_combo.count() - 1)

    def _on_preset_combo(self, k: int) -> None:
        name = self.preset_combo.itemData(k)
        if name:
            self.apply_preset(name)

    def _on_overlay_changed(self, *_args) -> None:
        self.legend.set_caption(self.heat_combo.currentText())
        self.legend.setEnabled(self.heat_check.isChecked())
        self.changed.emit()
