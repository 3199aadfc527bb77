"""Reference annotations read onto a series' grid (SEG, RTSTRUCT, LIDC XML), the folder's
references found, and the lesions that overlap them (core, Qt-free).

The SEG is written by the project's own writer (``core/dicom_out``) from the phantom's
nodules; the RT structure set is built here with pydicom (highdicom has no RTSTRUCT writer).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

from lungct_viewer.core.candidates import Candidate, Seed, logit
from lungct_viewer.core.dicom import load_series, scan_folder, select_series
from lungct_viewer.core.errors import ReferenceLoadError, StudyLoadError
from lungct_viewer.core.references import (
    RTSTRUCT_STORAGE,
    SEG_STORAGE,
    ReferenceKind,
    find_references,
    make_reference,
    read_references,
    reference_overlaps,
)
from lungct_viewer.core.study import CTVolume

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _full(ref, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    for k, (m, r0, c0) in ref.masks.items():
        out[k, r0 : r0 + m.shape[0], c0 : c0 + m.shape[1]] = m
    return out


@pytest.fixture(scope="module")
def phantom(phantom_study):
    """The phantom series as loaded from its files, its nodules' masks and its files."""
    folder, ph = phantom_study
    vol = load_series(select_series(scan_folder(folder)))
    comp, n = ndimage.label(ph.labels > 0)
    assert n == 2
    return folder, vol, [comp == k for k in (1, 2)], ph


@pytest.fixture(scope="module")
def seg_file(phantom, tmp_path_factory) -> Path:
    """A DICOM SEG of the phantom's two nodules, written by the project's own writer."""
    from lungct_viewer.core.dicom_out import (
        AlgorithmInfo,
        LesionRecord,
        PatientCall,
        SeriesResults,
        write_dicom_results,
    )

    folder, vol, masks, _ = phantom
    lesions = [
        LesionRecord(
            id=k,
            label=lab,
            malignant_fraction=0.5,
            suspicion=None,
            long_axis_mm=10.0,
            short_axis_mm=8.0,
            volume_mm3=100.0,
            mask=m,
        )
        for k, (lab, m) in enumerate(zip(("benign", "malignant"), masks), start=1)
    ]
    results = SeriesResults(
        source_files=sorted(str(p) for p in folder.glob("*.dcm")),
        call=PatientCall("malignant", 0.5, 0.1),
        algorithm=AlgorithmInfo(model_version="1.1.0"),
        lesions=lesions,
        source_sop_instance_uids=vol.sop_instance_uids,
    )
    return write_dicom_results(results, tmp_path_factory.mktemp("seg")).seg_path


def test_seg_written_by_the_project_reads_back_onto_the_grid(phantom, seg_file):
    folder, vol, masks, _ = phantom
    got = read_references(seg_file, vol)
    assert got.warnings == ()
    assert [r.name for r in got.references] == ["Lesion 1 (benign)", "Lesion 2 (malignant)"]
    for ref, m in zip(got.references, masks):
        assert ref.kind is ReferenceKind.SEG and ref.source == Path(seg_file).name
        assert ref.reader == "LungCT Viewer"  # the algorithm that made it
        assert np.array_equal(_full(ref, vol.shape), m)
        zs = np.flatnonzero(m.any(axis=(1, 2)))
        assert ref.slice_range == (zs[0], zs[-1])
        assert ref.volume_mm3 == pytest.approx(m.sum() * np.prod(vol.pixel_spacing_mm) * vol.slice_spacing_mm)


def test_seg_frames_placed_by_position_and_by_their_own_geometry(phantom, seg_file, tmp_path):
    _, vol, masks, _ = phantom
    ds = pydicom.dcmread(seg_file)
    dx = float(vol.pixel_spacing_mm[1])
    for fr in ds.PerFrameFunctionalGroupsSequence:
        del fr.DerivationImageSequence  # no source instance: the position decides the slice
        pos = fr.PlanePositionSequence[0]
        x, y, z = (float(v) for v in pos.ImagePositionPatient)
        pos.ImagePositionPatient = [f"{x + 3 * dx:.6f}", f"{y:.6f}", f"{z:.6f}"]  # 3 columns to the right
    moved = tmp_path / "moved.dcm"
    ds.save_as(moved)
    got = read_references(moved, vol)
    for ref, m in zip(got.references, masks):
        assert np.array_equal(_full(ref, vol.shape), np.roll(m, 3, axis=2))


