"""Every file bundled with pydicom (compressed, big-endian, truncated, odd VRs, non-CT ...):
copied alone into a folder, ``load_study`` either loads it or raises StudyLoadError with a
readable message. Nothing else may escape."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_files

from lungct_viewer.core.dicom import load_study
from lungct_viewer.core.errors import StudyLoadError
from lungct_viewer.core.study import CTVolume

FILES = sorted(f for f in get_testdata_files() if os.path.isfile(f))

pytestmark = pytest.mark.filterwarnings("ignore")


def test_corpus_is_present() -> None:
    assert len(FILES) > 100


def test_every_file_loads_or_fails_clearly(tmp_path: Path) -> None:
    loaded, refused = [], []
    for i, src in enumerate(FILES):
        folder = tmp_path / f"{i:03d}"
        folder.mkdir()
        shutil.copyfile(src, folder / os.path.basename(src))
        try:
            vol, scan = load_study(folder)
        except StudyLoadError as exc:
            msg = str(exc)
            assert msg and msg[0].isupper() and msg.rstrip().endswith("."), (src, msg)
            assert "Traceback" not in msg
            refused.append(src)
        except Exception as exc:  # pragma: no cover - the point of the test
            pytest.fail(f"{os.path.basename(src)} raised {type(exc).__name__}: {exc}")
        else:
            assert isinstance(vol, CTVolume)
            assert vol.hu.ndim == 3 and vol.num_slices >= 1
            assert len(scan.series) == 1
            loaded.append(src)
        finally:
            shutil.rmtree(folder)
    names = {os.path.basename(f) for f in loaded}
    # the CT images of the corpus load, including compressed ones
    assert "CT_small.dcm" in names
    assert any("J2K" in n for n in names)
    assert refused, "non-CT files must be refused"


def test_all_corpus_ct_in_one_folder(tmp_path: Path) -> None:
    """The whole corpus in one folder: CT slices are found, everything else is skipped."""
    for i, src in enumerate(FILES):
        shutil.copyfile(src, tmp_path / f"{i:03d}_{os.path.basename(src)}")
    try:
        vol, scan = load_study(tmp_path)
    except StudyLoadError as exc:
        pytest.fail(f"corpus folder refused: {exc}")
    assert len(scan.skipped) > 100
    assert all(s.reason.endswith(".") for s in scan.skipped)
    for info in scan.series:
        try:
            load_study(tmp_path, series_uid=info.uid)
        except StudyLoadError:
            pass


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_J2KI.dcm"])
def test_truncated_and_corrupted_ct(tmp_path: Path, name: str) -> None:
    """CT files cut at many lengths, or with bytes overwritten, never escape the error family."""
    src = next(f for f in FILES if os.path.basename(f) == name)
    data = Path(src).read_bytes()
    cuts = sorted({int(len(data) * k / 20) for k in range(1, 20)} | {128, 132, 200, len(data) - 1})
    variants = [data[:c] for c in cuts]
    for k in range(1, 10):
        pos = int(len(data) * k / 10)
        variants.append(data[:pos] + b"\xff" * 16 + data[pos + 16 :])
    for i, blob in enumerate(variants):
        folder = tmp_path / f"v{i:03d}"
        folder.mkdir()
        (folder / name).write_bytes(blob)
        try:
            load_study(folder)
        except StudyLoadError:
            pass
        except Exception as exc:  # pragma: no cover
            pytest.fail(f"variant {i} of {name} raised {type(exc).__name__}: {exc}")
