"""Every modal question the window asks goes through :class:`Dialogs`.

Tests replace it with a scripted object so that no modal dialog ever blocks them.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtWidgets


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

    def open_file(self, parent: QtWidgets.QWidget | None, start: str = "") -> str | None:
        """A reference annotation file (DICOM SEG, RT structure set, LIDC reading XML)."""
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            parent,
            "Open reference annotations",
            start,
            "Reference annotations (*.dcm *.DCM *.xml *.XML);;All files (*)",
        )
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
        from .about import AboutDialog

        AboutDialog(title, html_text, parent).exec()
