"""The reading panel: the patient-level call, the reading's thresholds, the findings list
and, when the study has them, the reference annotations (:mod:`.references_panel`).

Every control calls the :class:`~lungct_viewer.core.session.ReadingSession` directly
(``set_voting_threshold``, ``update_params``, ``reset_to_model_defaults``); the session says
what changed and the window asks this panel to :meth:`ReadingPanel.refresh` from it. No
control re-runs the network, and nothing here decides anything about the reading: texts,
numbers and colours are the session's and :mod:`lungct_viewer.core.labels`'.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from lungct_viewer.core import constants as C
from lungct_viewer.core.labels import CANDIDATE_RGB, LABEL_RGB, REFERENCE_RGB, left_out_rgb
from lungct_viewer.core.session import ReadingSession, lesions_table
from lungct_viewer.core.texture import Texture

from .references_panel import ReferencesPanel
from .widgets import list_table, qcolor, set_cell

#: Findings list columns.
COLUMNS = ("#", "Slices", "mm", "Call", "P", "Susp.", "Ref")
#: What the "Ref." column shows for a lesion that overlaps a reference annotation.
OVERLAP_MARK = "\u25cf"
COLUMN_TIPS = (
    "Lesion number (as on the image: L for a finding, C for a candidate)",
    "Slices it spans (1 = top)",
    "Mean diameter in mm: the average of the long and short axis, where the lesion is longest",
    "The lesion's call at the voting threshold; GG: ground glass (no solid component). Findings that "
    "do not vote in the patient call (ground glass, smaller than the call's minimum size) are in italics",
    "Mean probability of that call over the lesion's ROI patches",
    "Suspicion from the second reading (3-D shape), 0-1",
    f"{OVERLAP_MARK}: the lesion's object shares voxels with a reference annotation (a reader's outline)",
)
NO_SECOND_READING = (
    "This model has no second reading (second_reading.json beside the model): every "
    "candidate is a finding and there is no suspicion threshold."
)


def _slider(lo: int, hi: int, tip: str) -> QtWidgets.QSlider:
    s = QtWidgets.QSlider(Qt.Orientation.Horizontal)
    s.setRange(lo, hi)
    s.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the slice view
    s.setToolTip(tip)
    return s


class ReadingPanel(QtWidgets.QWidget):
    """Diagnosis, thresholds and findings of the session on screen (see module docstring)."""

    analyseRequested = Signal()
    showCandidatesChanged = Signal(bool)
    lesionActivated = Signal(int, int, object)  # lesion number, slice index, (row, col) centre
    editingDone = Signal()  # the minimum-votes box gave the keyboard back

    #: delay (ms) before a sensitivity change is applied: it re-reads every lesion
    SENSITIVITY_DELAY_MS = 120

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.session: ReadingSession | None = None
        self.rows: list[dict] = []
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

        box = QtWidgets.QGroupBox("Patient-level result (majority vote)")
        g = QtWidgets.QGridLayout(box)
        self.diag_label = QtWidgets.QLabel("NO STUDY")
        self.diag_label.setObjectName("diagnosisLabel")
        self.diag_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.diag_detail = QtWidgets.QLabel("")
        self.diag_detail.setWordWrap(True)
        self.threshold_slider = _slider(
            0,
            100,
            "Voting threshold: the call is malignant when the malignant share "
            "of the votes reaches it. Lower = more sensitive for malignancy.",
        )
        self.threshold_value = QtWidgets.QLabel()
        self.sens_slider = _slider(
            5,
            95,
            "Detection sensitivity: minimum P(benign) + P(malignant) of a patch to vote "
            "ROI. Right = more sensitive (more findings, more false positives).",
        )
        self.sens_slider.setInvertedAppearance(True)
        self.sens_value = QtWidgets.QLabel()
        self.votes_spin = QtWidgets.QSpinBox()
        self.votes_spin.setRange(1, (C.PATCH_SIZE_PX // C.PATCH_STRIDE_PX) ** 2)
        self.votes_spin.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # typing goes into the box
        self.votes_spin.setToolTip(
            "Minimum votes: in the vote map, a pixel is ROI when at least this many ROI "
            "patches cover it (of 25). Higher = a tighter vote map."
        )
        self.susp_slider = _slider(0, 100, "")
        self.susp_value = QtWidgets.QLabel()
        self.defaults_button = QtWidgets.QPushButton("Model defaults")
        self.defaults_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.defaults_button.setToolTip("Back to the model's operating point for every control above")
        self.candidates_check = QtWidgets.QCheckBox("Show candidates below the suspicion threshold")
        self.candidates_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.analyse_button = QtWidgets.QPushButton("Analyse study (F5)")
        self.analyse_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        rows = (
            ("Voting threshold", self.threshold_slider, self.threshold_value),
            ("Sensitivity", self.sens_slider, self.sens_value),
            ("Minimum votes", self.votes_spin, None),
            ("Suspicion", self.susp_slider, self.susp_value),
        )
        g.addWidget(self.diag_label, 0, 0, 1, 3)
        g.addWidget(self.diag_detail, 1, 0, 1, 3)
        for r, (name, w, value) in enumerate(rows, start=2):
            g.addWidget(QtWidgets.QLabel(name), r, 0)
            g.addWidget(w, r, 1, 1, 1 if value is not None else 2)
            if value is not None:
                g.addWidget(value, r, 2)
        g.addWidget(self.candidates_check, 6, 0, 1, 3)
        g.addWidget(self.defaults_button, 7, 0)
        g.addWidget(self.analyse_button, 7, 1, 1, 2)
        lay.addWidget(box)

        self.table = list_table(COLUMNS, COLUMN_TIPS, 3, self.activate_row)  # the call takes the spare width
        # the findings and the reference annotations, one tab each
        self.lists = QtWidgets.QTabWidget()
        self.lists.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.lists.tabBar().setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.lists.addTab(self.table, "Findings (N / P: next / previous)")
        self.references = ReferencesPanel()
        self.lists.addTab(self.references, "References")
        self.lists.setTabToolTip(
            1, "A reader's outlines on this series, and the lesions that overlap them (A: show / hide)"
        )
        lay.addWidget(self.lists, 1)

        self._sens_timer = QtCore.QTimer(self, singleShot=True, interval=self.SENSITIVITY_DELAY_MS)
        self._sens_timer.timeout.connect(self._apply_sensitivity)
        self.threshold_slider.valueChanged.connect(self._on_threshold)
        self.sens_slider.valueChanged.connect(self._on_sensitivity)
        self.votes_spin.valueChanged.connect(self._on_votes)
        self.votes_spin.editingFinished.connect(self.editingDone)
        self.susp_slider.valueChanged.connect(self._on_suspicion)
        self.defaults_button.clicked.connect(self.reset_to_defaults)
        self.candidates_check.toggled.connect(self.showCandidatesChanged)
        self.analyse_button.clicked.connect(self.analyseRequested)
        self.set_session(None)

    # -- controls -> session ----------------------------------------------------------------
    def set_session(self, session: ReadingSession | None) -> None:
        self.session = session
        has = session is not None
        second = has and session.second_reading is not None
        for w in (self.threshold_slider, self.sens_slider, self.votes_spin, self.defaults_button):
            w.setEnabled(has)
        self.susp_slider.setEnabled(second)
        self.candidates_check.setEnabled(second)
        tip = "Second reading: a candidate is a finding when its suspicion (3-D shape) reaches this threshold."
        if second:
            sr, spacing = session.second_reading, session.volume.slice_spacing_mm
            op = sr.threshold_for(spacing)
            if sr.reads_as_thick(spacing):
                tip += (
                    f" Default {op:.2f}: this series' slices lie {spacing:.1f} mm apart, and on slices more than "
                    f"{sr.thick_slice_mm:g} mm apart vessels look more like nodules, so the default is stricter "
                    f"(thin slices: {sr.threshold:.2f})."
                )
            else:
                tip += f" Default {op:.2f}."
        self.susp_slider.setToolTip(tip if second or not has else NO_SECOND_READING)
        self.candidates_check.setToolTip(
            "Also list and outline, in grey, the candidates the second reading set aside"
            if second or not has
            else NO_SECOND_READING
        )
        self.refresh()

    def _on_threshold(self, v: int) -> None:
        if self.session is not None:
            self.session.set_voting_threshold(v / 100.0)

    def _on_sensitivity(self, v: int) -> None:
        self.sens_value.setText(f"P(ROI) \u2265 {v / 100:.2f}")
        self._sens_timer.start()

    def _apply_sensitivity(self) -> None:
        if self.session is not None:
            self.session.update_params(min_roi_probability=self.sens_slider.value() / 100.0)

    def apply_pending(self) -> None:
        """Apply a sensitivity change still waiting for its delay."""
        if self._sens_timer.isActive():
            self._sens_timer.stop()
            self._apply_sensitivity()

    def _on_votes(self, v: int) -> None:
        if self.session is not None:
            self.session.update_params(min_votes=int(v))

    def _on_suspicion(self, v: int) -> None:
        if self.session is not None and self.session.second_reading is not None:
            self.session.update_params(suspicion_threshold=v / 100.0)

    def reset_to_defaults(self) -> None:
        self._sens_timer.stop()
        if self.session is not None:
            self.session.reset_to_model_defaults()

    @property
    def show_candidates(self) -> bool:
        return self.candidates_check.isEnabled() and self.candidates_check.isChecked()

    # -- session -> display -----------------------------------------------------------------
    def refresh(self, busy: str | None = None) -> None:
        """Show the session's settings, call and lesions; ``busy`` replaces the call while the
        network or the candidate search runs."""
        s = self.session
        self._show_controls()
        self.references.refresh(s)
        n_refs = len(s.references) if s is not None else 0
        self.lists.setTabText(1, f"References ({n_refs})" if n_refs else "References")
        if s is None:
            self._show_call("NO STUDY", "none", "")
            self._fill_table([])
            return
        n_done, n = len(s.analysis.slices), s.volume.num_slices
        progress = f"{n_done} of {n} slices analysed"
        if busy is not None or not s.candidates_ready:
            text = busy if busy is not None else ("NOT ANALYSED" if n_done == 0 else "NOT READ")
            self._show_call(text, "none", progress)
            self._fill_table([])
            return
        d = s.diagnosis()
        found = s.findings()
        below = len(s.lesions()) - len(found)
        frac = "\u2013" if d.malignant_fraction is None else f"{d.malignant_fraction:.2f}"
        partial = "" if s.analysis.complete else " (partial)"
        lines = [
            f"Malignant fraction {frac} (threshold {d.threshold:.2f})",
            f"Votes: {d.votes_malignant} malignant / {d.votes_benign} benign patches",
            f"Lesions in the call: {d.n_lesions}; not in the call: {d.n_small} smaller than "
            f"{s.params.call_min_diameter_mm:g} mm, {d.n_ground_glass} ground glass",
            f"Findings: {len(found)} lesion(s)"
            + (f" (at most {s.params.max_lesions} per scan)" if s.params.max_lesions else "")
            + (f"; {below} candidate(s) below the suspicion threshold" if s.second_reading is not None else ""),
            progress,
        ]
        self._show_call(d.display + partial, d.label.value, "\n".join(lines))
        shown = s.lesions() if self.show_candidates else found
        rows = lesions_table(shown, s.voting_threshold, s.reference_overlaps(), s.params.call_min_diameter_mm)
        self._fill_table(rows, s)

    def _show_controls(self) -> None:
        s = self.session
        if s is None:
            return
        p = s.params
        for w, v in (
            (self.threshold_slider, round(s.voting_threshold * 100)),
            (self.sens_slider, round(p.min_roi_probability * 100)),
            (self.votes_spin, p.min_votes),
            (self.susp_slider, round((p.suspicion_threshold or 0.0) * 100)),
        ):
            if w.value() != v and not (w is self.sens_slider and self._sens_timer.isActive()):
                w.blockSignals(True)
                w.setValue(int(v))
                w.blockSignals(False)
        self.threshold_value.setText(f"{s.voting_threshold:.2f}")
        if not self._sens_timer.isActive():
            self.sens_value.setText(f"P(ROI) \u2265 {p.min_roi_probability:.2f}")
        self.susp_value.setText("\u2013" if p.suspicion_threshold is None else f"\u2265 {p.suspicion_threshold:.2f}")

    def _show_call(self, text: str, kind: str, detail: str) -> None:
        self.diag_label.setText(text)
        self.diag_label.setProperty("kind", kind)
        self.diag_label.style().unpolish(self.diag_label)
        self.diag_label.style().polish(self.diag_label)
        self.diag_detail.setText(detail)

    def _fill_table(self, rows: list[dict], session: ReadingSession | None = None) -> None:
        self.rows = rows
        refs = session.references if session is not None else ()
        t = self.table
        t.setUpdatesEnabled(False)
        t.setRowCount(len(rows))
        for r, row in enumerate(rows):
            lab = row["label"]
            a, b = row["slices"]
            susp = row["suspicion"]
            values = (
                str(row["id"]),
                str(a) if a == b else f"{a}\u2013{b}",
                f"{row['diameter_mm']:.1f}",
                (lab.display if lab is not None else "candidate")
                + (" \u00b7 GG" if row["texture"] is Texture.GROUND_GLASS else ""),
                f"{row['probability']:.2f}",
                "\u2013" if susp is None else f"{susp:.2f}",
                OVERLAP_MARK if row["references"] else "",
            )
            colour = qcolor(LABEL_RGB[lab] if lab is not None else CANDIDATE_RGB)
            left_out = row["not_in_call"]
            if left_out:  # a finding that does not vote: its call muted towards grey
                colour = qcolor(left_out_rgb(LABEL_RGB[lab]))
            overlapped = ", ".join(refs[i].title for i in row["references"])
            for c, v in enumerate(values):
                item = set_cell(t, r, c, v)
                if c == 2:
                    item.setToolTip("{:.1f} \u00d7 {:.1f} mm (long \u00d7 short axis)".format(*row["axes_mm"]))
                if c == 3:
                    votes = f"\nDoes not vote in the patient call: {left_out}" if left_out else ""
                    item.setToolTip(f"Texture: {row['texture'].display}{votes}")
                    font = item.font()
                    font.setItalic(bool(left_out))
                    item.setFont(font)
                if c == len(values) - 1:
                    item.setForeground(QtGui.QBrush(qcolor(REFERENCE_RGB)))
                    item.setToolTip(f"Overlaps {overlapped}" if overlapped else "")
                    continue
                item.setForeground(QtGui.QBrush(colour) if c == 3 or lab is None else QtGui.QBrush())
        t.setUpdatesEnabled(True)

    def activate_row(self, r: int) -> None:
        """Show the lesion of row ``r`` (its central slice, centred)."""
        if 0 <= r < len(self.rows):
            row = self.rows[r]
            if self.table.currentRow() != r:
                self.table.selectRow(r)
            self.lesionActivated.emit(row["id"], row["central_slice"], row["centre_px"])

    def select_lesion(self, lesion_id: int) -> None:
        r = next((k for k, row in enumerate(self.rows) if row["id"] == lesion_id), None)
        if r is not None:
            self.table.selectRow(r)
