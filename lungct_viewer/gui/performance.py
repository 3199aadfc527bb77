"""Help > Model performance: what moving the voting-threshold slider means.

The model card's patient-level threshold curve (sensitivity and specificity of the call
"malignant fraction >= threshold" on held-back patients) drawn with pyqtgraph, the current
voting threshold marked on it with its figures. A card without a curve
(:func:`lungct_viewer.core.model.threshold_curve` is ``None``) shows the operating points it
records and says that the figures elsewhere are not known.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtWidgets
from PySide6.QtCore import Qt

from lungct_viewer.core.labels import LABEL_RGB, Label
from lungct_viewer.core.model import ModelCard, operating_points, threshold_curve

SENS_RGB = LABEL_RGB[Label.MALIGNANT]
SPEC_RGB = LABEL_RGB[Label.BENIGN]


def _f(v: float | None) -> str:
    return "\u2013" if v is None else f"{v:.2f}"


class PerformanceDialog(QtWidgets.QDialog):
    """The threshold curve with the current voting threshold (see module docstring)."""

    def __init__(self, card: ModelCard, threshold: float, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Model performance \u2014 model {card.version}")
        self.card = card
        self.curve = threshold_curve(card)
        self.points = operating_points(card)
        lay = QtWidgets.QVBoxLayout(self)
        self.plot = pg.PlotWidget(background="k")
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(False, False)
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.setYRange(0, 1.02, padding=0.02)
        self.plot.setLabel("bottom", "voting threshold (malignant share of the votes)")
        self.plot.setLabel("left", "patient level")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.addLegend(offset=(-10, 10))
        if self.curve is not None:
            xs = [p.threshold for p in self.curve.points]
            for key, name, rgb in (
                ("sensitivity", "sensitivity (malignant patients called malignant)", SENS_RGB),
                ("specificity", "specificity (benign patients called benign)", SPEC_RGB),
            ):
                ys = [getattr(p, key) for p in self.curve.points]
                keep = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
                self.plot.plot([x for x, _ in keep], [y for _, y in keep], pen=pg.mkPen(rgb, width=2), name=name)
        for op, symbol in zip(self.points, ("o", "t", "s", "d"), strict=False):
            for value, rgb, what in (
                (op.sensitivity, SENS_RGB, "sensitivity"),
                (op.specificity, SPEC_RGB, "specificity"),
            ):
                if value is not None:
                    self.plot.plot(
                        [op.threshold],
                        [value],
                        pen=None,
                        symbol=symbol,
                        symbolBrush=rgb,
                        symbolSize=10,
                        name=f"{what}, {op.name}" if self.curve is None else None,
                    )
        self.marker = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((255, 220, 60), width=2))
        self.plot.addItem(self.marker)
        self.text = QtWidgets.QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.text)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)
        self.resize(720, 560)
        self.set_threshold(threshold)

    def set_threshold(self, threshold: float) -> None:
        """Mark ``threshold`` (the slider's value) and say what the card knows there."""
        self.threshold = float(threshold)
        self.marker.setValue(self.threshold)
        lines = [f"<b>Voting threshold {self.threshold:.2f}</b> (the yellow line; move the slider in the window)."]
        if self.curve is not None:
            at = self.curve.at(self.threshold)
            who = f"{self.curve.split or 'held-back'} patients" + (f", n = {self.curve.n}" if self.curve.n else "")
            lines.append(
                f"Sensitivity {_f(at.sensitivity)}, specificity {_f(at.specificity)} at the curve point "
                f"{at.threshold:.2f} ({who})."
            )
        else:
            lines.append(
                "This model card records no threshold curve, only its operating point: the figures at "
                "other thresholds are not known."
            )
        for op in self.points:
            n = f", n = {op.n}" if op.n else ""
            lines.append(
                f"Operating point {op.threshold:.2f} ({op.name}{n}): sensitivity {_f(op.sensitivity)}, "
                f"specificity {_f(op.specificity)}."
            )
        lines.append("Lower thresholds call more patients malignant: more sensitive, less specific.")
        self.text.setText("<br>".join(lines))
