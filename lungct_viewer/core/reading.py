"""One study's headless reading and export, behind ``analyze`` and the cohort batch (Qt-free).

:func:`read_study` is the whole chain for one folder::

    load (scan + one series) -> ReadingSession -> Analyzer (network, once) -> candidates
    -> report -> export_reading (PNGs + report.json) [-> DICOM SEG + SR]

The lung region and the objects under the seeds of each analysed slice are found on a
thread beside the network (:func:`analyse`).

``lungct-viewer analyze`` calls it once; ``lungct-viewer batch`` calls it once per study on
its workers (:mod:`lungct_viewer.batch`). There is no second copy of the pipeline.

The study is loaded before the network is asked for, so a folder that holds no CT fails
before a (possibly large, possibly damaged) model is loaded: ``analyzer`` may be a callable
that loads it on demand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import Analyzer
    from .results import SliceAnalysis
    from .session import ReadingSession
    from .study import FolderScan

Say = Callable[[str], None]


@dataclass(frozen=True)
class ReadOptions:
    """The reading and export settings of ``analyze`` (and of each study of a batch).

    ``None`` means the model's operating point (see :class:`~.detection.DetectionParams`).
    Which patches the network sees (the lung-field mask) belongs to the
    :class:`~.pipeline.Analyzer`, not to these options.
    """

    threshold: float | None = None
    min_roi_probability: float | None = None
    min_votes: int | None = None
    suspicion_threshold: float | None = None
    all_slices: bool = False
    include_identifiers: bool = False
    dicom: bool = False
    #: what the PNGs paint red: "lesions" (the findings' objects) or "votes" (the vote map)
    red: str = "lesions"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def detection_changes(self) -> dict[str, Any]:
        """The detection parameters these options set (those not left to the model)."""
        pairs = (
            ("min_roi_probability", self.min_roi_probability),
            ("min_votes", self.min_votes),
            ("suspicion_threshold", self.suspicion_threshold),
        )
        return {k: v for k, v in pairs if v is not None}


@dataclass
class StudyReading:
    """What :func:`read_study` did: the session (at the settings used), the report written,
    the files written and whether the DICOM objects could be written."""

    session: ReadingSession
    report: dict[str, Any]
    written: list[Path]
    slices_exported: int
    skipped_files: int = 0
    #: The reason no DICOM SEG/SR was written although asked for (``None``: written or not asked).
    dicom_error: str | None = None
    dicom_segments: int | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The reading in a few numbers (one row of a cohort table)."""
        s = self.session
        d = s.diagnosis()
        found = s.findings()
        lesions = s.lesions()
        suspicions = [les.suspicion for les in lesions if les.suspicion is not None]
        timing = self.report["timing"]
        return {
            "patient_call": d.label.value,
            "malignant_fraction": None if d.malignant_fraction is None else round(float(d.malignant_fraction), 4),
            "voting_threshold": float(d.threshold),
            "lesions": len(found),
            "candidates_below": len(lesions) - len(found),
            "largest_lesion_mm": round(max(les.diameter_mm for les in found), 1) if found else None,
            "highest_suspicion": round(max(suspicions), 4) if suspicions else None,
            "slices": s.volume.num_slices,
            "load_s": timing["load_s"],
            "inference_s": timing["inference_s"],
            "lung_region_s": timing["lung_region_s"],
            "candidates_s": timing["candidates_s"],
            "device": timing["device"],
            "model_version": s.card.version,
        }


