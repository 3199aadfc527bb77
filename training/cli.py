"""Command line of the training package (``python -m training`` / ``lungct-train``).

Commands: ``import-lidc``, ``import-nodules``, ``import-voc``, ``import-study``, ``patches``,
``add-counterfactuals``, ``mine-negatives``, ``train``, ``evaluate``, ``evaluate-studies``,
``evaluate-pasted``, ``card``, ``export``. Errors in the data are reported as one sentence naming the file
(exit status 2); nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lungct_viewer.core.errors import DataError, LungCTError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lungct-train", description="Build the LungCT patch CNN from annotated CT.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("import-lidc", help="LIDC reading XML -> per-slice ROI masks and malignancy labels")
    p.add_argument("study_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--min-readers", type=int, default=2, help="consensus: pixels outlined by at least this many readers"
    )
    p.add_argument(
        "--reader", type=int, default=None, help="use only this reading session (0-based) instead of a consensus"
    )
    p.add_argument("--patient-id", default=None)

    p = sub.add_parser("import-nodules", help="the LIDC NIfTI nodule crops with nodules.csv labels")
    p.add_argument("src", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--patient", action="append", default=None, help="import only this patient (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="import only the first N patients")

    p = sub.add_parser("import-voc", help="Lung-PET-CT-Dx VOC boxes as malignant ROIs")
    p.add_argument("study_dir", type=Path)
    p.add_argument("annotation_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--patient-id", default=None)
    p.add_argument("--series", action="append", default=None, help="only this SeriesInstanceUID (repeatable)")

    p = sub.add_parser("import-study", help="a whole study with nothing annotated, as background (Not-ROI) only")
    p.add_argument("study_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--patient-id", default=None)

    p = sub.add_parser("patches", help="labelled, balanced 50x50 patches split by patient")
    p.add_argument("--data", type=Path, action="append", required=True, help="training-layout folder (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="output .npz (a .json summary is written beside it)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument(
        "--per-class", type=int, default=10000, help="training patches per class after balancing (0: the largest class)"
    )
    p.add_argument("--roi-per-slice", type=int, default=6)
    p.add_argument("--roi-per-nodule", type=int, default=48)
    p.add_argument("--neg-per-slice", type=int, default=60)
    p.add_argument("--mimic-fraction", type=float, default=0.25)
    p.add_argument(
        "--min-train-diameter-mm",
        type=float,
        default=0.0,
        help="training split: no ROI patches from crop nodules smaller than this (nodules.csv diameter)",
    )
    p.add_argument(
        "--crop-neg-per-slice",
        type=int,
        default=0,
        help="Not-ROI windows from each crop slice that holds no part of the nodule (0: none)",
    )
    p.add_argument("--slice-step", type=int, default=1, help="use every n-th slice of whole studies")
    for s in ("train", "val", "test"):
        p.add_argument(f"--{s}-patient", action="append", default=[], help=f"force a patient into the {s} split")
    p.add_argument(
        "--split-file",
        type=Path,
        default=None,
        help='JSON {"split": {patient: train|val|test}} fixing every listed patient\'s split '
        "(training/splits/ holds the shipped models' splits)",
    )

    p = sub.add_parser("train", help="train the CNN on a patch set")
    p.add_argument("--patches", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--epoch-size", type=int, default=None, help="patches per epoch (default: the whole training split)")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument(
        "--val-size", type=int, default=None, help="validate on a fixed class-balanced subsample of this many patches"
    )
    p.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"), default="auto")
    p.add_argument(
        "--init-model",
        default=None,
        help="start from this model's weights (fine-tuning; same architecture, fresh optimizer)",
    )
    p.add_argument(
        "--texture-augmentation",
        action="store_true",
        help="random gain / offset / noise on every training patch (scanner variation)",
    )

    p = sub.add_parser(
        "add-counterfactuals",
        help="replace Not-ROI patches by crop windows with the nodule removed (same patient and scanner)",
    )
    p.add_argument("--patches", type=Path, required=True)
    p.add_argument("--data", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-nodule", type=int, default=12)
    p.add_argument("--fraction", type=float, default=0.5, help="at most this share of each split's Not-ROI patches")
    p.add_argument("--seed", type=int, default=1234)

    p = sub.add_parser("mine-negatives", help="add the model's false positives on training studies as Not-ROI patches")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--patches", type=Path, required=True)
    p.add_argument("--data", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-slice", type=int, default=20)
    p.add_argument("--max-fraction", type=float, default=0.4)
    p.add_argument("--seed", type=int, default=1234)

    p = sub.add_parser("evaluate", help="patch, nodule and patient metrics on held-back patients (with 95% intervals)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--patches", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder (JSON, CSV, PNG)")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument(
        "--threshold", type=float, default=None, help="voting threshold (default: chosen on the validation split)"
    )
    p.add_argument("--tta", action="store_true", help="average each patch with its left-right mirror image")
    p.add_argument(
        "--min-sensitivity",
        type=float,
        default=None,
        help="choose the voting threshold as the most specific one keeping this validation sensitivity "
        "(default: maximum Youden's J)",
    )

    p = sub.add_parser(
        "evaluate-studies",
        help="the viewer's whole reading on whole studies, leave-one-study-out (FROC, calls); "
        "optionally fit and write the second reading",
    )
    _whole_study_options(p, "output folder (metrics.json, series.csv, froc.csv/png, reports/)")
    p.add_argument("--study", action="append", default=None, help="only this study (repeatable)")
    p.add_argument(
        "--fit-out", type=Path, default=None, help="also write the second reading fitted on every study here"
    )

    p = sub.add_parser(
        "evaluate-pasted",
        help="the whole reading's nodule sensitivity on held-back patients' nodules pasted into the whole "
        "studies, leave-one-study-out",
    )
    _whole_study_options(p, "output folder (metrics.json, pasted.csv)")
    p.add_argument(
        "--split-file",
        type=Path,
        default=Path(__file__).resolve().parent / "splits" / "model-1.1.0.json",
        help="patient split whose test patients' nodules are pasted (default: the shipped network's split)",
    )
    p.add_argument("--per-host", type=int, default=None, help="test nodules pasted per series (default: all)")

    p = sub.add_parser("card", help="update a model's card with new evaluations (the model file is not touched)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--evaluation", type=Path, default=None, help="evaluate's metrics.json")
    p.add_argument("--studies-evaluation", type=Path, default=None, help="evaluate-studies' metrics.json")
    p.add_argument("--pasted-evaluation", type=Path, default=None, help="evaluate-pasted's metrics.json")

    p = sub.add_parser("export", help="write the model and its model card to resources/model/")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--evaluation", type=Path, default=None, help="evaluate's metrics.json")
    p.add_argument("--patches", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="target folder (default resources/model)")
    p.add_argument("--version", default=None)
    p.add_argument(
        "--studies-evaluation", type=Path, default=None, help="evaluate-studies' metrics.json (whole studies)"
    )
    return ap


def _whole_study_options(p: argparse.ArgumentParser, out_help: str) -> None:
    """Options shared by the commands that read the whole studies with the second reading."""
    p.add_argument("--model", type=Path, default=None, help="model file (default: the shipped model)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with lidc-idri/, lung-pet-ct-dx/, covid-ct-md/, lidc-nodules/ "
        "(default: $LUNGCT_DATA_DIR or ../shared/data)",
    )
    p.add_argument(
        "--nodules",
        type=Path,
        default=None,
        help="LIDC nodule crops to paste (default: DATA_DIR/lidc-nodules)",
    )
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument(
        "--cache", type=Path, default=Path("runs/cache"), help="cache of the network's output per model and series"
    )
    p.add_argument(
        "--pastes", type=int, default=None, help="nodule crops pasted into each study to fit second readings"
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument(
        "--slabs-mm",
        type=float,
        nargs="*",
        default=None,
        help="slice spacings (mm) of the thick-slab reconstructions made of each thin-slice series to fit and "
        "score second readings (default: 5 and 7.5; none given: no reconstructions)",
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (DataError, LungCTError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.cmd == "import-lidc":
        from .lidc import import_lidc

        out = import_lidc(args.study_dir, args.out, args.min_readers, args.reader, args.patient_id)
        info = json.loads((out / "series_0.json").read_text())
        for n in info["nodules"]:
            print(
                f"{out.name} nodule {n['nodule']}: {n['label']} (median rating {n['median_malignancy']}, "
                f"readers {len(n['readers'])}, {len(n['slices'])} slices)"
            )
        return 0
    if args.cmd == "import-nodules":
        from .nodules import import_nodules

        done = import_nodules(args.src, args.out, args.patient, args.limit)
        print(f"imported the nodule crops of {len(done)} patients into {args.out}")
        return 0
    if args.cmd == "import-voc":
        from .voc import import_voc

        out = import_voc(args.study_dir, args.annotation_dir, args.out, args.patient_id, args.series)
        for sj in sorted(out.glob("series_*.json")):
            info = json.loads(sj.read_text())
            n_c = sum(b["carried"] for b in info["boxes"])
            print(
                f"{out.name} series {info['series_uid']}: {len(info['boxes'])} boxes "
                f"({n_c} carried from the other series)"
            )
        return 0
    if args.cmd == "import-study":
        from .background import import_study

        out = import_study(args.study_dir, args.out, args.patient_id)
        print(f"{out.name}: background-only whole study imported")
        return 0
    if args.cmd == "patches":
        from .patchset import PatchConfig, build_patch_set

        forced = {}
        if args.split_file is not None:
            try:
                forced.update(json.loads(args.split_file.read_text())["split"])
            except (OSError, ValueError, KeyError) as exc:
                raise DataError(f"The split file {args.split_file} could not be read: {exc}") from exc
        forced.update({p: s for s in ("train", "val", "test") for p in getattr(args, f"{s}_patient")})
        cfg = PatchConfig(
            seed=args.seed,
            test_fraction=args.test_fraction,
            val_fraction=args.val_fraction,
            per_class=args.per_class or None,
            roi_per_slice=args.roi_per_slice,
            roi_per_nodule=args.roi_per_nodule,
            neg_per_slice=args.neg_per_slice,
            mimic_fraction=args.mimic_fraction,
            crop_neg_per_slice=args.crop_neg_per_slice,
            min_train_diameter_mm=args.min_train_diameter_mm,
            forced=forced,
            slice_step=args.slice_step,
        )
        s = build_patch_set(args.data, args.out, cfg)
        print(json.dumps({k: s[k] for k in ("patients", "counts", "augmented")}))
        return 0
    if args.cmd == "train":
        from lungct_viewer.core import constants as C

        from .train import TrainConfig, train

        cfg = TrainConfig(
            epochs=args.epochs,
            epoch_size=args.epoch_size,
            max_minutes=args.max_minutes,
            patience=args.patience,
            seed=args.seed,
            batch_size=args.batch_size or C.BATCH_SIZE,
            learning_rate=args.learning_rate or C.LEARNING_RATE,
            strategy=args.strategy,
            val_size=args.val_size,
            resume=args.resume,
            texture_augmentation=args.texture_augmentation,
            init_model=args.init_model,
        )
        train(args.patches, args.run_dir, cfg, log=lambda m: print(m, flush=True))
        return 0
    if args.cmd == "add-counterfactuals":
        from .counterfactual import add_counterfactuals

        add_counterfactuals(
            args.patches,
            args.data,
            args.out,
            args.per_nodule,
            args.fraction,
            args.seed,
            log=lambda m: print(m, flush=True),
        )
        return 0
    if args.cmd == "mine-negatives":
        from .mine import mine_negatives

        mine_negatives(
            args.model,
            args.patches,
            args.data,
            args.out,
            args.per_slice,
            args.max_fraction,
            args.seed,
            log=lambda m: print(m, flush=True),
        )
        return 0
    if args.cmd == "evaluate":
        from .evaluate import run_evaluate

        run_evaluate(args)
        return 0
    if args.cmd == "evaluate-studies":
        from lungct_viewer.core.model import MODEL_FILENAME
        from lungct_viewer.core.userdirs import default_data_dir
        from lungct_viewer.resources import MODEL_DIR

        from .evaluate_studies import run_evaluate_studies
        from .second_reading import PASTES_PER_HOST
        from .slabs import SLAB_TARGETS_MM

        args.model = args.model or MODEL_DIR / MODEL_FILENAME
        args.data_dir = args.data_dir or default_data_dir()
        if args.nodules is None and (args.data_dir / "lidc-nodules").is_dir():
            args.nodules = args.data_dir / "lidc-nodules"
        args.pastes = PASTES_PER_HOST if args.pastes is None else args.pastes
        args.slabs_mm = SLAB_TARGETS_MM if args.slabs_mm is None else tuple(args.slabs_mm)
        run_evaluate_studies(args)
        return 0
    if args.cmd == "evaluate-pasted":
        from lungct_viewer.core.model import MODEL_FILENAME
        from lungct_viewer.core.userdirs import default_data_dir
        from lungct_viewer.resources import MODEL_DIR

        from .evaluate_pasted import run_evaluate_pasted
        from .second_reading import PASTES_PER_HOST
        from .slabs import SLAB_TARGETS_MM

        args.model = args.model or MODEL_DIR / MODEL_FILENAME
        args.data_dir = args.data_dir or default_data_dir()
        args.pastes = PASTES_PER_HOST if args.pastes is None else args.pastes
        args.slabs_mm = SLAB_TARGETS_MM if args.slabs_mm is None else tuple(args.slabs_mm)
        run_evaluate_pasted(args)
        return 0
    if args.cmd == "card":
        from .export import refresh_card

        print(f"updated {refresh_card(args.model, args.evaluation, args.studies_evaluation, args.pasted_evaluation)}")
        return 0
    if args.cmd == "export":
        from .export import run_export

        run_export(args)
        return 0
    raise AssertionError(args.cmd)


if __name__ == "__main__":
    raise SystemExit(main())
