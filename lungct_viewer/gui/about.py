"""Help > About: the viewer, the model card and the second reading, as a readable document.

Known sections of the card are written out in sentences and tables; anything else a card or a
second-reading file holds is rendered generically (headings and lists, numbers rounded), so
no raw Python structure ever reaches the screen. The dialog scrolls and never grows beyond
80% of the screen's height.
"""

from __future__ import annotations

import ast
import html
from collections.abc import Mapping, Sequence
from typing import Any

from PySide6 import QtWidgets

from lungct_viewer import RESEARCH_NOTICE, __version__
from lungct_viewer.core.demo import ATTRIBUTION
from lungct_viewer.core.model import ModelCard

esc = html.escape
#: Largest share of the screen's height the dialog takes.
MAX_SCREEN_SHARE = 0.8


def _words(key: str) -> str:
    """``not_roi_specificity`` -> ``Not ROI specificity``; ``auc`` -> ``AUC``."""
    words = str(key).replace("_", " ").split()
    upper = {
        "auc": "AUC",
        "roi": "ROI",
        "cpm": "CPM",
        "fp": "FP",
        "tp": "TP",
        "tn": "TN",
        "fn": "FN",
        "mm": "mm",
        "hu": "HU",
        "lidc": "LIDC",
        "ct": "CT",
    }
    out = [upper.get(w.lower(), w) for w in words]
    if out and out[0] == out[0].lower():
        out[0] = out[0][:1].upper() + out[0][1:]
    return " ".join(out)


def _tidy(text: str) -> str:
    """Python dict literals inside a card's sentences (``{'train': 305, 'val': 44}``) as words
    (``train 305, val 44``); other text unchanged."""
    out, k = [], 0
    while (a := text.find("{", k)) >= 0:
        depth, b = 0, a
        for b in range(a, len(text)):
            depth += {"{": 1, "}": -1}.get(text[b], 0)
            if depth == 0:
                break
        try:
            value = ast.literal_eval(text[a : b + 1])
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, dict):
            words = ", ".join(
                f"{str(key).replace('_', ' ')} {' / '.join(map(_num, v)) if isinstance(v, (list, tuple)) else _num(v)}"
                for key, v in value.items()
            )
            out.append(text[k:a] + words)
        else:
            out.append(text[k : b + 1])
        k = b + 1
    return "".join(out) + text[k:]


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if v is None:
        return "\u2013"
    return str(v)


def _value_html(v: Any, depth: int = 0) -> str:
    """Any JSON value as HTML: mappings as lists of "Key: value", lists of mappings as tables."""
    if isinstance(v, Mapping):
        if not v:
            return "\u2013"
        items = "".join(f"<li><b>{esc(_words(k))}:</b> {_value_html(x, depth + 1)}</li>" for k, x in v.items())
        return f"<ul>{items}</ul>"
    if isinstance(v, Sequence) and not isinstance(v, str):
        if v and all(isinstance(x, Mapping) for x in v):
            keys = list(dict.fromkeys(k for x in v for k in x))
            head = "".join(f"<th>{esc(_words(k))}</th>" for k in keys)
            body = "".join("<tr>" + "".join(f"<td>{esc(_num(x.get(k)))}</td>" for k in keys) + "</tr>" for x in v)
            return f"<table border='1' cellspacing='0' cellpadding='3'><tr>{head}</tr>{body}</table>"
        if v and all(not isinstance(x, (Mapping, list, tuple)) for x in v) and depth > 0:
            return esc(", ".join(_num(x) for x in v))
        return "<ul>" + "".join(f"<li>{_value_html(x, depth + 1)}</li>" for x in v) + "</ul>"
    return esc(_tidy(_num(v)))


def _level(title: str, m: Mapping[str, Any] | None, threshold: float | None) -> str:
    """One sentence for a ``binary_stats``-like block (n, AUC, sensitivity, specificity)."""
    if not isinstance(m, Mapping):
        return ""
    parts = []
    if m.get("auc") is not None:
        parts.append(f"AUC {_num(m['auc'])}")
    at = f" at the voting threshold {threshold:.2f}" if threshold is not None else ""
    stats = [
        f"{name} {m[k]:.2f}"
        for k, name in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("accuracy", "accuracy"))
        if isinstance(m.get(k), (int, float))
    ]
    if stats:
        parts.append(", ".join(stats) + at)
    n = f" (n = {m['n']})" if m.get("n") is not None else ""
    return f"<li><b>{esc(title)}</b>{esc(n)}: {esc('; '.join(parts))}</li>"


