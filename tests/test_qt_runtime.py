"""Guard against Qt bindings that corrupt reference counts (PySide6 6.12.0 on Python 3.11
released a reference to ``None`` on every void call, aborting the viewer after a while)."""

from __future__ import annotations

import sys

import pytest


@pytest.mark.gui
@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="None is immortal from Python 3.12 on: its reference count cannot drop, so this check proves nothing",
)
def test_void_qt_calls_keep_none_refcount(qtbot):
    from PySide6.QtWidgets import QLabel

    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
        label.setVisible(False)
    assert sys.getrefcount(None) - before > -100
