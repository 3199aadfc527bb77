"""Command line: ``lungct-viewer [PATH]`` opens the viewer; ``analyze`` reads one study
headless; ``batch`` reads a cohort.

    lungct-viewer analyze PATIENT_DIR --out OUT_DIR [--model PATH] [--threshold T]
                          [--series UID] [--all-slices] [--overwrite] [--include-identifiers]
                          [--min-roi-probability P] [--min-votes K] [--suspicion-threshold S] [--dicom]
    lungct-viewer batch ROOT --out OUT [--workers N | --scheduler ADDRESS] [--each-series]
                        [--depth D] [analyze's reading options]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import RESEARCH_NOTICE, __version__
from .core.errors import LungCTError

log = logging.getLogger("lungct_viewer")


def _fraction(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{what} must be between 0 and 1")
    return v


def _threshold(text: str) -> float:
    return _fraction(text, "the voting threshold")


def _probability(text: str) -> float:
    return _fraction(text, "the value")


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    """The reading settings ``analyze`` and ``batch`` share."""
    p.add_argument("--model", help="model file (.keras); default: the shipped model")
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="voting threshold: malignant fraction >= T => malignant (default: the model's operating point)",
    )
    p.add_argument(
        "--all-slices", action="store_true", help="write a PNG for every slice, not only those with findings"
    )
    p.add_argument(
        "--min-roi-probability",
        type=_probability,
        default=None,
        help="detection sensitivity: P(benign)+P(malignant) for a patch to vote ROI "
        "(default: the model's operating point)",
    )
    p.add_argument(
        "--min-votes",
        type=int,
        default=None,
        help="ROI overlay: pixels covered by at least this many ROI patches (default: the model's operating point)",
    )
    p.add_argument(
        "--suspicion-threshold",
        type=_probability,
        default=None,
        help="second reading: lesions with at least this suspicion are findings "
        "(default: the second reading's operating point for the series' slice spacing)",
    )
    p.add_argument(
        "--red",
        choices=("lesions", "votes"),
        default="lesions",
        help="what the PNGs paint red: the findings as segmented (default) or the method's ROI vote map",
    )
    p.add_argument(
        "--include-identifiers",
        action="store_true",
        help="write the patient name and ID and the source and model paths into report.json",
    )
    p.add_argument(
        "--dicom",
        action="store_true",
        help="also write a DICOM Segmentation and a TID 1500 measurement report of the findings "
        "(they belong to the patient: they carry the source's patient and study identifiers)",
    )
    p.add_argument("--no-field-mask", action="store_true", help="analyse every patch, not only the lung field")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")


def _analyze_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lungct-viewer analyze",
        description="Analyse a patient's CT folder headless: writes report.json and annotated PNGs. "
        + RESEARCH_NOTICE
        + ".",
    )
    p.add_argument("patient_dir", help="folder holding the patient's DICOM CT slices (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (created if needed; never inside the DICOM folder)")
    p.add_argument("--series", help="SeriesInstanceUID to analyse (default: the axial CT series with most slices)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in the output folder")
    _add_reading_options(p)
    return p


def _workers(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError("at least one worker is needed")
    return v


def _batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lungct-viewer batch",
        description="Read every CT study under a folder (one per patient folder, or one per series with "
        "--each-series) with the same pipeline as 'analyze', locally or on a Dask cluster; writes "
        "OUT/<study>/ per study and OUT/cohort.csv + cohort.json. A rerun skips the studies already read "
        "with the same model and options. " + RESEARCH_NOTICE + ".",
    )
    p.add_argument("root", help="cohort folder: each folder directly below it is one patient's folder")
    p.add_argument("--out", required=True, help="output folder (created if needed; never inside ROOT)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="studies read at once on this machine (default 1: in this process; N > 1: a local "
        "Dask cluster of N worker processes)",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="send the studies to an existing Dask cluster (e.g. tcp://host:8786) whose workers "
        "have LungCT Viewer installed and read ROOT, OUT and the model at the same paths",
    )
    p.add_argument(
        "--each-series",
        action="store_true",
        help="one study per CT series of each patient folder (default: the series 'analyze' picks: "
        "the axial CT series with the most slices)",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=1,
        help="how many folder levels below ROOT the patient folders are (default 1; 0: ROOT itself "
        "is the only patient folder)",
    )
    _add_reading_options(p)
    return p


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lungct-viewer",
        description="LungCT Viewer: open a chest CT folder and see where the CNN finds tumours. "
        + RESEARCH_NOTICE
        + ". Use 'lungct-viewer analyze --help' and 'lungct-viewer batch --help' for the headless "
        "commands.",
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
        raise ModelLoadError(f"No trained model is installed (expected {path}); pass --model PATH to a .keras model.")
    return path


def reading_options(args: argparse.Namespace):
    """The :class:`~.core.reading.ReadOptions` of parsed ``analyze``/``batch`` arguments."""
    from .core.reading import ReadOptions

    return ReadOptions(
        threshold=args.threshold,
        min_roi_probability=args.min_roi_probability,
        min_votes=args.min_votes,
        suspicion_threshold=args.suspicion_threshold,
        all_slices=args.all_slices,
        include_identifiers=args.include_identifiers,
        dicom=args.dicom,
        red=args.red,
    )


def run_analyze(args: argparse.Namespace) -> int:
    from .core.errors import ExportError
    from .core.export import is_within
    from .core.model import load_model
    from .core.pipeline import Analyzer
    from .core.reading import read_study

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    src = Path(args.patient_dir)
    out = Path(args.out)
    if src.exists() and is_within(out, src):
        raise ExportError("The output folder must not be inside the DICOM folder; choose another --out.")
    model_path = resolve_model_path(args.model)

    def progress(_sa, done: int, total: int) -> None:
        if not args.quiet and (done == total or done % 10 == 0):
            print(f"  analysed {done}/{total} slices", flush=True)

    reading = read_study(
        src,
        out,
        lambda: Analyzer(load_model(model_path), use_field_mask=not args.no_field_mask),
        reading_options(args),
        series_uid=args.series,
        overwrite=args.overwrite,
        say=say,
        on_slice=progress,
    )
    if reading.dicom_error is not None:
        print(f"warning: no DICOM results were written: {reading.dicom_error}", file=sys.stderr)
    session, report = reading.session, reading.report
    d = session.diagnosis()
    frac = "n/a" if d.malignant_fraction is None else f"{d.malignant_fraction:.2f}"
    found = session.findings()
    below = len(session.lesions()) - len(found)
    print(
        f"{d.display}: malignant fraction {frac} at threshold {d.threshold:.2f}; {len(found)} lesion(s) "
        f"({below} candidate(s) below the suspicion threshold) on {reading.slices_exported} slice(s); "
        f"inference {session.analysis.inference_s:.1f} s on {session.analysis.device}, "
        f"lung region {report['timing']['lung_region_s'] or 0:.1f} s (beside the network), "
        f"candidates {report['timing']['candidates_s']:.1f} s; wrote {len(reading.written)} file(s) to {out}"
    )
    print(RESEARCH_NOTICE)
    return 0


def run_batch_cli(args: argparse.Namespace) -> int:
    """``lungct-viewer batch``: 0 when every study was read (or skipped), 1 when some failed,
    130 when stopped early."""
    from tqdm import tqdm

    from .batch import run_batch
    from .batch.runner import STOPPED_MESSAGE

    say = (lambda line: None) if args.quiet else (lambda line: tqdm.write(line, file=sys.stderr))  # above the bar
    result = run_batch(
        args.root,
        args.out,
        model=args.model,
        options=reading_options(args),
        use_field_mask=not args.no_field_mask,
        each_series=args.each_series,
        depth=args.depth,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
        say=say,
    )
    ok, skipped, failed = (result.count(s) for s in ("ok", "skipped", "failed"))
    minutes, seconds = divmod(int(round(result.seconds)), 60)
    took = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    not_reached = sum(r["message"] == STOPPED_MESSAGE for r in result.rows)
    skipped_text = f"{skipped} skipped ({not_reached} not reached)" if not_reached else f"{skipped} skipped"
    print(
        f"{'Stopped' if result.interrupted else 'Done'} in {took}: {ok} read, {skipped_text}, {failed} failed "
        f"of {len(result.rows)}; wrote {result.csv_path}"
    )
    for row in result.failed[:20]:
        print(f"  {row['study']}: {row['message']}")
    if len(result.failed) > 20:
        print(f"  ... and {len(result.failed) - 20} more (see {result.csv_path.name})")
    if result.interrupted:
        print("The studies not reached are marked skipped; run the same command again to continue.")
    print(RESEARCH_NOTICE)
    if result.interrupted:
        return 130
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("LUNGCT_LOG", "WARNING").upper(), format="%(levelname)s %(name)s: %(message)s"
    )
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
    if argv and argv[0] == "batch":
        parser = _batch_parser()
        args = parser.parse_args(argv[1:])
        if args.depth < 0:
            parser.error("--depth must be 0 or more")
        try:
            return run_batch_cli(args)
        except LungCTError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                "error: interrupted; the study folders in the output folder are complete, and running the "
                "same command again continues.",
                file=sys.stderr,
            )
            return 130
    args = _gui_parser().parse_args(argv)
    from .gui.app import run_gui

    return run_gui(
        args.path, model_path=args.model, series_uid=args.series, screenshot=args.screenshot, slice_number=args.slice
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
