"""Loading real CT studies (and broken copies of them) with :mod:`lungct_viewer.core.dicom_io`."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lungct_viewer.core.dicom_io import (
    LoadCancelled,
    PADDING_HU,
    load_series,
    load_study,
    scan_folder,
)
from lungct_viewer.core.errors import AnalysisCancelled, StudyLoadError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _dcm_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm"))


def _tree_fingerprint(folder: Path) -> str:
    """Names, sizes, mtimes and a content hash of every file below ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
        if p.is_file():
            with open(p, "rb") as fh:
                h.update(hashlib.sha256(fh.read(4096)).digest())
    return h.hexdigest()


@pytest.fixture(scope="module")
def lidc1_files(lidc_0001: Path) -> list[Path]:
    files = _dcm_files(lidc_0001)
    assert len(files) == 133
    return files


@pytest.fixture(scope="module")
def lidc1_subset(lidc1_files: list[Path]) -> list[Path]:
    """12 consecutive slices, in position order (head first), as the loader sorts them."""
    order = sorted(
        lidc1_files,
        key=lambda p: -float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]),
    )
    return order[60:72]


def _copy(files: list[Path], dest: Path, names: list[str] | None = None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, dest / (names[i] if names else f.name))
    return dest


# ------------------------------------------------------------------------------ real studies


def test_lidc_0001_loads_correctly(lidc_0001: Path) -> None:
    before = _tree_fingerprint(lidc_0001)
    vol, scan = load_study(lidc_0001)
    assert _tree_fingerprint(lidc_0001) == before, "the source folder was modified"

    assert len(scan.series) == 1
    info = scan.series[0]
    assert info.num_slices == 133 and info.modality == "CT" and info.is_axial
    assert info.rows == 512 and info.cols == 512
    assert info.slice_spacing_mm == pytest.approx(2.5)
    assert info.manufacturer.startswith("GE")
    # the LIDC reading file is not DICOM: skipped with a reason
    assert [Path(s.path).name for s in scan.skipped] == ["069.xml"]
    assert "not a DICOM file" in scan.skipped[0].reason

    assert vol.shape == (133, 512, 512) and vol.hu.dtype == np.int16
    assert vol.pixel_spacing_mm == pytest.approx((0.703125, 0.703125))
    assert vol.slice_spacing_mm == pytest.approx(2.5)
    z = vol.slice_positions_mm
    assert np.all(np.diff(z) < 0), "index 0 must be the most superior slice"
    assert np.allclose(np.diff(z), -2.5, atol=0.01)
    assert vol.orientation.tolist() == [1, 0, 0, 0, 1, 0]
    assert len(set(vol.sop_instance_uids)) == 133
    assert vol.study_uid and vol.series_uid == info.uid
    assert vol.warnings == ()

    mid = vol.hu[66]
    air = float(mid[20:40, 240:270].mean())  # in front of the chest, inside the field of view
    assert -1050 < air < -950
    tissue = mid[(mid > -150) & (mid < 150)]
    assert tissue.size > 0.05 * mid.size
    assert -80 < float(np.median(tissue)) < 100
    assert vol.hu.min() >= -2048 and vol.hu.max() <= 3071


def test_lidc_0005_loads_correctly(lidc_0005: Path) -> None:
    vol, scan = load_study(lidc_0005)
    assert vol.shape == (133, 512, 512)
    assert vol.pixel_spacing_mm == pytest.approx((0.664062, 0.664062))
    assert vol.slice_spacing_mm == pytest.approx(2.5)
    assert np.all(np.diff(vol.slice_positions_mm) < 0)
    assert vol.warnings == ()
    assert [Path(s.path).name for s in scan.skipped] == ["076.xml"]