def test_fractional_seg_counts_pixels_at_half_the_maximum(phantom, tmp_path):
    import highdicom as hd

    folder, vol, masks, _ = phantom
    sources = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    prob = np.where(masks[1], 0.9, 0.0).astype(np.float32)
    prob[masks[0]] = 0.3  # below one half: not part of the reference
    desc = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Tumour probability",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=prob,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        segment_descriptions=[desc],
        series_instance_uid=hd.UID(),
        series_number=50,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
        content_creator_name="Reader^Anna",
    )
    path = tmp_path / "fractional.dcm"
    seg.save_as(path)
    (ref,) = read_references(path, vol).references
    assert ref.name == "Tumour probability" and ref.reader == "Reader Anna"
    assert np.array_equal(_full(ref, vol.shape), masks[1])


def _rtstruct(vol: CTVolume, contours, frame_uid: str, study_uid: str, series_uid: str) -> pydicom.Dataset:
    """A minimal RT structure set: ``contours`` = [(roi name, [(slice, [(row, col), ...],
    geometric type, refer to the slice's instance?), ...]), ...]."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.StructureSetLabel = "test"
    ds.PatientName, ds.PatientID = "PHANTOM", "P"
    ref_series = pydicom.Dataset()
    ref_series.SeriesInstanceUID = series_uid
    ref_series.ContourImageSequence = DicomSequence()
    ref_study = pydicom.Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref_study.ReferencedSOPInstanceUID = study_uid
    ref_study.RTReferencedSeriesSequence = DicomSequence([ref_series])
    frame = pydicom.Dataset()
    frame.FrameOfReferenceUID = frame_uid
    frame.RTReferencedStudySequence = DicomSequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    ds.StructureSetROISequence = DicomSequence()
    ds.ROIContourSequence = DicomSequence()
    ds.RTROIObservationsSequence = DicomSequence()
    dy, dx = vol.pixel_spacing_mm
    for number, (name, items) in enumerate(contours, start=1):
        roi = pydicom.Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame_uid
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        rc = pydicom.Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [0, 255, 0]
        rc.ContourSequence = DicomSequence()
        for k, pts, kind, by_uid in items:
            c = pydicom.Dataset()
            mm = [
                vol.image_positions_mm[k] + col * dx * vol.orientation[:3] + row * dy * vol.orientation[3:]
                for row, col in pts
            ]
            c.ContourGeometricType = kind
            c.NumberOfContourPoints = len(mm)
            c.ContourData = [f"{v:.4f}" for p in mm for v in p]
            if by_uid:
                img = pydicom.Dataset()
                img.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
                img.ReferencedSOPInstanceUID = vol.sop_instance_uids[k]
                c.ContourImageSequence = DicomSequence([img])
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
        obs = pydicom.Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType, obs.ROIInterpreter = "GTV", "Doe^Jo"
        ds.RTROIObservationsSequence.append(obs)
    return ds


def _square(r0, c0, r1, c1):
    return [(r0, c0), (r0, c1), (r1, c1), (r1, c0)]


def test_rtstruct_square_contour_fills_the_right_slice(phantom, tmp_path):
    folder, vol, _, _ = phantom
    frame = str(pydicom.dcmread(next(folder.glob("*.dcm"))).FrameOfReferenceUID)
    contours = [
        ("Square", [(4, _square(50, 40, 70, 60), "CLOSED_PLANAR", True)]),
        # on slice 7 by position only; an inner square is a hole; a point mark is left out
        (
            "Ring",
            [
                (7, _square(100, 100, 140, 140), "CLOSED_PLANAR", False),
                (7, _square(110, 110, 130, 130), "CLOSED_PLANAR", False),
                (8, [(120, 120)], "POINT", False),
            ],
        ),
    ]
    ds = _rtstruct(vol, contours, frame, vol.study_uid, "2.25.999")  # refers by frame of reference only
    path = tmp_path / "rs.dcm"
    ds.save_as(path, enforce_file_format=True)
    got = read_references(path, vol)
    square, ring = got.references
    assert (square.name, square.kind, square.reader) == ("Square", ReferenceKind.RTSTRUCT, "Doe Jo")
    expected = np.zeros(vol.shape, bool)
    expected[4, 50:71, 40:61] = True  # pixel centres inside or on the contour
    assert np.array_equal(_full(square, vol.shape), expected)
    assert square.diameter_mm == pytest.approx((20 * np.sqrt(2) + 1) * vol.pixel_spacing_mm[1])  # its diagonal
    ring_mask = _full(ring, vol.shape)
    assert ring.slices == (7,) and ring_mask[7, 100, 100] and ring_mask[7, 140, 140]
    assert not ring_mask[7, 120, 120] and ring_mask[7, 105, 120]  # the hole
    assert any("points or open lines" in w for w in got.warnings)


def test_files_of_another_series_or_kind_get_one_clear_sentence(phantom, seg_file, tmp_path):
    _, vol, _, ph = phantom
    other = CTVolume.from_array(vol.hu[:, :, :], pixel_spacing_mm=vol.pixel_spacing_mm, series_uid="2.25.77")
    with pytest.raises(ReferenceLoadError, match="another series") as exc:
        read_references(seg_file, other)
    assert isinstance(exc.value, StudyLoadError) and str(exc.value).count(". ") == 0
    ds = _rtstruct(vol, [("Square", [(4, _square(5, 5, 9, 9), "CLOSED_PLANAR", False)])], "2.25.1", "2.25.2", "2.25.3")
    ds.save_as(tmp_path / "rs.dcm", enforce_file_format=True)
    with pytest.raises(ReferenceLoadError, match="another study"):
        read_references(tmp_path / "rs.dcm", vol)
    (tmp_path / "notes.xml").write_text("<notes/>")
    with pytest.raises(ReferenceLoadError, match="not an LIDC reading file"):
        read_references(tmp_path / "notes.xml", vol)
    with pytest.raises(ReferenceLoadError, match="not a DICOM file"):
        read_references(_write(tmp_path / "junk.dcm", b"junk" * 100), vol)
    ct = next(p for p in sorted(Path(phantom[0]).glob("*.dcm")))
    with pytest.raises(ReferenceLoadError, match="not a segmentation"):
        read_references(ct, vol)
    with pytest.raises(ReferenceLoadError, match="does not exist"):
        read_references(tmp_path / "missing.dcm", vol)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_folders_references_are_found_among_the_skipped_files(phantom, seg_file, tmp_path):
    folder, vol, masks, _ = phantom
    study = tmp_path / "study"
    shutil.copytree(folder, study)
    shutil.copy(seg_file, study / "seg.dcm")
    frame = str(pydicom.dcmread(next(folder.glob("*.dcm"))).FrameOfReferenceUID)
    _rtstruct(
        vol, [("Square", [(4, _square(50, 40, 70, 60), "CLOSED_PLANAR", True)])], frame, vol.study_uid, "x"
    ).save_as(study / "rs.dcm", enforce_file_format=True)
    stranger = pydicom.dcmread(seg_file)  # a segmentation of another series of the study
    stranger.FrameOfReferenceUID = "2.25.5"
    stranger.ReferencedSeriesSequence[0].SeriesInstanceUID = "2.25.6"
    for fr in stranger.PerFrameFunctionalGroupsSequence:
        del fr.DerivationImageSequence
    for item in stranger.ReferencedSeriesSequence[0].ReferencedInstanceSequence:
        item.ReferencedSOPInstanceUID = generate_uid()
    stranger.save_as(study / "other.dcm")
    (study / "notes.xml").write_text("<notes/>")
    scan = scan_folder(study)
    by_name = {Path(s.path).name: s for s in scan.skipped}
    assert by_name["seg.dcm"].sop_class == SEG_STORAGE and by_name["rs.dcm"].sop_class == RTSTRUCT_STORAGE
    assert by_name["notes.xml"].sop_class == ""
    got = find_references(scan, load_series(select_series(scan)))
    assert sorted(r.source for r in got.references) == ["rs.dcm", "seg.dcm", "seg.dcm"]
    assert got.warnings == (
        "other.dcm belongs to another series (another frame of reference), so it cannot be drawn "
        "on the series on screen.",
    )


def _candidate(z0: int, z1: int, r0: int, r1: int, c0: int, c1: int) -> Candidate:
    mask = np.ones((z1 - z0, r1 - r0, c1 - c0), bool)
    return Candidate(0, (z0, r0, c0), (z0, z1, r0, r1, c0, c1), mask, [Seed(z0, r0, c0, logit(0.9))], {})


class _Lesion:
    def __init__(self, id_: int, candidate: Candidate) -> None:
        self.id, self.candidate = id_, candidate


def test_overlap_is_shared_voxels_in_3d():
    vol = CTVolume.from_array(np.zeros((10, 64, 64), np.int16))
    block = np.zeros((64, 64), bool)
    block[20:30, 20:30] = True
    ref = make_reference("R", ReferenceKind.SEG, "r.dcm", "", {4: block, 5: block}, vol)
    lesions = [
        _Lesion(1, _candidate(5, 7, 29, 35, 29, 35)),  # one voxel in common (slice 5, pixel 29, 29)
        _Lesion(2, _candidate(4, 6, 30, 36, 20, 30)),  # touches the reference's edge, shares none
        _Lesion(3, _candidate(6, 9, 20, 30, 20, 30)),  # the same pixels, other slices
        _Lesion(4, _candidate(0, 10, 0, 64, 0, 64)),  # contains it
    ]
    other = make_reference("S", ReferenceKind.RTSTRUCT, "s.dcm", "", {8: block}, vol)
    ov = reference_overlaps(lesions, [ref, other])
    assert ov.by_lesion == {1: (0,), 3: (1,), 4: (0, 1)}
    assert ov.by_reference == ((1, 4), (3, 4))
    assert make_reference("E", ReferenceKind.SEG, "e.dcm", "", {3: np.zeros((64, 64), bool)}, vol) is None


def test_session_holds_references_and_their_overlaps():
    from test_viewer_core import _session

    s, _, _ = _session()
    heard = []
    s.subscribe(heard.append)
    assert s.reference_outline(1) is None
    block = np.zeros((200, 200), bool)
    block[70:80, 70:80] = True
    far = np.zeros((200, 200), bool)
    far[150:160, 150:160] = True
    refs = [
        make_reference("Near", ReferenceKind.SEG, "/a/seg.dcm", "", {1: block}, s.volume),
        make_reference("Far", ReferenceKind.SEG, "/a/seg.dcm", "", {2: far}, s.volume),
    ]
    s.add_references(refs)
    assert heard == ["references"] and s.references == tuple(refs)
    (les,) = s.lesions()
    assert s.reference_overlaps().by_lesion == {les.id: (0,)}
    outline = s.reference_outline(1)
    assert outline[70, 70:80].all() and outline[79, 70:80].all() and not outline[71:79, 71:79].any()
    assert not s.reference_outline(0).any()
    snap = s.snapshot()
    assert snap.references == s.references
    s.add_references(refs[:1])  # the same file again replaces what it gave before
    assert s.references == tuple(refs[:1])
    s.clear_references()
    assert s.references == () and heard[-1] == "references"


@pytest.mark.realdata
def test_lidc_0001_readers_outlines_and_the_viewers_tumour_lesion(lidc_0001):
    from lungct_viewer.core.model import load_model
    from lungct_viewer.core.pipeline import Analyzer, default_model_path
    from lungct_viewer.core.session import ReadingSession

    scan = scan_folder(lidc_0001)
    vol = load_series(select_series(scan))
    got = find_references(scan, vol)
    assert got.warnings == ()
    refs = got.references
    assert [(r.name, r.reader) for r in refs] == [("Nodule 1", f"Reader {k}") for k in (1, 2, 3, 4)]
    assert all(r.kind is ReferenceKind.LIDC_XML and r.source == "069.xml" for r in refs)
    # the malignant nodule: slices 39-47 (1-based) at most, about 3 cm across, largest on slice 44
    assert {r.slice_range for r in refs} <= {(38, 46), (39, 46), (39, 45)}
    assert all(29.0 < r.diameter_mm < 34.0 for r in refs) and {r.central_slice for r in refs} == {43}
    loaded = load_model(default_model_path())
    session = ReadingSession(vol, loaded.card, loaded.second_reading)
    session.set_analysis(Analyzer(loaded).analyze(vol))
    session.add_references(refs)
    assert session.reference_overlaps() is None  # not before the candidates are found
    session.ensure_candidates()
    overlaps = session.reference_overlaps()
    # exactly one finding overlaps the readers' outlines: the tumour, called malignant
    on_refs = [les for les in session.findings() if les.id in overlaps.by_lesion]
    assert len(on_refs) == 1
    tumour = on_refs[0]
    assert (
        37 <= tumour.slices[0]
        and tumour.slices[1] <= 49
        and tumour.label(session.voting_threshold).value == "malignant"
    )
    assert overlaps.by_lesion[tumour.id] == (0, 1, 2, 3)
    assert all(tumour.id in ids for ids in overlaps.by_reference)
