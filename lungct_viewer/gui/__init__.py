"""Qt user interface (PySide6 + pyqtgraph). Owns no maths: every computation is a core call."""