def test_lung_dx_two_series_never_mixed(lung_dx_a0001: Path) -> None:
    scan = scan_folder(lung_dx_a0001)
    assert len(scan.series) == 2
    assert sorted(s.kernel for s in scan.series) == ["B", "L"]
    assert all(s.num_slices == 64 and s.is_axial for s in scan.series)
    for s in scan.series:
        assert len({Path(f).parent for f in s.files}) == 1, "a series mixes folders"
        assert "64 slices" in s.summary()

    default = scan.default_series()
    assert default is scan_folder(lung_dx_a0001).default_series() or (
        default.uid == scan_folder(lung_dx_a0001).default_series().uid
    )
    assert default.kernel == "L"  # series 2 (lung kernel): lowest series number wins ties

    vol_default, _ = load_study(lung_dx_a0001)
    other = next(s for s in scan.series if s.uid != default.uid)
    vol_other, _ = load_study(lung_dx_a0001, series_uid=other.uid)
    assert vol_default.series_uid == default.uid and vol_other.series_uid == other.uid
    assert vol_default.shape == vol_other.shape == (64, 512, 512)
    assert not set(vol_default.sop_instance_uids) & set(vol_other.sop_instance_uids)
    # same table positions, different reconstructions
    assert np.allclose(vol_default.slice_positions_mm, vol_other.slice_positions_mm)
    assert vol_default.slice_spacing_mm == pytest.approx(5.0)
    assert not np.array_equal(vol_default.hu, vol_other.hu)


def test_unknown_series_uid_lists_available(lung_dx_a0001: Path) -> None:
    with pytest.raises(StudyLoadError, match="not in .*Series available.*64 slices"):
        load_study(lung_dx_a0001, series_uid="1.2.3.4.5")


# ---------------------------------------------------------------------------- broken copies


def test_shuffled_and_renamed_files_sort_by_position(tmp_path: Path, lidc1_subset) -> None:
    ref, _ = load_study(_copy(lidc1_subset, tmp_path / "ref"))
    names = [f"x{random.Random(1).random():.6f}_{i}.dcm" for i in range(len(lidc1_subset))]
    random.Random(7).shuffle(names)
    vol, _ = load_study(_copy(lidc1_subset, tmp_path / "shuffled", names))
    assert vol.sop_instance_uids == ref.sop_instance_uids
    assert np.array_equal(vol.hu, ref.hu)
    expected = tuple(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in lidc1_subset)
    assert vol.sop_instance_uids == expected


def test_duplicate_slice_kept_once_with_warning(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset, tmp_path / "dup")
    shutil.copyfile(lidc1_subset[5], folder / "copy_of_slice.dcm")
    vol, scan = load_study(folder)
    assert scan.series[0].num_slices == 13
    assert vol.num_slices == 12
    assert any("duplicate" in w for w in vol.warnings), vol.warnings
    assert np.all(np.diff(vol.slice_positions_mm) < 0)


def test_missing_slice_reports_uneven_spacing(tmp_path: Path, lidc1_subset) -> None:
    files = lidc1_subset[:5] + lidc1_subset[6:]
    vol, _ = load_study(_copy(files, tmp_path / "gap"))
    assert vol.num_slices == 11
    [w] = [w for w in vol.warnings if "uneven" in w]
    assert "2.50 mm" in w and "5.00 mm" in w and "missing" in w


def test_junk_and_text_files_are_skipped_with_reasons(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset, tmp_path / "mixed")
    (folder / "notes.txt").write_text("patient notes\n")
    (folder / "junk.dcm").write_bytes(os.urandom(3000))
    (folder / "empty.dcm").write_bytes(b"")
    sub = folder / "sub"
    sub.mkdir()
    (sub / "readme.md").write_text("# nothing\n")
    vol, scan = load_study(folder)
    assert vol.num_slices == 12
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert set(reasons) == {"notes.txt", "junk.dcm", "empty.dcm", "readme.md"}
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "not a DICOM file" in reasons["junk.dcm"]
    assert "empty" in reasons["empty.dcm"]
    assert all(r.endswith(".") and r.startswith(n) for n, r in reasons.items())


