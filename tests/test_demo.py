"""The demo study: a losslessly compressed slab of LIDC-IDRI-0001, or the phantom without data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lungct_viewer.core import demo
from lungct_viewer.core.dicom import load_study
from lungct_viewer.core.userdirs import default_data_dir

J2K_LOSSLESS, RLE_LOSSLESS, EXPLICIT_LE = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1"


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
        if p.is_file():
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.mark.realdata
def test_demo_slab_is_lidc_0001_around_its_nodule_losslessly_compressed(tmp_path: Path, real_data_dir, lidc_0001):
    before = _fingerprint(lidc_0001)
    folder = demo.ensure_demo_study(tmp_path / "cache", data_dir=real_data_dir)
    assert _fingerprint(lidc_0001) == before, "the source study was modified"
    assert folder == tmp_path / "cache" / demo.DEMO_NAME
    assert not demo.is_synthetic(folder)
    assert "LIDC-IDRI-0001" in demo.demo_study_note(folder) and "CC BY 3.0" in demo.demo_study_note(folder)

    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{i + 1:04d}.dcm" for i in range(demo.SLAB_SLICES)]
    assert {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files} == {
        J2K_LOSSLESS
    }
    assert sum(f.stat().st_size for f in files) < 6_000_000  # 24 x 512 KB uncompressed

    vol, scan = load_study(folder)
    src, _ = load_study(lidc_0001)
    assert vol.shape == (demo.SLAB_SLICES, 512, 512) and vol.warnings == () and scan.skipped == ()
    assert vol.description == demo.SLAB_DESCRIPTION
    k = src.sop_instance_uids.index(vol.sop_instance_uids[0])  # the same instances, in order
    assert vol.sop_instance_uids == src.sop_instance_uids[k : k + demo.SLAB_SLICES]
    np.testing.assert_array_equal(vol.hu, src.hu[k : k + demo.SLAB_SLICES])  # lossless
    z = vol.slice_positions_mm
    assert z[0] > -107.5 and z[-1] < -125.0, "the slab spans the whole nodule"
    assert abs((z[0] + z[-1]) / 2 - demo.NODULE_CENTRE_Z_MM) < 2.5

    # cached: nothing rewritten; a damaged cache is rebuilt
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert demo.ensure_demo_study(tmp_path / "cache", data_dir=real_data_dir) == folder
    assert [f.stat().st_mtime_ns for f in sorted(folder.iterdir())] == mtimes
    files[3].unlink()
    assert demo.ensure_demo_study(tmp_path / "cache", data_dir=real_data_dir) == folder
    assert len(list(folder.iterdir())) == demo.SLAB_SLICES
    # once built, the slab is used even when the data are gone
    assert demo.ensure_demo_study(tmp_path / "cache", data_dir=tmp_path / "no-data") == folder
    assert _fingerprint(lidc_0001) == before


def test_without_data_the_demo_is_the_labelled_phantom(tmp_path: Path, monkeypatch) -> None:
    built: list[Path] = []

    def phantom_study(cache_dir):
        built.append(Path(cache_dir))
        return Path(cache_dir) / "demo-v1"

    monkeypatch.setattr(demo, "ensure_phantom_study", phantom_study)
    folder = demo.ensure_demo_study(tmp_path / "cache", data_dir=tmp_path / "no-data")
    assert built == [tmp_path / "cache"] and folder == tmp_path / "cache" / "demo-v1"
    assert demo.is_synthetic(folder)
    assert "synthetic phantom, not a patient" in demo.demo_study_note(folder)
    assert not (tmp_path / "cache" / demo.DEMO_NAME).exists()


def test_the_gui_entry_point_is_the_demo_study(tmp_path: Path, monkeypatch) -> None:
    """``phantom.ensure_demo_study`` (what the viewer calls) is the real-or-phantom demo."""
    from lungct_viewer.core import phantom

    monkeypatch.setenv("LUNGCT_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setattr(demo, "ensure_phantom_study", lambda cache_dir: Path(cache_dir) / "demo-v1")
    assert default_data_dir() == tmp_path / "no-data"
    assert phantom.ensure_demo_study(tmp_path / "c") == tmp_path / "c" / "demo-v1"


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory) -> Path:
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    folder = write_phantom_dicom(phantom_volume(seed=9, n_slices=1, size=128), tmp_path_factory.mktemp("p"))
    return folder / "0001.dcm"


@pytest.mark.parametrize(
    ("syntaxes", "expected"),
    [
        ((J2K_LOSSLESS, RLE_LOSSLESS), J2K_LOSSLESS),
        ((RLE_LOSSLESS,), RLE_LOSSLESS),
        (("1.2.3.4.5.6.7",), EXPLICIT_LE),  # no such encoder: left uncompressed
    ],
)
def test_slice_encoding_is_lossless_or_left_alone(tmp_path: Path, phantom_file: Path, syntaxes, expected) -> None:
    before = phantom_file.read_bytes()
    data, uid = demo._encode_slice(str(phantom_file), syntaxes)
    assert phantom_file.read_bytes() == before
    assert uid == expected
    out = tmp_path / "x.dcm"
    out.write_bytes(data)
    ds, src = pydicom.dcmread(out), pydicom.dcmread(phantom_file)
    assert str(ds.file_meta.TransferSyntaxUID) == expected
    assert ds.SOPInstanceUID == src.SOPInstanceUID and ds.SeriesDescription == src.SeriesDescription
    np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)
