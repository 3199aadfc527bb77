"""Files shipped with LungCT Viewer: the model and its card (``model/``) and the style (``style/``).

This folder stays at the top of the repository but is installed as the package
``lungct_viewer.resources`` (``package-dir`` in ``pyproject.toml``), so code finds the files
the same way in an editable install and in a regular (wheel) install.
"""

from __future__ import annotations

from pathlib import Path

#: The folder holding the shipped files.
ROOT = Path(__file__).resolve().parent
#: The shipped model (``lungct_cnn.keras``) and its ``model_card.json``.
MODEL_DIR = ROOT / "model"
#: Qt style sheets.
STYLE_DIR = ROOT / "style"