def test_subfolders_are_scanned(tmp_path: Path, lidc1_subset) -> None:
    _copy(lidc1_subset[:6], tmp_path / "a" / "b")
    _copy(lidc1_subset[6:], tmp_path / "c")
    vol, _ = load_study(tmp_path)
    assert vol.num_slices == 12


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(StudyLoadError, match="No CT images were found.*empty"):
        load_study(tmp_path)


def test_folder_of_junk_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(os.urandom(500))
    with pytest.raises(StudyLoadError) as err:
        load_study(tmp_path)
    msg = str(err.value)
    assert msg.startswith("No CT images were found in")
    assert "2 files skipped" in msg and "not a DICOM file" in msg


def test_nonexistent_path_and_file_path(tmp_path: Path) -> None:
    with pytest.raises(StudyLoadError, match="does not exist"):
        load_study(tmp_path / "nope")
    f = tmp_path / "file.dcm"
    f.write_bytes(b"x")
    with pytest.raises(StudyLoadError, match="is a file, not a folder"):
        load_study(f)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(StudyLoadError, match="cannot be read"):
            load_study(locked)
    finally:
        locked.chmod(0o700)


def test_truncated_slice_is_skipped(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset, tmp_path / "trunc")
    bad = folder / lidc1_subset[3].name
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    vol, scan = load_study(folder)
    assert vol.num_slices == 11
    mentioned = [s.reason for s in scan.skipped] + list(vol.warnings)
    assert any(bad.name in m and ("skipped" in m or "damaged" in m or "decoded" in m)
               for m in mentioned), mentioned


def test_no_slice_decodes(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset[:3], tmp_path / "bad")
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelData = ds.PixelData[:100]
        ds.save_as(f)
    with pytest.raises(StudyLoadError):
        load_study(folder)


def _rewrite(folder: Path, edit) -> None:
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        edit(f, ds)
        ds.save_as(f)


def test_missing_positions_fall_back_to_instance_number(tmp_path: Path, lidc1_subset) -> None:
    ref, _ = load_study(_copy(lidc1_subset, tmp_path / "ref"))
    folder = _copy(lidc1_subset, tmp_path / "nopos")

    def edit(_f, ds):
        del ds.ImagePositionPatient

    _rewrite(folder, edit)
    vol, _ = load_study(folder)
    assert any("instance number" in w for w in vol.warnings)
    ins = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in lidc1_subset]
    expected = [u for _, u in sorted(zip(ins, ref.sop_instance_uids))]
    assert list(vol.sop_instance_uids) == expected
    assert vol.image_positions_mm.shape == (12, 3)


def test_mixed_sizes_drop_minority(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset, tmp_path / "sizes")
    odd = folder / lidc1_subset[4].name
    ds = pydicom.dcmread(odd)
    ds.PixelData = ds.pixel_array[::2, ::2].copy().tobytes()
    ds.Rows, ds.Columns = 256, 256
    ds.save_as(odd)
    vol, _ = load_study(folder)
    assert vol.shape == (11, 512, 512)
    assert any("different size (256 x 256" in w for w in vol.warnings), vol.warnings


def test_padding_and_rescale(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset[:2], tmp_path / "pad")
    raw0 = pydicom.dcmread(lidc1_subset[0]).pixel_array

    def edit(f, ds):
        arr = ds.pixel_array.copy()
        arr[:10, :10] = -2000  # the series' PixelPaddingValue (63536 read as signed)
        ds.PixelData = arr.tobytes()
        ds.RescaleSlope = 2
        ds.RescaleIntercept = -1000

    _rewrite(folder, edit)
    vol, _ = load_study(folder)
    hu = vol.hu[0]
    assert np.all(hu[:10, :10] == PADDING_HU)
    np.testing.assert_array_equal(hu[100:110, 200:210], raw0[100:110, 200:210] * 2 - 1000)


