"""Qt user interface (PySide6 + pyqtgraph). Owns no maths: every computation is a core call."""

from ._qt_compat import protect_singletons

protect_singletons()
