"""Shared fixtures: the real-data directory (skips cleanly when absent) and offscreen Qt."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def data_dir() -> Path:
    """Shared real data: ``$LUNGCT_DATA_DIR`` or ``../shared/data`` beside the repository."""
    from lungct_viewer.core.userdirs import default_data_dir

    return default_data_dir()


def _need(rel: str) -> Path:
    p = data_dir() / rel
    if not p.exists():
        pytest.skip(f"real data not present: {p} (set LUNGCT_DATA_DIR)")
    return p


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    return _need("")


@pytest.fixture(scope="session")
def lidc_0001() -> Path:
    return _need("lidc-idri/LIDC-IDRI-0001")


@pytest.fixture(scope="session")
def lidc_0005() -> Path:
    return _need("lidc-idri/LIDC-IDRI-0005")


@pytest.fixture(scope="session")
def lung_dx_a0001() -> Path:
    return _need("lung-pet-ct-dx/Lung_Dx-A0001")


@pytest.fixture(scope="session")
def lidc_nodules() -> Path:
    return _need("lidc-nodules")


@pytest.fixture(scope="session")
def phantom_model(tmp_path_factory):
    """``(path, held-out accuracy)`` of the CNN trained briefly on phantom patches."""
    from phantom_model import train_phantom_model

    return train_phantom_model(tmp_path_factory.mktemp("phantom-model"))


@pytest.fixture(scope="session")
def phantom_study(tmp_path_factory):
    """A written phantom DICOM series (seed 5, 12 slices, 256 px) and its Phantom object."""
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    ph = phantom_volume(seed=5, n_slices=12, size=256)
    folder = write_phantom_dicom(ph, tmp_path_factory.mktemp("phantom-study") / "PHANTOM")
    return folder, ph
