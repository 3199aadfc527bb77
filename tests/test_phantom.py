"""The synthetic phantom: deterministic, anatomically plausible, valid DICOM, aligned masks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lungct_viewer.core import constants as C
from lungct_viewer.core.dicom import load_study
from lungct_viewer.core.phantom import (
    BENIGN_RADIUS_PX,
    MALIGNANT_RADIUS_PX,
    Nodule,
    Phantom,
    ensure_phantom_study,
    phantom_volume,
    read_masks,
    write_phantom_dicom,
)


@pytest.fixture(scope="module")
def small() -> Phantom:
    return phantom_volume(seed=5, n_slices=12, size=192)


def test_deterministic_byte_identical() -> None:
    a = phantom_volume(seed=11, n_slices=6, size=128)
    b = phantom_volume(seed=11, n_slices=6, size=128)
    c = phantom_volume(seed=12, n_slices=6, size=128)
    assert a.hu.tobytes() == b.hu.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.nodules == b.nodules
    assert a.volume.sop_instance_uids == b.volume.sop_instance_uids
    assert a.volume.series_uid == b.volume.series_uid
    assert a.hu.tobytes() != c.hu.tobytes()
    assert a.volume.series_uid != c.volume.series_uid


def test_geometry_and_types(small: Phantom) -> None:
    v = small.volume
    assert v.shape == (12, 192, 192) and v.hu.dtype == np.int16
    assert small.labels.shape == v.shape and small.labels.dtype == np.uint8
    assert v.pixel_spacing_mm == (0.7, 0.7)
    assert v.slice_spacing_mm == pytest.approx(2.5)
    assert np.all(np.diff(v.slice_positions_mm) < 0)
    assert v.description == "Synthetic phantom" and v.patient_name == "PHANTOM^DEMO"


def test_anatomy_hu_ranges(small: Phantom) -> None:
    hu = small.hu[6].astype(float)
    assert abs(np.median(hu[:8, :]) - (-1000)) < 30  # air above the body
    lung = small.lung_mask[6] & (small.labels[6] == 0)
    assert -900 < np.median(hu[lung]) < -800
    c = 192 // 2
    assert 0 < np.median(hu[c - 3 : c + 3, c - 3 : c + 3]) < 80  # mediastinum (soft tissue)
    assert hu.max() >= 500  # bone
    # vessels: some bright pixels inside the lungs away from nodules
    assert np.sum(hu[lung] > -300) > 5


def test_default_nodules_classes_sizes_and_sides(small: Phantom) -> None:
    classes = sorted(n.cls for n in small.nodules)
    assert classes == [C.BENIGN, C.MALIGNANT]
    benign = next(n for n in small.nodules if n.cls == C.BENIGN)
    malignant = next(n for n in small.nodules if n.cls == C.MALIGNANT)
    assert BENIGN_RADIUS_PX[0] <= benign.radius_px <= BENIGN_RADIUS_PX[1]
    assert MALIGNANT_RADIUS_PX[0] <= malignant.radius_px <= MALIGNANT_RADIUS_PX[1]
    mid = 192 / 2
    assert (benign.center[2] - mid) * (malignant.center[2] - mid) < 0, "same lung"
    assert set(np.unique(small.labels)) == {0, 1, 2}


@pytest.mark.parametrize("size", [128, 256, 512])
def test_sizes_work(size: int) -> None:
    ph = phantom_volume(seed=1, n_slices=4 if size == 512 else 8, size=size)
    for n in ph.nodules:
        z = int(round(n.center[0]))
        lab = ph.labels[z]
        assert np.any(lab == n.cls)
        # every labelled pixel of the nodule lies inside the lung
        assert np.all(ph.lung_mask[z][lab == n.cls])
    mal = next(n for n in ph.nodules if n.cls == C.MALIGNANT)
    assert mal.radius_px >= MALIGNANT_RADIUS_PX[0]


def test_masks_align_with_nodules(small: Phantom) -> None:
    ps, ss = small.volume.pixel_spacing_mm[0], small.volume.slice_spacing_mm
    for n in small.nodules:
        z0, r0, c0 = n.center
        zi = int(round(z0))
        lab = small.labels[zi] == n.cls
        rows, cols = np.nonzero(lab)
        assert abs(rows.mean() - r0) < 2 and abs(cols.mean() - c0) < 2
        area = lab.sum()
        assert 0.6 * np.pi * n.radius_px**2 < area < 1.5 * np.pi * n.radius_px**2
        # sphere in mm: present on neighbouring slices within the radius, absent beyond
        for z in range(small.volume.num_slices):
            dz_px = abs(z - z0) * ss / ps
            present = np.any(small.labels[z] == n.cls)
            if dz_px < 0.8 * n.radius_px:
                assert present, (n, z)
            elif dz_px > n.radius_px:
                assert not present, (n, z)
        # the pixels under the mask are nodule tissue, not lung
        assert np.median(small.hu[zi][lab]) > -200


def test_benign_and_malignant_look_different(small: Phantom) -> None:
    def features(n: Nodule) -> tuple[float, float]:
        zi = int(round(n.center[0]))
        lab = small.labels[zi] == n.cls
        area = float(lab.sum())
        # irregularity: perimeter^2 / (4 pi area) is 1 for a disc, larger for lobulated shapes
        edge = lab & ~np.roll(lab, 1, 0) | lab & ~np.roll(lab, 1, 1)
        return area, float(edge.sum()) ** 2 / (4 * np.pi * area)

    b = next(n for n in small.nodules if n.cls == C.BENIGN)
    m = next(n for n in small.nodules if n.cls == C.MALIGNANT)
    (ab, ib), (am, im) = features(b), features(m)
    assert am > 2.5 * ab
    assert im > ib


def test_custom_nodules_and_validation() -> None:
    nods = [Nodule(C.MALIGNANT, (3.0, 60.0, 40.0), 10.0), Nodule(C.BENIGN, (2.0, 60.0, 90.0), 5.0, True)]
    ph = phantom_volume(seed=0, n_slices=6, size=128, nodules=nods)
    assert ph.nodules == tuple(nods)
    assert ph.labels[3, 60, 40] == C.MALIGNANT and ph.labels[2, 60, 90] == C.BENIGN
    assert ph.hu[2, 60, 90] > 300  # calcified core
    ph0 = phantom_volume(seed=0, n_slices=4, size=128, nodules=[])
    assert not ph0.labels.any()
    with pytest.raises(ValueError):
        phantom_volume(size=32)
    with pytest.raises(ValueError):
        phantom_volume(n_slices=0)
    with pytest.raises(ValueError):
        phantom_volume(pixel_spacing_mm=-1.0)
    with pytest.raises(ValueError):
        Nodule(3, (0, 0, 0), 5.0)


def test_dicom_round_trip(tmp_path: Path, small: Phantom) -> None:
    out = write_phantom_dicom(small, tmp_path / "series", masks_path=tmp_path / "masks.npz")
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i + 1:04d}.dcm" for i in range(12)]
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert ds.Modality == "CT" and str(ds.PatientName) == "PHANTOM^DEMO"
    assert ds.SeriesDescription == "Synthetic phantom"
    assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert ds.PixelRepresentation == 0 and ds.BitsAllocated == 16
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert len({pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}) == 12

    vol, scan = load_study(out)
    assert not scan.skipped and vol.warnings == ()
    np.testing.assert_array_equal(vol.hu, small.hu)
    assert vol.sop_instance_uids == small.volume.sop_instance_uids
    np.testing.assert_allclose(vol.image_positions_mm, small.volume.image_positions_mm, atol=1e-4)
    assert vol.pixel_spacing_mm == pytest.approx(small.volume.pixel_spacing_mm)

    labels, uids, nods = read_masks(tmp_path / "masks.npz")
    np.testing.assert_array_equal(labels, small.labels)
    assert uids == small.volume.sop_instance_uids and nods == small.nodules
    assert not any(p.suffix != ".dcm" for p in out.iterdir())


def test_written_files_identical_for_same_seed(tmp_path: Path) -> None:
    def digest(folder: Path) -> list[str]:
        return [hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())]

    a = write_phantom_dicom(phantom_volume(seed=2, n_slices=3, size=128), tmp_path / "a")
    b = write_phantom_dicom(phantom_volume(seed=2, n_slices=3, size=128), tmp_path / "b")
    assert digest(a) == digest(b)


def test_masks_never_inside_series_folder(tmp_path: Path) -> None:
    ph = phantom_volume(seed=0, n_slices=2, size=128)
    with pytest.raises(ValueError):
        write_phantom_dicom(ph, tmp_path / "s", masks_path=tmp_path / "s" / "m.npz")


def test_phantom_study_cached_and_repaired(tmp_path: Path) -> None:
    folder = ensure_phantom_study(tmp_path)
    files = sorted(folder.iterdir())
    assert len(files) == 40
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert ensure_phantom_study(tmp_path) == folder
    assert [f.stat().st_mtime_ns for f in sorted(folder.iterdir())] == mtimes  # cached
    files[7].unlink()  # incomplete cache -> rewritten
    folder2 = ensure_phantom_study(tmp_path)
    assert len(list(folder2.iterdir())) == 40
    vol, scan = load_study(folder2)
    assert vol.shape == (40, 512, 512) and len(scan.series) == 1
    assert sorted(n.cls for n in read_masks(tmp_path / "demo-v1-masks.npz")[2]) == [1, 2]


def test_default_cache_respects_xdg(tmp_path: Path, monkeypatch) -> None:
    from lungct_viewer.core.userdirs import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "lungct-viewer"
    assert os.fspath(default_cache_dir()).startswith(os.fspath(tmp_path))