def read_study(
    source: str | Path,
    out: str | Path,
    analyzer: Analyzer | Callable[[], Analyzer],
    options: ReadOptions = ReadOptions(),
    *,
    series_uid: str | None = None,
    overwrite: bool = False,
    say: Say | None = None,
    on_slice: Callable[[SliceAnalysis, int, int], None] | None = None,
) -> StudyReading:
    """Read one study folder and export the reading into ``out``.

    Parameters
    ----------
    source
        The study's folder (searched recursively, only ever read).
    out
        The output folder (created if needed); it must not lie inside ``source``.
    analyzer
        The network runner, or a callable returning it (called after the study has loaded).
    options
        Thresholds, which slices to export, identifiers, DICOM objects.
    series_uid
        The series to read; ``None``: the axial CT series with the most slices.
    overwrite
        Replace existing files in ``out`` (otherwise :class:`~.errors.ExportError`).
    say
        Receives progress lines ("Loaded 133 slices ...", warnings); ``None``: silent.
    on_slice
        ``on_slice(result, done, total)`` after each analysed slice.

    Raises
    ------
    LungCTError
        A :class:`~.errors.StudyLoadError`, :class:`~.errors.ModelLoadError` or
        :class:`~.errors.ExportError` whose message is a sentence for the reader; nothing is
        left half-written in ``out``.
    """
    from .dicom import load_study
    from .export import ImageOptions, export_reading, is_within
    from .report import build_report
    from .session import ReadingSession

    say = say or (lambda _line: None)
    src, out = Path(source), Path(out)
    if src.exists() and is_within(out, src):
        raise ExportError("The output folder must not be inside the DICOM folder; choose another --out.")

    t0 = time.perf_counter()
    volume, scan = load_study(src, series_uid=series_uid)
    load_s = time.perf_counter() - t0
    say(
        f"Loaded {volume.num_slices} slices ({volume.description or 'no description'}) in {load_s:.2f} s"
        + (f"; {len(scan.skipped)} file(s) skipped" if scan.skipped else "")
    )
    for w in volume.warnings:
        say(f"warning: {w}")

    engine = analyzer() if callable(analyzer) else analyzer
    model = engine.model
    session = ReadingSession(volume, model.card, model.second_reading, voting_threshold=options.threshold)
    session.load_s = load_s
    try:
        session.update_params(**options.detection_changes())
    except ValueError as exc:
        raise ExportError(f"Invalid detection setting: {exc}.") from exc

    analyse(session, engine, on_slice)
    session.ensure_candidates()
    indices = list(range(volume.num_slices)) if options.all_slices else session.slices_with_findings()
    # without identifiers a skipped file is named by its file name only, never by its path
    skipped = [f"{s.path}: {s.reason}" if options.include_identifiers else s.reason for s in scan.skipped]
    warnings = list(volume.warnings) + skipped[:50]
    report = build_report(
        session,
        warnings=warnings,
        include_identifiers=options.include_identifiers,
        source=str(src.resolve()),
        model_path=str(Path(model.path).resolve()),
    )
    if options.dicom and not overwrite:
        from .dicom_out import SEG_FILENAME, SR_FILENAME

        clash = [n for n in (SEG_FILENAME, SR_FILENAME) if (out / n).exists()]
        if clash:
            raise ExportError(f"{clash[0]} already exists in {out}; use --overwrite or another --out.")
    written = export_reading(
        session,
        out,
        indices,
        report=report,
        source_dir=src,
        overwrite=overwrite,
        options=ImageOptions(roi_source=options.red),
    )
    reading = StudyReading(session, report, written, len(indices), skipped_files=len(scan.skipped), warnings=warnings)
    if options.dicom:
        _write_dicom(reading, scan, out, say)
    return reading


def analyse(
    session: ReadingSession,
    engine: Analyzer,
    on_slice: Callable[[SliceAnalysis, int, int], None] | None = None,
) -> None:
    """Run the network over ``session``'s series and adopt its analysis. Beside it, on one
    thread, the lung region is computed and the objects under each analysed slice's seeds
    are found (:meth:`~.session.ReadingSession.prepare_candidates`), so that the candidates
    take a fraction of the time once the network is done. That thread stops when the
    network does; the candidates do not depend on how far it got."""
    from .session import CandidatePreparation

    preparation = CandidatePreparation(session)

    def delivered(sa: SliceAnalysis, n: int, total: int) -> None:
        preparation.deliver(sa)
        if on_slice is not None:
            on_slice(sa, n, total)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="candidates") as pool:
        prepared = pool.submit(preparation.run)
        try:
            analysis = engine.analyze(session.volume, on_slice=delivered)
        finally:
            preparation.finish()
        prepared.result()
    session.set_analysis(analysis)


def _write_dicom(reading: StudyReading, scan: FolderScan, out: Path, say: Say) -> None:
    """The DICOM SEG and SR of the findings; a failure is recorded, the PNG/JSON export stays."""
    from .dicom_out import series_results, write_dicom_results

    session = reading.session
    info = next(s for s in scan.series if s.uid == session.volume.series_uid)
    by_uid = {h.sop_uid: h.path for h in info.headers}
    try:
        files = [by_uid[u] for u in session.volume.sop_instance_uids]
        res = write_dicom_results(series_results(session, files), out)
    except (ExportError, KeyError) as exc:
        reading.dicom_error = (
            str(exc) if isinstance(exc, ExportError) else "a slice's source file could not be found again"
        )
        return
    reading.written += [res.seg_path, res.sr_path]
    reading.dicom_segments = res.num_segments
    say(f"DICOM Segmentation ({res.num_segments} segment(s)) and measurement report written")
