"""The core layer never imports Qt; light core modules do not import TensorFlow; neither the
core nor the viewer imports the training package."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_core_imports_without_qt_or_tensorflow():
    code = (
        "import sys\n"
        "import lungct_viewer.core.study, lungct_viewer.core.dicom, lungct_viewer.core.detection\n"
        "import lungct_viewer.core.voting, lungct_viewer.core.render, lungct_viewer.core.export\n"
        "import lungct_viewer.core.report, lungct_viewer.core.preprocessing, lungct_viewer.core.phantom\n"
        "import lungct_viewer.core.model, lungct_viewer.core.pipeline, lungct_viewer.cli\n"
        "import lungct_viewer.core.references, lungct_viewer.core.lidc\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'tensorflow', 'keras'))]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_full_core_including_inference_never_imports_qt():
    code = (
        "import sys, lungct_viewer.core.inference, lungct_viewer.core.pipeline\n"
        "from lungct_viewer.core.model import build_model\n"
        "build_model(0)\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_core_and_viewer_never_import_training():
    package = Path(__file__).resolve().parents[1] / "lungct_viewer"
    pattern = re.compile(r"^\s*(from|import)\s+training\b", re.MULTILINE)
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
