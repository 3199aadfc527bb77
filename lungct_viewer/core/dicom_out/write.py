"""Build both objects in memory, then write each to a temporary name and rename it."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd

from ..atomic import atomic_path
from ..errors import ExportError
from .inputs import SeriesResults
from .seg import build_segmentation
from .source import read_source_series
from .sr import build_measurement_report

logger = logging.getLogger(__name__)

SEG_FILENAME = "lesions_seg.dcm"
SR_FILENAME = "lesions_sr.dcm"


@dataclass(frozen=True)
class DicomResultFiles:
    """Where the two objects went and their identities."""

    seg_path: Path
    sr_path: Path
    seg_series_uid: str
    seg_sop_instance_uid: str
    sr_series_uid: str
    sr_sop_instance_uid: str
    num_segments: int
    num_frames: int


def build_dicom_results(results: SeriesResults):
    """``(segmentation, report)`` as highdicom datasets, nothing written.

    The source headers are read (no pixel data) and checked first (see
    :func:`~lungct_viewer.core.dicom_out.source.read_source_series`).
    """
    series = read_source_series(results.source_files, results.source_sop_instance_uids)
    n_segments = len(results.masks)
    tracking_uids = [hd.UID() for _ in range(n_segments)]
    seg = build_segmentation(results, series, tracking_uids=tracking_uids)
    sr = build_measurement_report(results, series, seg, tracking_uids)
    return seg, sr


def write_dicom_results(
    results: SeriesResults,
    out_dir: str | os.PathLike[str],
    *,
    seg_name: str = SEG_FILENAME,
    sr_name: str = SR_FILENAME,
) -> DicomResultFiles:
    """Write the Segmentation and the measurement report into ``out_dir``.

    Both are built before either is written; each file is written to a temporary name and
    renamed, so a failure leaves no partial file. Existing files of the same name are
    replaced.

    Raises
    ------
    ExportError
        Bad input (see :mod:`.inputs` and :mod:`.source`) or the files cannot be written.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    src_dirs = {Path(f).resolve().parent for f in results.source_files}
    target = out.resolve()
    if any(target == d or d in target.parents for d in src_dirs):
        raise ExportError(
            "The DICOM results must not be written into the folder of the source images "
            "(it is read-only to this program); choose another folder."
        )
    seg, sr = build_dicom_results(results)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for ds, name in ((seg, seg_name), (sr, sr_name)):
            with atomic_path(out / name, suffix=".dcm.tmp") as tmp:
                ds.save_as(tmp, enforce_file_format=True)
    except OSError as exc:
        raise ExportError(f"The DICOM results could not be written to {out} ({exc.strerror or exc}).") from exc
    logger.info(
        "DICOM SEG (%d segments, %d frames) and SR written in %.2f s",
        len(seg.SegmentSequence),
        int(seg.NumberOfFrames),
        time.perf_counter() - t0,
    )
    return DicomResultFiles(
        seg_path=out / seg_name,
        sr_path=out / sr_name,
        seg_series_uid=str(seg.SeriesInstanceUID),
        seg_sop_instance_uid=str(seg.SOPInstanceUID),
        sr_series_uid=str(sr.SeriesInstanceUID),
        sr_sop_instance_uid=str(sr.SOPInstanceUID),
        num_segments=len(seg.SegmentSequence),
        num_frames=int(seg.NumberOfFrames),
    )
