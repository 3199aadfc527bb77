"""A regular (non-editable) install ships the model and the style, and ``analyze`` runs from it.

The test builds a wheel from a copy of the source tree (offline, with the test environment's
setuptools), installs it without dependencies into a fresh virtual environment, and points
that environment at the test environment's site-packages for the dependencies only (numpy,
pydicom, TensorFlow, ...: reinstalling them would take minutes and prove nothing about this
package). The repository is neither on ``sys.path`` nor the working directory, and the
editable install of the test environment is not active there (its ``.pth`` hook is not
processed for a directory added by path), so every ``lungct_viewer`` file it uses comes from
the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: What a source distribution of the project holds (tests, benchmarks and docs are not shipped).
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "lungct_viewer", "training", "resources"]


def _run(cmd: list[str | os.PathLike[str]], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    r = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert r.returncode == 0, f"{cmd[:4]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _package_files(root: Path) -> set[str]:
    """Python files of a package tree, relative to its parent, without caches."""
    return {str(p.relative_to(root.parent)) for p in root.rglob("*.py") if "__pycache__" not in p.parts}


def test_wheel_install_runs_analyze_with_the_shipped_model(tmp_path: Path) -> None:
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    # a copy of the source tree: the build writes its scratch files there, not into the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, src],
        cwd=tmp_path,
    )
    [wheel] = wheels.glob("lungct_viewer-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for shipped in ("model/lungct_cnn.keras", "model/model_card.json", "style/dark.qss"):
        assert f"lungct_viewer/resources/{shipped}" in names, f"{shipped} is not in the wheel"

    # a fresh environment with the wheel installed, not editable
    env_dir = tmp_path / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", env_dir], cwd=tmp_path)
    py = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheel], cwd=tmp_path)
    purelib = Path(
        _run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path).stdout.strip()
    )
    deps = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()]
    (purelib / "zz_test_dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    code = (
        "import lungct_viewer, lungct_viewer.resources as r, lungct_viewer.core.pipeline as p; "
        "print(lungct_viewer.__file__); print(p.default_model_path()); print(r.STYLE_DIR)"
    )
    where = _run([py, "-c", code], cwd=tmp_path, env=env).stdout.split()
    for path in where:
        assert Path(path).resolve().is_relative_to(purelib.resolve()), f"{path} is not from the installed wheel"
    model = Path(where[1])
    assert model.read_bytes() == (REPO / "resources" / "model" / "lungct_cnn.keras").read_bytes()
    assert (Path(where[2]) / "dark.qss").is_file()
    # every module of the source tree was installed (the package list in pyproject.toml is complete)
    for top in ("lungct_viewer", "training"):
        assert _package_files(REPO / top) <= _package_files(purelib / top)

    # the console script analyses a small study with the shipped model
    study = write_phantom_dicom(phantom_volume(seed=4, n_slices=3, size=192), tmp_path / "study")
    out = tmp_path / "out"
    _run([env_dir / "bin" / "lungct-viewer", "analyze", study, "--out", out, "--quiet"], cwd=tmp_path, env=env)
    report = json.loads((out / "report.json").read_text())
    card = json.loads((REPO / "resources" / "model" / "model_card.json").read_text())
    assert report["model"]["version"] == card["version"]
    assert report["diagnosis"]["label"]
