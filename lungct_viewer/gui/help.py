"""The Help menu: Keyboard shortcuts, Model performance (follows the voting threshold) and About.

Shortcuts and performance are non-modal windows, one of each; About goes through the
window's :class:`~.dialogs.Dialogs` (scripted in tests).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore, QtWidgets

from .about import about_html
from .actions import ShortcutsDialog
from .analysis import ModelLoader
from .dialogs import Dialogs
from .performance import PerformanceDialog


class HelpWindows(QtCore.QObject):
    """Opens the Help dialogs for ``parent``; ``threshold()`` is the voting threshold on screen."""

    def __init__(
        self, parent: QtWidgets.QWidget, model: ModelLoader, dialogs: Dialogs, threshold: Callable[[], float | None]
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self._model = model
        self._dialogs = dialogs
        self._threshold = threshold
        self.open: dict[str, QtWidgets.QDialog] = {}

    def show_about(self) -> None:
        html = about_html(self._model.card(), str(self._model.path), self._model.second_reading())
        self._dialogs.about(self._parent, "About LungCT Viewer", html)

    def show_shortcuts(self) -> None:
        self._show("shortcuts", lambda: ShortcutsDialog(self._parent))

    def show_performance(self) -> None:
        card = self._model.card()
        t = self._threshold()
        t = float(card.operating_point.get("voting_threshold", 0.5)) if t is None else t
        self._show("performance", lambda: PerformanceDialog(card, t, self._parent))

    def set_threshold(self, threshold: float) -> None:
        """The voting threshold moved: mark it on the performance curve."""
        if "performance" in self.open:
            self.open["performance"].set_threshold(threshold)

    def close_all(self) -> None:
        for dlg in list(self.open.values()):
            dlg.close()

    def _show(self, key: str, make: Callable[[], QtWidgets.QDialog]) -> None:
        if key not in self.open:
            self.open[key] = dlg = make()
            dlg.finished.connect(lambda _r, key=key: self.open.pop(key, None))
        self.open[key].show()
        self.open[key].raise_()
