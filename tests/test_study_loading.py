"""Loading CT studies with :mod:`lungct_viewer.core.dicom`.

Broken folders (shuffled, duplicated, missing, truncated, mixed, junk, special files) are
built from the synthetic phantom, which is written as real DICOM, so these tests run
without the shared data. Tests on the real studies are marked ``realdata``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lungct_viewer.core.dicom import LoadCancelled, load_series, load_study, scan_folder, select_series
from lungct_viewer.core.dicom.decode import PADDING_HU
from lungct_viewer.core.errors import AnalysisCancelled, StudyLoadError
from lungct_viewer.core.study import SeriesInfo

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

N = 12  # slices of the phantom series the broken copies are made from


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
def series_files(tmp_path_factory) -> list[Path]:
    """A 12-slice phantom series (128 x 128, 2.5 mm apart), files in head-to-feet order."""
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    folder = write_phantom_dicom(phantom_volume(seed=3, n_slices=N, size=128), tmp_path_factory.mktemp("src"))
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == N
    return files


def _copy(files: list[Path], dest: Path, names: list[str] | None = None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, dest / (names[i] if names else f.name))
    return dest


def _rewrite(folder: Path, edit) -> None:
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        edit(f, ds)
        ds.save_as(f)


def _uid(f: Path) -> str:
    return str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)


# ------------------------------------------------------------------------------ real studies


@pytest.mark.realdata
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


@pytest.mark.realdata
def test_lidc_0005_loads_correctly(lidc_0005: Path) -> None:
    vol, scan = load_study(lidc_0005)
    assert vol.shape == (133, 512, 512)
    assert vol.pixel_spacing_mm == pytest.approx((0.664062, 0.664062))
    assert vol.slice_spacing_mm == pytest.approx(2.5)
    assert np.all(np.diff(vol.slice_positions_mm) < 0)
    assert vol.warnings == ()
    assert [Path(s.path).name for s in scan.skipped] == ["076.xml"]


@pytest.mark.realdata
def test_lung_dx_two_series_never_mixed(lung_dx_a0001: Path) -> None:
    scan = scan_folder(lung_dx_a0001)
    assert len(scan.series) == 2
    assert sorted(s.kernel for s in scan.series) == ["B", "L"]
    assert all(s.num_slices == 64 and s.is_axial for s in scan.series)
    for s in scan.series:
        assert len({Path(f).parent for f in s.files}) == 1, "a series mixes folders"

    default = scan.default_series()
    assert default.kernel == "L"  # series 2 (lung kernel): lowest series number wins ties
    assert scan_folder(lung_dx_a0001).default_series().uid == default.uid  # the same every time

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


@pytest.mark.realdata
def test_lung_dx_series_summaries_tell_the_series_apart(lung_dx_a0001: Path) -> None:
    """Same description, size, thickness and time: the kernel and number tell them apart."""
    scan = scan_folder(lung_dx_a0001)
    by_kernel = {s.kernel: s.summary() for s in scan.series}
    assert set(by_kernel) == {"B", "L"}
    assert by_kernel["L"] != by_kernel["B"]
    for kernel, text in by_kernel.items():
        assert "5mm" in text and f"kernel {kernel}" in text and "64 slices" in text, text
        assert "5.0 mm thick" in text and "5.0 mm apart" in text, text
        assert "19:00:47" in text, text  # AcquisitionTime: these files have no SeriesTime
    assert by_kernel["L"].startswith("#2 ") and by_kernel["B"].startswith("#3 ")


@pytest.mark.realdata
def test_unknown_series_uid_lists_available(lung_dx_a0001: Path) -> None:
    with pytest.raises(StudyLoadError, match="not in .*Series available.*kernel L.*64 slices"):
        load_study(lung_dx_a0001, series_uid="1.2.3.4.5")


# --------------------------------------------------------------------------- series summary


def _info(**kw) -> SeriesInfo:
    base = dict(
        uid="2.25.1",
        description="Thorax 1.0 B70f",
        modality="CT",
        num_slices=120,
        rows=512,
        cols=512,
        pixel_spacing_mm=(0.7, 0.68),
        slice_spacing_mm=1.0,
        is_axial=True,
        files=(),
        series_number=4,
        kernel="B70f",
        slice_thickness_mm=1.0,
        series_time="10:32:05",
    )
    base.update(kw)
    return SeriesInfo(**base)


def test_summary_lists_what_tells_series_apart() -> None:
    text = _info().summary()
    assert text == (
        "#4 Thorax 1.0 B70f: kernel B70f, 120 slices, 1.0 mm thick, 1.0 mm apart, 0.68 x 0.70 mm pixels, 10:32:05"
    )
    assert _info(kernel="B30f").summary() != text
    assert _info(slice_thickness_mm=5.0).summary() != text
    assert _info(series_time="10:35:00").summary() != text
    bare = _info(
        description="",
        series_number=None,
        kernel="",
        slice_thickness_mm=None,
        slice_spacing_mm=None,
        series_time="",
        num_slices=1,
        is_axial=False,
    ).summary()
    assert bare == "(no description): 1 slice, 0.68 x 0.70 mm pixels, not axial"


def test_scan_reads_kernel_thickness_and_time(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files[:4], tmp_path / "k")

    def edit(_f, ds):
        ds.ConvolutionKernel = "B45f"
        ds.SliceThickness = "3"
        ds.SeriesTime = "083015.123"

    _rewrite(folder, edit)
    [info] = scan_folder(folder).series
    assert (info.kernel, info.slice_thickness_mm, info.series_time) == ("B45f", 3.0, "08:30:15")
    assert info.slice_spacing_mm == pytest.approx(2.5)
    assert "kernel B45f" in info.summary() and "3.0 mm thick" in info.summary()


# ---------------------------------------------------------------------------- broken copies


def test_phantom_series_loads_in_position_order(tmp_path: Path, series_files) -> None:
    vol, scan = load_study(_copy(series_files, tmp_path / "ok"))
    assert vol.shape == (N, 128, 128) and vol.warnings == () and scan.skipped == ()
    assert vol.sop_instance_uids == tuple(_uid(f) for f in series_files)
    assert np.allclose(np.diff(vol.slice_positions_mm), -2.5)
    assert scan.series[0].slice_spacing_mm == pytest.approx(2.5)


def test_shuffled_and_renamed_files_sort_by_position(tmp_path: Path, series_files) -> None:
    ref, _ = load_study(_copy(series_files, tmp_path / "ref"))
    names = [f"x{random.Random(i).random():.6f}.dcm" for i in range(N)]
    random.Random(7).shuffle(names)
    assert sorted(names) != names
    vol, _ = load_study(_copy(series_files, tmp_path / "shuffled", names))
    assert vol.sop_instance_uids == ref.sop_instance_uids == tuple(_uid(f) for f in series_files)
    assert np.array_equal(vol.hu, ref.hu)


def test_duplicate_slice_kept_once_with_warning(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files, tmp_path / "dup")
    shutil.copyfile(series_files[5], folder / "copy_of_slice.dcm")
    vol, scan = load_study(folder)
    assert scan.series[0].num_slices == N + 1
    assert vol.num_slices == N
    assert any("duplicate" in w for w in vol.warnings), vol.warnings
    assert np.all(np.diff(vol.slice_positions_mm) < 0)


def test_missing_slice_reports_uneven_spacing(tmp_path: Path, series_files) -> None:
    files = series_files[:5] + series_files[6:]
    vol, _ = load_study(_copy(files, tmp_path / "gap"))
    assert vol.num_slices == N - 1
    [w] = [w for w in vol.warnings if "uneven" in w]
    assert "2.50 mm" in w and "5.00 mm" in w and "missing" in w


def test_junk_and_text_files_are_skipped_with_reasons(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files, tmp_path / "mixed")
    (folder / "notes.txt").write_text("patient notes\n")
    (folder / "junk.dcm").write_bytes(random.Random(3).randbytes(3000))
    (folder / "empty.dcm").write_bytes(b"")
    sub = folder / "sub"
    sub.mkdir()
    (sub / "readme.md").write_text("# nothing\n")
    vol, scan = load_study(folder)
    assert vol.num_slices == N
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert set(reasons) == {"notes.txt", "junk.dcm", "empty.dcm", "readme.md"}
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "not a DICOM file" in reasons["junk.dcm"]
    assert "empty" in reasons["empty.dcm"]
    assert all(r.endswith(".") and r.startswith(n) for n, r in reasons.items())


def test_subfolders_are_scanned(tmp_path: Path, series_files) -> None:
    _copy(series_files[:6], tmp_path / "a" / "b")
    _copy(series_files[6:], tmp_path / "c")
    vol, _ = load_study(tmp_path)
    assert vol.num_slices == N


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(StudyLoadError, match="No CT images were found.*empty"):
        load_study(tmp_path)


def test_folder_of_junk_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(random.Random(5).randbytes(500))
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


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not apply to root")
def test_unreadable_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(StudyLoadError, match="cannot be read"):
            load_study(locked)
    finally:
        locked.chmod(0o700)


def test_truncated_slice_is_skipped(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files, tmp_path / "trunc")
    bad = folder / series_files[3].name
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    vol, scan = load_study(folder)
    assert vol.num_slices == N - 1
    assert _uid(series_files[3]) not in vol.sop_instance_uids
    mentioned = [s.reason for s in scan.skipped] + list(vol.warnings)
    assert any(bad.name in m and ("damaged" in m or "decoded" in m) for m in mentioned), mentioned


def test_no_slice_decodes(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files[:3], tmp_path / "bad")
    _rewrite(folder, lambda _f, ds: setattr(ds, "PixelData", ds.PixelData[:100]))
    with pytest.raises(StudyLoadError, match="None of the 3 slices .* could be read"):
        load_study(folder)


def test_missing_positions_fall_back_to_instance_number(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files, tmp_path / "nopos")

    def edit(f, ds):
        del ds.ImagePositionPatient
        ds.InstanceNumber = N + 1 - int(f.stem)  # reversed against the file names

    _rewrite(folder, edit)
    vol, _ = load_study(folder)
    assert any("instance number" in w for w in vol.warnings), vol.warnings
    assert vol.sop_instance_uids == tuple(_uid(f) for f in reversed(series_files))
    assert vol.image_positions_mm.shape == (N, 3)
    assert vol.slice_spacing_mm == pytest.approx(2.5)  # from SliceThickness


def test_mixed_sizes_drop_minority(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files, tmp_path / "sizes")
    odd = folder / series_files[4].name
    ds = pydicom.dcmread(odd)
    ds.PixelData = ds.pixel_array[::2, ::2].copy().tobytes()
    ds.Rows, ds.Columns = 64, 64
    ds.save_as(odd)
    vol, _ = load_study(folder)
    assert vol.shape == (N - 1, 128, 128)
    assert any("different size (64 x 64" in w for w in vol.warnings), vol.warnings


def test_signed_padding_and_rescale(tmp_path: Path, series_files) -> None:
    """Signed pixels with PixelPaddingValue written as unsigned (63536 = -2000), as GE does."""
    folder = _copy(series_files[:2], tmp_path / "pad")
    ref, _ = load_study(_copy(series_files[:2], tmp_path / "ref"))

    def edit(_f, ds):
        hu = ds.pixel_array.astype(np.int32) - 1024
        stored = ((hu + 1000) // 2).astype(np.int16)  # HU = 2 * stored - 1000
        stored[:10, :10] = -2000
        ds.PixelRepresentation = 1
        ds.RescaleSlope, ds.RescaleIntercept = "2", "-1000"
        ds.add_new(0x00280120, "US", 63536)  # PixelPaddingValue
        ds.PixelData = stored.tobytes()

    _rewrite(folder, edit)
    vol, _ = load_study(folder)
    assert np.all(vol.hu[:, :10, :10] == PADDING_HU)
    expected = 2 * ((ref.hu.astype(np.int32) + 1000) // 2) - 1000
    np.testing.assert_array_equal(vol.hu[:, 10:, 10:], expected[:, 10:, 10:])


def test_non_axial_series_is_flagged(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files[:3], tmp_path / "cor")
    _rewrite(folder, lambda _f, ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))
    scan = scan_folder(folder)
    assert scan.series[0].is_axial is False
    assert "not axial" in scan.series[0].summary()
    vol = load_series(scan.series[0])
    assert any("not axial" in w for w in vol.warnings)


def test_non_ct_and_localizer_skipped(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files[:3], tmp_path / "types")
    mr = pydicom.dcmread(series_files[3])
    mr.Modality = "MR"
    mr.SOPInstanceUID = "2.25.11"
    mr.save_as(folder / "mr.dcm")
    loc = pydicom.dcmread(series_files[4])
    loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    loc.SeriesInstanceUID = "2.25.12"
    loc.save_as(folder / "scout.dcm")
    vol, scan = load_study(folder)
    assert vol.num_slices == 3 and len(scan.series) == 1
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert "MR" in reasons["mr.dcm"] and "not CT" in reasons["mr.dcm"]
    assert "localizer" in reasons["scout.dcm"]


def test_select_series(tmp_path: Path, series_files) -> None:
    scan = scan_folder(_copy(series_files[:3], tmp_path / "one"))
    assert select_series(scan) is scan.default_series() is scan.series[0]
    assert select_series(scan, scan.series[0].uid) is scan.series[0]
    with pytest.raises(StudyLoadError, match="is not in .*Series available: #1 "):
        select_series(scan, "1.2.3")


def test_source_folder_untouched_on_errors(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files[:3], tmp_path / "ro")
    (folder / "junk.txt").write_text("junk")
    before = _tree_fingerprint(folder)
    load_study(folder)
    with pytest.raises(StudyLoadError):
        load_study(folder, series_uid="nope")
    assert _tree_fingerprint(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([f.name for f in series_files[:3]] + ["junk.txt"])


def test_fast_and_full_decode_paths_agree(tmp_path: Path, series_files) -> None:
    """Pixels read at the offsets the scan recorded equal a full pydicom decode."""
    folder = _copy(series_files[:4], tmp_path / "paths")
    [info] = scan_folder(folder).series
    assert len(info.headers) == 4 and all(h.pixel_offset for h in info.headers)
    fast = load_series(info)
    full = load_series(dataclasses.replace(info, headers=()))  # no scan headers: parse every file
    np.testing.assert_array_equal(fast.hu, full.hu)
    assert fast.sop_instance_uids == full.sop_instance_uids
    ref = pydicom.dcmread(series_files[0])
    np.testing.assert_array_equal(fast.hu[0], ref.pixel_array.astype(np.int32) - 1024)

    # a file changed after the scan is read again, not from stale offsets
    f = folder / series_files[1].name
    ds = pydicom.dcmread(f)
    ds.RescaleIntercept = -1000
    ds.save_as(f)
    vol = load_series(info)
    np.testing.assert_array_equal(vol.hu[1].astype(np.int32), ds.pixel_array.astype(np.int32) - 1000)
    np.testing.assert_array_equal(vol.hu[0], fast.hu[0])


def test_special_files_and_broken_links_are_skipped(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files[:3], tmp_path / "special")
    os.mkfifo(folder / "pipe")
    os.symlink(folder / "missing-target", folder / "dangling")
    vol, scan = load_study(folder)
    assert vol.num_slices == 3
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert "not a regular file" in reasons["pipe"]
    assert "could not be opened" in reasons["dangling"]


# ------------------------------------------------------------------- progress and cancelling


def test_load_progress_and_cancel(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files, tmp_path / "p")
    [info] = scan_folder(folder).series
    calls: list[tuple[int, int]] = []
    load_series(info, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (N, N)
    assert all(a <= b for (a, _), (b, _) in itertools.pairwise(calls))
    with pytest.raises(LoadCancelled, match="Loading the series was cancelled") as err:
        load_series(info, cancel=lambda: True)
    assert isinstance(err.value, StudyLoadError) and isinstance(err.value, AnalysisCancelled)


class _CancelAfter:
    """A cancel callable that says stop from its ``n``-th call on, counting the calls."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def test_folder_scan_polls_cancel_between_files(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files, tmp_path / "c")
    never = _CancelAfter(10**9)
    scan = scan_folder(folder, cancel=never)
    assert len(scan.series) == 1
    assert never.calls >= N, "the scan must ask whether to stop at least once per file"

    # cancelled while the folder is listed: the fifth file is never looked at
    early = _CancelAfter(5)
    with pytest.raises(LoadCancelled, match="Reading the folder was cancelled") as err:
        scan_folder(folder, cancel=early)
    assert early.calls == 5
    assert isinstance(err.value, StudyLoadError) and isinstance(err.value, AnalysisCancelled)

    # cancelled after the listing (N + 1 polls) and the start of the header reading (N + 2),
    # while the headers are read
    late = _CancelAfter(N + 3)
    with pytest.raises(LoadCancelled, match="Reading the folder was cancelled"):
        scan_folder(folder, cancel=late)
    assert late.calls == N + 3


def test_load_study_cancel_stops_the_scan(tmp_path: Path, series_files) -> None:
    folder = _copy(series_files[:3], tmp_path / "s")
    loaded: list[int] = []
    with pytest.raises(LoadCancelled, match="Reading the folder was cancelled"):
        load_study(folder, progress=lambda d, t: loaded.append(d), cancel=lambda: True)
    assert loaded == [], "nothing was decoded"