def test_non_axial_series_is_flagged(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset[:3], tmp_path / "cor")

    def edit(_f, ds):
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]

    _rewrite(folder, edit)
    scan = scan_folder(folder)
    assert scan.series[0].is_axial is False
    vol = load_series(scan.series[0])
    assert any("not axial" in w for w in vol.warnings)


def test_non_ct_and_localizer_skipped(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset[:3], tmp_path / "types")
    mr = pydicom.dcmread(lidc1_subset[3])
    mr.Modality = "MR"
    mr.SOPInstanceUID = "2.25.11"
    mr.save_as(folder / "mr.dcm")
    loc = pydicom.dcmread(lidc1_subset[4])
    loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    loc.SeriesInstanceUID = "2.25.12"
    loc.save_as(folder / "scout.dcm")
    vol, scan = load_study(folder)
    assert vol.num_slices == 3 and len(scan.series) == 1
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert "MR" in reasons["mr.dcm"] and "not CT" in reasons["mr.dcm"]
    assert "localizer" in reasons["scout.dcm"]


def test_progress_and_cancel(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset, tmp_path / "p")
    scan = scan_folder(folder)
    calls: list[tuple[int, int]] = []
    load_series(scan.series[0], progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (12, 12)
    assert all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))
    with pytest.raises(LoadCancelled) as err:
        load_series(scan.series[0], cancel=lambda: True)
    assert isinstance(err.value, StudyLoadError) and isinstance(err.value, AnalysisCancelled)
    with pytest.raises(StudyLoadError, match="cancelled"):
        load_study(folder, cancel=lambda: True)


def test_source_folder_untouched_on_errors(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset[:3], tmp_path / "ro")
    (folder / "junk.txt").write_text("junk")
    before = _tree_fingerprint(folder)
    load_study(folder)
    with pytest.raises(StudyLoadError):
        load_study(folder, series_uid="nope")
    assert _tree_fingerprint(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f.name for f in lidc1_subset[:3]] + ["junk.txt"]
    )


def test_fast_and_full_decode_paths_agree(tmp_path: Path, lidc1_subset) -> None:
    """Pixels read at the offset recorded by the scan equal a full pydicom decode."""
    from lungct_viewer.core import dicom_io

    folder = _copy(lidc1_subset[:4], tmp_path / "paths")
    scan = scan_folder(folder)
    fast = load_series(scan.series[0])
    dicom_io._HEADER_CACHE.clear()
    full = load_series(scan.series[0])
    np.testing.assert_array_equal(fast.hu, full.hu)
    assert fast.sop_instance_uids == full.sop_instance_uids
    ref = pydicom.dcmread(lidc1_subset[0])
    expected = ref.pixel_array.astype(np.int32) * int(ref.RescaleSlope) + int(ref.RescaleIntercept)
    i = fast.sop_instance_uids.index(ref.SOPInstanceUID)
    assert np.array_equal(fast.hu[i], expected)  # no padding pixels in the middle slices

    # a file changed after the scan is read again, not from stale offsets
    scan = scan_folder(folder)
    f = folder / lidc1_subset[1].name
    ds = pydicom.dcmread(f)
    ds.RescaleIntercept = -1000
    ds.save_as(f)
    vol = load_series(scan.series[0])
    j = vol.sop_instance_uids.index(ds.SOPInstanceUID)
    np.testing.assert_array_equal(vol.hu[j].astype(np.int32), ds.pixel_array.astype(np.int32) - 1000)


def test_special_files_and_broken_links_are_skipped(tmp_path: Path, lidc1_subset) -> None:
    folder = _copy(lidc1_subset[:3], tmp_path / "special")
    os.mkfifo(folder / "pipe")
    os.symlink(folder / "missing-target", folder / "dangling")
    vol, scan = load_study(folder)
    assert vol.num_slices == 3
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert "not a regular file" in reasons["pipe"]
    assert "could not be opened" in reasons["dangling"]
