"""Guard against a PySide6 6.12 reference-count bug on Python < 3.12.

With PySide6 6.12.0 on CPython 3.11, every call of a Qt method that returns ``void``
(``QLabel.setText``, ``QWidget.setVisible``, ``QObject.setObjectName``, ...) releases one
reference to ``None`` that it never took (measure it with ``sys.getrefcount(None)``). A viewer
makes thousands of such calls per minute of scrolling, so after a few thousand calls
CPython frees ``None`` and aborts with "Fatal Python error: none_dealloc".

From Python 3.12 on, ``None``, ``True`` and ``False`` are immortal and the bug is harmless.
On older interpreters these singletons are statically allocated and never freed, so raising
their reference counts by a large constant is safe: it only keeps the bug from ever
reaching zero (2**40 stray releases are not reachable in practice).
"""

from __future__ import annotations

import ctypes
import sys

_MARGIN = 1 << 40
_done = False


def protect_singletons() -> None:
    """Make ``None``/``True``/``False`` immune to stray reference releases (idempotent)."""
    global _done
    if _done or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        _done = True
        return
    for obj in (None, True, False, Ellipsis, NotImplemented, ()):
        ref = ctypes.c_ssize_t.from_address(id(obj))
        ref.value += _MARGIN
    _done = True
