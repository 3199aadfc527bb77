"""The reference annotations list: each reader's outline with its slices, size and the
lesions that overlap it.

Everything shown is the session's: :attr:`~lungct_viewer.core.session.ReadingSession.references`
and :meth:`~lungct_viewer.core.session.ReadingSession.reference_overlaps`. While the study
has none, the panel says where they come from. Clicking a row shows the reference's largest
cross-section, centred.
"""

from __future__ import annotations

from PySide6 import QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from lungct_viewer.core.labels import REFERENCE_RGB
from lungct_viewer.core.session import ReadingSession, lesion_name

from .widgets import list_table, qcolor, set_cell

COLUMNS = ("Reference", "Reader", "Slices", "mm", "Lesions")
COLUMN_TIPS = (
    "The structure's name in the file (a segment, an ROI, an LIDC nodule numbered across readers)",
    "Who drew it, when the file says",
    "Slices it spans (1 = top)",
    "Largest in-plane size in mm",
    "Lesions whose object shares voxels with it: L = a finding, C = a candidate below the "
    "suspicion threshold (shown with 'Show candidates')",
)


NONE_TEXT = (
    "No reference annotations. They are read when the study folder holds a DICOM SEG, an RT "
    "structure set or an LIDC reading file of this series, or from File \u203a Open reference "
    "annotations\u2026; they are drawn in green (A: show / hide)."
)


class ReferencesPanel(QtWidgets.QWidget):
    """The session's reference annotations (see module docstring)."""

    referenceActivated = Signal(int, object)  # slice index, (row, col) centre

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[int, tuple[float, float]]] = []
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.none_label = QtWidgets.QLabel(NONE_TEXT)
        self.none_label.setWordWrap(True)
        self.none_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.none_label.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.none_label)
        self.table = list_table(COLUMNS, COLUMN_TIPS, 0, self.activate_row)  # long names are elided
        lay.addWidget(self.table)
        self.table.setVisible(False)

    def refresh(self, session: ReadingSession | None) -> None:
        refs = session.references if session is not None else ()
        self.table.setVisible(bool(refs))
        self.none_label.setVisible(not refs)
        overlaps = session.reference_overlaps() if refs else None
        names = {les.id: lesion_name(les) for les in session.lesions()} if overlaps is not None else {}
        colour = QtGui.QBrush(qcolor(REFERENCE_RGB))
        t = self.table
        t.setUpdatesEnabled(False)
        t.setRowCount(len(refs))
        self.rows = []
        for r, ref in enumerate(refs):
            a, b = ref.slice_range
            if overlaps is None:
                lesions = "not read yet"
            else:
                lesions = ", ".join(names[i] for i in overlaps.by_reference[r]) or "none"
            values = (
                ref.name,
                ref.reader or "\u2013",
                str(a + 1) if a == b else f"{a + 1}\u2013{b + 1}",
                f"{ref.diameter_mm:.1f}",
                lesions,
            )
            tip = f"{ref.kind.display}: {ref.source}; volume {ref.volume_mm3 / 1000.0:.2f} mL"
            for c, v in enumerate(values):
                item = set_cell(t, r, c, v)
                item.setToolTip(tip)
                item.setForeground(colour if c == 0 else QtGui.QBrush())
            self.rows.append((ref.central_slice, ref.centre_px))
        t.setUpdatesEnabled(True)

    def activate_row(self, r: int) -> None:
        """Show the reference of row ``r`` (its largest cross-section, centred)."""
        if 0 <= r < len(self.rows):
            if self.table.currentRow() != r:
                self.table.selectRow(r)
            self.referenceActivated.emit(*self.rows[r])
