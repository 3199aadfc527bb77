"""Every modal question the window asks goes through :class:`Dialogs`.

Tests replace it with a scripted object so that no modal dialog ever blocks them.
"""

from __future__ import annotations

import html
from typing import Sequence

from PySide6 import QtCore, QtWidgets

from lungct_viewer import RESEARCH_NOTICE


class Dialogs:
    """The real, modal dialogs."""

    def error(self, parent: QtWidgets.QWidget | None, title: str, text: str, details: str = "") -> None:
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, text, parent=parent)
        if details:
            box.setDetailedText(details)
        box.exec()

    def question(self, parent: QtWidgets.QWidget | None, title: str, text: str) -> bool:
        res = QtWidgets.QMessageBox.question(parent, title, text)
        return res == QtWidgets.QMessageBox.StandardButton.Yes

    def open_folder(self, parent: QtWidgets.QWidget | None, start: str = "") -> str | None:
        path = QtWidgets.QFileDialog.getExistingDirectory(parent, "Open a CT study folder", start)
        return path or None

    def export_folder(self, parent: QtWidgets.QWidget | None, start: str = "") -> str | None:
        path = QtWidgets.QFileDialog.getExistingDirectory(parent, "Export annotated slices to", start)
        return path or None

    def choose_series(self, parent: QtWidgets.QWidget | None, summaries: Sequence[str], default: int) -> int | None:
        item, ok = QtWidgets.QInputDialog.getItem(
            parent,
            "Choose a series",
            "This folder holds several series. Which one do you want to read?",
            list(summaries),
            default,
            False,
        )
        if not ok:
            return None
        return list(summaries).index(item)

    def about(self, parent: QtWidgets.QWidget | None, title: str, html_text: str) -> None:
        box = QtWidgets.QMessageBox(parent)
        box.setWindowTitle(title)
        box.setTextFormat(QtCore.Qt.TextFormat.RichText)
        box.setText(html_text)
        box.exec()


def model_card_html(card, model_path: str | None) -> str:
    """The About text: the notice first, then the model card's essentials."""
    esc = html.escape
    parts = [
        "<h3>LungCT Viewer</h3>",
        f"<p style='color:#c0392b'><b>{esc(RESEARCH_NOTICE)}</b></p>",
        "<p>Sliding-window CNN detection of lung tumours on chest CT, with a patient-level "
        "benign/malignant majority vote.</p>",
    ]
    if card is None:
        parts.append("<p><i>No model is loaded yet.</i></p>")
        if model_path:
            parts.append(f"<p>Model file: {esc(str(model_path))}</p>")
        return "".join(parts)
    parts.append(f"<h4>Model: {esc(str(card.name))} &mdash; version {esc(str(card.version))}</h4>")
    if model_path:
        parts.append(f"<p>File: {esc(str(model_path))}</p>")
    if card.intended_use:
        parts.append(f"<p><b>Intended use:</b> {esc(str(card.intended_use))}</p>")

    def _list(title: str, items) -> None:
        if not items:
            parts.append(f"<p><b>{title}:</b> not stated</p>")
            return
        parts.append(f"<p><b>{title}:</b></p><ul>")
        for it in items:
            parts.append(f"<li>{esc(str(it))}</li>")
        parts.append("</ul>")

    def _dict(title: str, d) -> None:
        if not d:
            parts.append(f"<p><b>{title}:</b> not stated</p>")
            return
        parts.append(f"<p><b>{title}:</b></p><ul>")
        for k, v in d.items():
            if isinstance(v, float):
                v = f"{v:.3g}"
            elif isinstance(v, dict):
                v = ", ".join(
                    f"{kk}: {vv:.3g}" if isinstance(vv, float) else f"{kk}: {vv}" for kk, vv in v.items()
                )
            parts.append(f"<li>{esc(str(k))}: {esc(str(v))}</li>")
        parts.append("</ul>")

    _list("Training data", card.training_data)
    _dict("Metrics", card.metrics)
    _dict("Operating point", card.operating_point)
    _list("Data licences", card.licences)
    return "".join(parts)
