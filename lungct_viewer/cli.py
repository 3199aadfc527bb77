"""Command line: ``lungct-viewer [PATH]`` opens the viewer; ``lungct-viewer analyze`` runs headless.

    lungct-viewer analyze PATIENT_DIR --out OUT_DIR [--model PATH] [--threshold T]
                          [--series UID] [--all-slices] [--overwrite] [--include-identifiers]
                          [--min-roi-probability P] [--min-votes K] [--suspicion-threshold S]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from . import RESEARCH_NOTICE, __version__
from .core.errors import LungCTError

log = logging.getLogger("lungct_viewer")


def _threshold(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("the voting threshold must be between 0 and 1")
    return v


def _probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("the value must be between 0 and 1")
    return v


def _analyze_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lungct-viewer analyze",
        description="Analyse a patient's CT folder headless: writes report.json and annotated PNGs. "
        + RESEARCH_NOTICE + ".",
    )
    p.add_argument("patient_dir", help="folder holding the patient's DICOM CT slices (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (created if needed; never inside the DICOM folder)")
    p.add_argument("--model", help="model file (.keras); default: the shipped model")
    p.add_argument("--threshold", type=_threshold, default=None,
                   help="voting threshold: malignant fraction >= T => malignant (default: the model's operating point)")
    p.add_argument("--series", help="SeriesInstanceUID to analyse (default: the axial CT series with most slices)")
    p.add_argument("--all-slices", action="store_true", help="write a PNG for every slice, not only those with findings")
    p.add_argument("--min-roi-probability", type=_probability, default=None,
                   help="detection sensitivity: P(benign)+P(malignant) for a patch to vote ROI "
                        "(default: the model's operating point)")
    p.add_argument("--min-votes", type=int, default=None,
                   help="ROI overlay: pixels covered by at least this many ROI patches (default: the model's operating point)")
    p.add_argument("--suspicion-threshold", type=_probability, default=None,
                   help="second reading: lesions with at least this suspicion are findings "
                        "(default: the second reading's operating point)")
    p.add_argument("--red", choices=("lesions", "votes"), default="lesions",
                   help="what the PNGs paint red: the findings' outlines as segmented (default) or the method's "
                        "ROI vote map")
    p.add_argument("--include-identifiers", action="store_true",
                   help="write the patient name and ID and the source and model paths into report.json")
    p.add_argument("--dicom", action="store_true",
                   help="also write a DICOM Segmentation and a TID 1500 measurement report of the findings "
                        "(they belong to the patient: they carry the source's patient and study identifiers)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in the output folder")
    p.add_argument("--no-field-mask", action="store_true", help="analyse every patch, not only the lung field")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")
    return p


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lungct-viewer",
        description="LungCT Viewer: open a chest CT folder and see where the CNN finds tumours. "
        + RESEARCH_NOTICE + ". Use 'lungct-viewer analyze --help' for the headless command.",
    )
    p.add_argument("path", nargs="?", help="patient folder of DICOM slices (default: a demo study)")
    p.add_argument("--model", help="model file (.keras); default: the shipped model")
    p.add_argument("--series", help="SeriesInstanceUID to open")
    p.add_argument("--screenshot", metavar="OUT.png", help="wait for the analysis, save a screenshot, exit")
    p.add_argument("--slice", type=int, metavar="N", help="show slice N (1 = top) after opening")
    p.add_argument("--version", action="version", version=f"LungCT Viewer {__version__}")
    return p


def resolve_model_path(model: str | None) -> Path:
    from .core.errors import ModelLoadError
    from .core.pipeline import default_model_path

    if model:
        return Path(model)
    path = default_model_path()
    if not path.is_file():
        raise ModelLoadError(
            f"No trained model is installed (expected {path}); pass --model PATH to a .keras model."
        )
    return path


def run_analyze(args: argparse.Namespace) -> int:
    from .core.dicom import load_study
    from .core.errors import ExportError
    from .core.export import ImageOptions, export_reading, is_within
    from .core.model import load_model
    from .core.pipeline import Analyzer
    from .core.report import build_report
    from .core.session import ReadingSession

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    src = Path(args.patient_dir)
    out = Path(args.out)
    if src.exists() and is_within(out, src):
        raise ExportError("The output folder must not be inside the DICOM folder; choose another --out.")
    model_path = resolve_model_path(args.model)

    t0 = time.perf_counter()
    volume, scan = load_study(src, series_uid=args.series)
    load_s = time.perf_counter() - t0
    say(f"Loaded {volume.num_slices} slices ({volume.description or 'no description'}) in {load_s:.2f} s"
        + (f"; {len(scan.skipped)} file(s) skipped" if scan.skipped else ""))
    for w in volume.warnings:
        say(f"warning: {w}")
    model = load_model(model_path)
    session = ReadingSession(volume, model.card, model.second_reading,
                             voting_threshold=args.threshold)
    session.load_s = load_s
    changes = {k: v for k, v in (("min_roi_probability", args.min_roi_probability), ("min_votes", args.min_votes),
                                 ("suspicion_threshold", args.suspicion_threshold)) if v is not None}
    try:
        session.update_params(**changes)
    except ValueError as exc:
        raise ExportError(f"Invalid detection setting: {exc}.") from exc

    def progress(_sa, done: int, total: int) -> None:
        if not args.quiet and (done == total or done % 10 == 0):
            print(f"  analysed {done}/{total} slices", flush=True)

    analyzer = Analyzer(model, use_field_mask=not args.no_field_mask)
    session.set_analysis(analyzer.analyze(volume, on_slice=progress))
    session.ensure_candidates()
    indices = list(range(volume.num_slices)) if args.all_slices else session.slices_with_findings()
    warnings = list(volume.warnings) + [f"{s.path}: {s.reason}" for s in scan.skipped][:50]
    report = build_report(session, warnings=warnings, include_identifiers=args.include_identifiers,
                          source=str(src.resolve()), model_path=str(model_path.resolve()))
    if args.dicom and not args.overwrite:
        from .core.dicom_out import SEG_FILENAME, SR_FILENAME

        clash = [n for n in (SEG_FILENAME, SR_FILENAME) if (out / n).exists()]
        if clash:
            raise ExportError(f"{clash[0]} already exists in {out}; use --overwrite or another --out.")
    written = export_reading(session, out, indices, report=report, source_dir=src, overwrite=args.overwrite,
                             options=ImageOptions(roi_source=args.red))
    if args.dicom:
        written += _write_dicom(session, scan, out, say)
    d = session.diagnosis()
    frac = "n/a" if d.malignant_fraction is None else f"{d.malignant_fraction:.2f}"
    found = session.findings()
    below = len(session.lesions()) - len(found)
    print(f"{d.display}: malignant fraction {frac} at threshold {d.threshold:.2f}; {len(found)} lesion(s) "
          f"({below} candidate(s) below the suspicion threshold) on {len(indices)} slice(s); "
          f"inference {session.analysis.inference_s:.1f} s on {session.analysis.device}, "
          f"candidates {report['timing']['candidates_s']:.1f} s; wrote {len(written)} file(s) to {out}")
    print(RESEARCH_NOTICE)
    return 0


def _write_dicom(session, scan, out: Path, say) -> list[Path]:
    """The DICOM SEG and SR of the findings; a failure is reported, the PNG/JSON export stays."""
    from .core.dicom_out import series_results, write_dicom_results
    from .core.errors import ExportError

    info = next(s for s in scan.series if s.uid == session.volume.series_uid)
    by_uid = {h.sop_uid: h.path for h in info.headers}
    try:
        files = [by_uid[u] for u in session.volume.sop_instance_uids]
        res = write_dicom_results(series_results(session, files), out)
    except (ExportError, KeyError) as exc:
        msg = str(exc) if isinstance(exc, ExportError) else "a slice's source file could not be found again"
        print(f"warning: no DICOM results were written: {msg}", file=sys.stderr)
        return []
    say(f"DICOM Segmentation ({res.num_segments} segment(s)) and measurement report written")
    return [res.seg_path, res.sr_path]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("LUNGCT_LOG", "WARNING").upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "analyze":
        args = _analyze_parser().parse_args(argv[1:])
        try:
            return run_analyze(args)
        except LungCTError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted; no files were written.", file=sys.stderr)
            return 130
    args = _gui_parser().parse_args(argv)
    from .gui.app import run_gui

    return run_gui(args.path, model_path=args.model, series_uid=args.series, screenshot=args.screenshot,
                   slice_number=args.slice)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