def about_html(card: ModelCard | None, model_path: str | None, second_reading: Any = None) -> str:
    """The About document (HTML)."""
    p = [
        f"<h2>LungCT Viewer {esc(__version__)}</h2>",
        f"<p style='color:#ff8080'><b>{esc(RESEARCH_NOTICE)}.</b></p>",
        "<p>A sliding-window CNN classifies 50 x 50 patches of every slice as Not ROI, benign or malignant; the "
        "red overlay shows where enough patches vote ROI. Localised 3-D candidates are read as lesions, a second "
        "reading scores how nodule-like each one is in 3-D, and the patient-level call is the majority vote of "
        "the lesions that pass.</p>",
    ]
    if card is None:
        p.append("<p><i>No model card could be read.</i></p>")
    else:
        m = card.metrics or {}
        op = card.operating_point or {}
        t = op.get("voting_threshold")
        p.append(f"<h3>Model: {esc(card.name)}, version {esc(card.version)}</h3>")
        facts = [
            ("Created", card.created),
            ("File", model_path or ""),
            ("Intended use", card.intended_use),
            ("Architecture", card.architecture),
            ("Input", card.preprocessing),
        ]
        rows = "".join(f"<tr><td valign='top'><b>{esc(k)}</b></td><td>{esc(str(v))}</td></tr>" for k, v in facts if v)
        p.append(f"<table cellpadding='2'>{rows}</table>")
        if op:
            p.append("<h3>Operating point</h3><ul>")
            if t is not None:
                why = f" ({op['voting_threshold_reason']})" if op.get("voting_threshold_reason") else ""
                p.append(f"<li>Voting threshold {float(t):.2f}{esc(why)}</li>")
            p.extend(
                f"<li>{esc(_words(k))}: {esc(_num(v))}</li>"
                for k, v in op.items()
                if k not in ("voting_threshold", "voting_threshold_reason")
            )
            p.append("</ul>")
        if m:
            split = m.get("held_back_split", "test")
            p.append(f"<h3>Performance on held-back data ({esc(str(split))} split)</h3><ul>")
            thr = float(t) if t is not None else None
            p.append(_level("Nodules", m.get("nodule_level"), thr))
            p.append(_level(f"Patients ({split})", m.get("patient_level"), thr))
            p.append(
                _level(
                    "Patients (validation; the threshold was chosen on them)", m.get("validation_patient_level"), thr
                )
            )
            patch = m.get("patch_level") or {}
            if patch:
                p.append(
                    f"<li><b>Patches</b> (n = {esc(_num(patch.get('n')))}): "
                    f"accuracy {esc(_num(patch.get('accuracy')))}; "
                    f"recall per class: {_value_html(patch.get('per_class_recall'), 1)}</li>"
                )
            p.append("</ul>")
            if m.get("whole_studies"):
                p.append("<h4>Whole studies</h4>" + _value_html(m["whole_studies"]))
            if m.get("pasted_nodules"):
                p.append("<h4>Nodules of held-back patients in whole studies</h4>" + _value_html(m["pasted_nodules"]))
            rest = {
                k: v
                for k, v in m.items()
                if k
                not in (
                    "held_back_split",
                    "nodule_level",
                    "patient_level",
                    "validation_patient_level",
                    "patch_level",
                    "whole_studies",
                    "pasted_nodules",
                )
            }
            if rest:
                p.append("<h4>More figures</h4>" + _value_html(rest))
        if card.training_data:
            p.append("<h3>Training data</h3>" + _value_html(card.training_data))
        if card.training:
            p.append("<h3>Training</h3>" + _value_html(card.training))
        if card.deviations_from_method:
            p.append("<h3>Deviations from the published method</h3>" + _value_html(card.deviations_from_method))
        if card.notes:
            p.append("<h3>Notes and limits</h3>" + _value_html(card.notes))
    if second_reading is not None:
        sr = second_reading
        p.append(
            f"<h3>Second reading, version {esc(str(sr.version))}</h3>"
            f"<p>A logistic regression over the 3-D shape of each candidate ({esc(', '.join(sr.features))}); "
            f"a candidate is a finding when its suspicion reaches {float(sr.threshold):.2f}"
            + (
                f" ({float(sr.thick_threshold):.2f} on series whose slices lie more than "
                f"{float(sr.thick_slice_mm):g} mm apart)"
                if sr.thick_threshold is not None
                else ""
            )
            + ".</p>"
        )
        if sr.evaluation:
            p.append("<h4>Evaluation</h4>" + _value_html(sr.evaluation))
        if sr.training:
            p.append("<h4>Fitted on</h4>" + _value_html(sr.training))
        if sr.notes:
            p.append(_value_html(sr.notes))
    else:
        p.append("<h3>Second reading</h3><p>None is installed beside the model: every candidate is a finding.</p>")
    licences = list(card.licences) if card is not None else []
    p.append("<h3>Data licences and attribution</h3>" + _value_html([*licences, f"Demo study: {ATTRIBUTION}"]))
    return "".join(p)


class AboutDialog(QtWidgets.QDialog):
    """A scrollable document that fits the screen."""

    def __init__(self, title: str, html_text: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        lay = QtWidgets.QVBoxLayout(self)
        self.browser = QtWidgets.QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(html_text)
        lay.addWidget(self.browser)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        lay.addWidget(buttons)
        screen = (parent.screen() if parent is not None else None) or QtWidgets.QApplication.primaryScreen()
        avail = screen.availableGeometry()
        self.setMaximumHeight(int(avail.height() * MAX_SCREEN_SHARE))
        self.resize(min(760, int(avail.width() * 0.9)), int(avail.height() * MAX_SCREEN_SHARE))
