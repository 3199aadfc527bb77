"""``export``: the trained model and its model card into ``resources/model/``."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from lungct_viewer.core import constants as C
from lungct_viewer.core.errors import DataError
from lungct_viewer.core.model import (
    CARD_FILENAME,
    MODEL_FILENAME,
    THRESHOLD_CURVE_KEY,
    ModelCard,
    load_model,
    save_model,
)

from .train import texture_augmentation_text

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "resources" / "model"

LICENCES = [
    "LIDC-IDRI: Creative Commons Attribution 3.0 (CC BY 3.0). Armato SG III et al. (2015), Data From LIDC-IDRI, "
    "The Cancer Imaging Archive, doi:10.7937/K9/TCIA.2015.LO9QL9SX; Armato SG III et al., Medical Physics "
    "38:915-931, 2011. The nodule crops are derived from LIDC-IDRI (CC BY 3.0).",
    "Lung-PET-CT-Dx: Creative Commons Attribution 4.0 (CC BY 4.0). Li P. et al. (2020), A Large-Scale CT and "
    "PET/CT Dataset for Lung Cancer Diagnosis, The Cancer Imaging Archive, doi:10.7937/TCIA.2020.NNC2-0461.",
]

DEVIATIONS = [
    "Unpadded (valid) 3x3 convolutions: final feature map 8x8x108 instead of 13x13x108, so that whole-slice "
    "dense inference is exact.",
    "Slices are resampled to 0.7 mm pixels before patching (a patch always covers 35 x 35 mm) and HU are "
    "windowed to [-1000, 400] -> [0, 1]; the method used the native 512 x 512 pixels.",
    "Training data: public LIDC-IDRI nodule crops (benign/malignant from the radiologists' malignancy ratings, "
    "not pathology) and three whole studies, instead of the Asan contest's 300 patients with pathology.",
    "Nodule crops smaller than the 60 x 60 model-pixel field are mirror-padded; a share of the Not-ROI patches "
    "is cut and mirror-padded the same way so that padding is not a cue for ROI.",
    "Balanced by augmentation of the minority class (the method's flip, zoom-in, 30/45 degree rotation, blur) "
    "and subsampling of larger classes to the same count; random horizontal flips on the fly.",
    "Training was cut by a wall-clock budget (shared 2-core CPU) and early stopping on held-back patients, "
    "far fewer patch presentations than the method's 200 epochs of 60,000 patches.",
]
#: How the reading differs from the method (the same for every model; the card carries them).
READING_DEVIATIONS = [
    "Findings are localised 3-D lesions, not the vote map's connected regions: candidates grow from the local "
    "maxima of the ROI score (P(ROI) >= 0.88) to the dense structure they point at, inside a lung region, and a "
    "second reading scores each from its 3-D shape (second_reading.json); the vote map stays the red overlay.",
    "The patient-level majority vote pools the ROI-patch votes of the lesions that pass the second reading, "
    "are at least 6 mm across and, where texture can be judged (lesions of 6 mm or more on slices at most 2.5 mm "
    "apart, as many slice spacings across on thicker slices), have a solid component (a ball of 2.5 mm at more "
    "than -300 HU; pure ground-glass lesions are listed but do not vote, as Lung-RADS never calls them "
    "suspicious); no such lesion gives 'no suspicious findings'.",
]


def _topic(deviation: str) -> str:
    """A deviation's topic: its first four words (a reworded deviation keeps them)."""
    return " ".join(deviation.split()[:4])


def recipe_deviations(train_summary: dict, patch_summary: dict) -> list[str]:
    """Deviations that depend on the options the patch set and the run were made with."""
    pc, tc = patch_summary.get("config", {}), train_summary.get("config", {})
    out = []
    if pc.get("crop_neg_per_slice"):
        out.append(
            f"Not-ROI patches also come from the nodule-free slices of the nodule crops "
            f"({pc['crop_neg_per_slice']} windows per slice), so that other patients' lung is seen as Not-ROI."
        )
    if pc.get("min_train_diameter_mm"):
        out.append(
            f"Training ROI patches only from crop nodules of at least {pc['min_train_diameter_mm']:g} mm; "
            "smaller ones are neither ROI nor Not-ROI (evaluation keeps every nodule)."
        )
    if tc.get("init_model"):
        out.append(
            f"Two stages: a model trained with the base recipe, then fine-tuned from its weights "
            f"({Path(tc['init_model']).name}) on the patch set described here (best of "
            f"{train_summary.get('epochs_run')} epochs of {train_summary.get('patches_per_epoch')} patches)."
        )
    if tc.get("texture_augmentation"):
        out.append(
            f"Every training patch gets a {texture_augmentation_text()}, so that scanner intensity and "
            "noise are no cue for the class."
        )
    return out


def _read(path: Path | None) -> dict:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The file {path} does not exist.")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"The file {path} is not valid JSON: {exc}") from exc


def _split_text(patients: dict, counts: dict) -> str:
    """``train 305 patients (12000 not-ROI, 12000 benign, 12000 malignant patches), ...``"""
    parts = []
    for split in ("train", "val", "test"):
        c = counts.get(split)
        patches = f" ({c[0]} not-ROI, {c[1]} benign, {c[2]} malignant patches)" if c else ""
        parts.append(f"{split} {patients.get(split, '?')} patients{patches}")
    return "; ".join(parts)


def build_card(
    version: str,
    train_summary: dict,
    evaluation: dict,
    patch_summary: dict,
    reproduce: str,
    studies: dict | None = None,
) -> ModelCard:
    counts = patch_summary.get("counts", {})
    card = ModelCard(version=version, created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    card.training_data = [
        "LIDC-IDRI nodule crops (lidc-nodules: 796 nodules, 435 patients; labels = nodules.csv Diagnosis, the "
        "majority of the readers' malignancy ratings): ROI patches of benign and malignant nodules.",
        "LIDC-IDRI-0001 (GE, 2.5 mm; one malignant nodule, consensus of >= 2 of 4 readers from the reading XML): "
        "ROI patches and Not-ROI background (training).",
        "Lung_Dx-A0001 (Lung-PET-CT-Dx, Philips, 5 mm, both series; VOC boxes carried across series by z): "
        "malignant ROI patches and Not-ROI background (training).",
        "LIDC-IDRI-0005 (GE, 2.5 mm; two indeterminate nodules, median rating 3, excluded from the ROI classes): "
        "held back entirely (test split) for whole-study false positives.",
        f"Patients per split (by patient, stratified, seed {patch_summary.get('config', {}).get('seed')}): "
        f"{_split_text(patch_summary.get('patients') or {}, counts)}.",
    ]
    card.training = {
        "optimizer": "Adam",
        "learning_rate": C.LEARNING_RATE,
        "batch_size": C.BATCH_SIZE,
        "loss": "cross-entropy",
        "dropout": {"conv": C.DROPOUT_CONV, "dense": C.DROPOUT_DENSE},
        "patch_labelling_rule": (
            f"ROI when the central {C.ROI_CORE_PX}x{C.ROI_CORE_PX} px of the 50x50 window hold >= "
            f"{C.ROI_MIN_CORE_PIXELS} mask pixels of the class; Not-ROI when the whole window (plus a 5 mm margin) "
            "holds no marked pixel; otherwise ambiguous and unused"
        ),
        **{
            k: train_summary.get(k)
            for k in (
                "train_patches",
                "train_class_counts",
                "val_patches",
                "val_class_counts",
                "epochs_run",
                "patches_per_epoch",
                "wall_time_s",
                "throughput_patches_per_s",
                "best_val_loss",
                "val_accuracy",
                "val_per_class_recall",
            )
        },
        "early_stopping": "validation loss on held-back patients, best weights kept",
        "augmentation": "minority classes: horizontal flip, zoom-in 1.1-1.35, rotation +-30 / +-45 degrees, "
        "Gaussian blur sigma 0.6-1.2; all training patches: random horizontal flip"
        + (f", {texture_augmentation_text()}" if train_summary.get("config", {}).get("texture_augmentation") else ""),
    }
    apply_evaluation(card, evaluation, studies)
    card.deviations_from_method = (
        list(DEVIATIONS) + recipe_deviations(train_summary, patch_summary) + READING_DEVIATIONS
    )
    card.licences = list(LICENCES)
    card.reproduce = reproduce
    card.notes = [
        "Research use only: not a medical device and not for diagnosis.",
        "Malignancy labels are radiologists' ratings, not pathology; benign/malignant separation of small "
        "nodules from ratings is inherently noisy.",
        "Whole-study background (Not-ROI) comes from only three whole studies (two GE, one Philips): expect more "
        "false positives on other scanners, kernels, and on emphysema, fibrosis or pneumonia.",
        "The default voting threshold was chosen on the validation patients only (a few dozen), so it is itself "
        "uncertain.",
        "CPU TensorFlow is not bit-exact across machines, so a re-run gives close but not identical figures.",
    ]
    return card


#: Notes an evaluation replaces (written by earlier versions of this module).
STALE_NOTES = (
    "Whole studies, leave-one-study-out",
    "Whole-scan false positives at the default detection settings",
    "Share of the lung-field windows called ROI",
)


def apply_evaluation(card: ModelCard, evaluation: dict | None, studies: dict | None = None) -> ModelCard:
    """Put ``evaluate``'s metrics (and ``evaluate-studies``' whole-study figures) on a card."""
    if evaluation:
        card.metrics = {
            "held_back_split": evaluation.get("split"),
            "patients": evaluation.get("patients"),
            "nodule_level": evaluation.get("nodule_level"),
            "patient_level": evaluation.get("patient_level"),
            "patient_level_max_nodule_vote": evaluation.get("patient_level_max_nodule_vote"),
            "validation_patient_level": evaluation.get("validation_patient_level"),
            "patch_level": evaluation.get("patch_level"),
            "test_time_augmentation": evaluation.get("test_time_augmentation"),
            THRESHOLD_CURVE_KEY: evaluation.get(THRESHOLD_CURVE_KEY),
        }
        card.operating_point = {
            "voting_threshold": evaluation.get("threshold", C.DEFAULT_VOTING_THRESHOLD),
            "voting_threshold_reason": evaluation.get("threshold_reason", ""),
            "min_roi_probability": C.DEFAULT_MIN_ROI_PROBABILITY,
            "min_votes": C.DEFAULT_MIN_VOTES,
            "call_min_diameter_mm": C.DEFAULT_CALL_MIN_DIAMETER_MM,
        }
    if studies:
        loso = studies.get("leave_one_study_out", {})
        card.metrics["whole_studies"] = {
            "scored": "leave-one-study-out: each study read by a second reading fitted without it",
            "studies": studies.get("studies"),
            "froc_sensitivity_at": loso.get("froc_sensitivity_at"),
            "cpm": loso.get("cpm"),
            "tumours_found": loso.get("tumours_found"),
            "tumours": loso.get("tumours"),
            "indeterminate_found": loso.get("indeterminate_found"),
            "indeterminate": loso.get("indeterminate"),
            "false_positives_per_scan": loso.get("false_positives_per_scan"),
            "series": [
                {
                    k: r.get(k)
                    for k in (
                        "study",
                        "series",
                        "tumours_found",
                        "tumours",
                        "indeterminate_found",
                        "indeterminate",
                        "false_positives",
                        "largest_finding_mm2",
                        "field_windows_roi",
                        "patient_call",
                    )
                }
                for r in loso.get("series", [])
            ],
            "thick_slab_reconstructions": {
                k: v for k, v in studies.get("thick_slab_reconstructions", {}).items() if k != "series"
            }
            or None,
        }
    # the reading's deviations are the code's: one that changed replaces its former wording
    topics = {_topic(d) for d in READING_DEVIATIONS}
    card.deviations_from_method = [d for d in card.deviations_from_method if _topic(d) not in topics]
    card.deviations_from_method += READING_DEVIATIONS
    if studies:
        card.notes = [n for n in card.notes if not n.startswith(STALE_NOTES)]
        loso = studies.get("leave_one_study_out", {})
        card.notes.append(
            f"Whole studies, leave-one-study-out ({len(studies.get('studies', []))} studies, {studies.get('scans')} "
            f"scans): tumours found {loso.get('tumours_found')}/{loso.get('tumours')}, indeterminate nodules "
            f"{loso.get('indeterminate_found')}/{loso.get('indeterminate')}, "
            f"{loso.get('false_positives_per_scan', 0):.1f} false-positive lesions per scan; "
            f"CPM {_fmt(loso.get('cpm'))}. "
            "Findings are the lesions passing the second reading (second_reading.json beside the model)."
        )
    return card


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def apply_pasted_evaluation(card: ModelCard, pasted: dict) -> ModelCard:
    """Put ``evaluate-pasted``'s sensitivity on held-back patients' nodules on a card."""
    card.metrics["pasted_nodules"] = {
        "scored": "LIDC crops of the network's held-back (test) patients pasted into the whole studies and read "
        "by the whole pipeline; second readings fitted without the host study and without those crops",
        **{
            k: pasted.get(k)
            for k in ("nodules", "crops", "on_the_spot", "finding", "by_size", "by_label", "froc_sensitivity_at", "cpm")
        },
    }
    card.notes = [n for n in card.notes if not n.startswith("Nodules pasted from held-back patients")]
    card.notes.append(
        f"Nodules pasted from held-back patients ({pasted.get('nodules')} pastes of {pasted.get('crops')} crops into "
        f"{pasted.get('scans')} whole series): a candidate on the spot for {pasted.get('on_the_spot')}, a finding at "
        f"the operating point (before the cap of findings per scan) for {pasted.get('finding')}; by size "
        + ", ".join(f"{g['size_mm']} mm {g['finding']}" for g in pasted.get("by_size", []))
        + "."
    )
    return card


def refresh_card(
    model_path: Path, evaluation: Path | None = None, studies: Path | None = None, pasted: Path | None = None
) -> Path:
    """Update the card beside ``model_path`` with new evaluations; the model and what the card
    says about its training stay as they are."""
    from lungct_viewer.core.atomic import write_json_atomic
    from lungct_viewer.core.model import card_path_for, read_model_card

    card = read_model_card(model_path)
    apply_evaluation(card, _read(evaluation) if evaluation else None, _read(studies) if studies else None)
    if pasted:
        apply_pasted_evaluation(card, _read(pasted))
    target = card_path_for(model_path)
    write_json_atomic(target, card.to_dict())
    return target


REPRODUCE = (
    "D=../shared/data; "
    "python -m training import-nodules $D/lidc-nodules --out data/layout && "
    "python -m training import-lidc $D/lidc-idri/LIDC-IDRI-0001 --out data/layout && "
    "python -m training import-lidc $D/lidc-idri/LIDC-IDRI-0005 --out data/layout && "
    "python -m training import-voc $D/lung-pet-ct-dx/Lung_Dx-A0001 $D/lung-pet-ct-dx/Annotation/A0001 "
    "--out data/layout && "
    "python -m training patches --data data/layout --out data/patches.npz --seed 1234 --per-class 10000 "
    "--neg-per-slice 60 --train-patient LIDC-IDRI-0001 --train-patient Lung_Dx-A0001 --test-patient LIDC-IDRI-0005 && "
    "python -m training train --patches data/patches.npz --run-dir runs/shipped --epochs 60 --epoch-size 6000 "
    "--val-size 2400 --patience 6 --max-minutes 37 && "
    "python -m training patches --data data/layout --out data/patches_b.npz --seed 1234 --per-class 12000 "
    "--neg-per-slice 60 --crop-neg-per-slice 8 --min-train-diameter-mm 6 --train-patient LIDC-IDRI-0001 "
    "--train-patient Lung_Dx-A0001 --test-patient LIDC-IDRI-0005 && "
    "python -m training train --patches data/patches_b.npz --run-dir runs/c --epochs 40 --epoch-size 6000 "
    "--val-size 2400 --patience 5 --max-minutes 16 --texture-augmentation --init-model runs/shipped/model.keras && "
    "python -m training evaluate --model runs/c/model.keras --patches data/patches_b.npz --out runs/c/eval && "
    "python -m training export --model runs/c/model.keras --run-dir runs/c "
    "--evaluation runs/c/eval/metrics.json --patches data/patches_b.npz --version 1.1.0"
)


def export(
    model_path: Path,
    out_dir: Path | None = None,
    run_dir: Path | None = None,
    evaluation: Path | None = None,
    patches: Path | None = None,
    version: str | None = None,
    reproduce: str = REPRODUCE,
    studies: Path | None = None,
) -> Path:
    loaded = load_model(model_path)
    train_summary = _read(Path(run_dir) / "train_summary.json") if run_dir else {}
    ev = _read(evaluation) if evaluation else {}
    ps = _read(Path(patches).with_suffix(".json")) if patches else {}
    version = version or f"1.0.0+{_dt.date.today():%Y%m%d}"
    card = build_card(version, train_summary, ev, ps, reproduce, _read(studies) if studies else None)
    out = Path(out_dir) if out_dir else DEFAULT_OUT
    target = save_model(loaded.keras_model, out / MODEL_FILENAME, card)
    load_model(target)  # the written file loads in safe mode with its card
    return target


def run_export(args) -> Path:
    p = export(
        args.model, args.out, args.run_dir, args.evaluation, args.patches, args.version, studies=args.studies_evaluation
    )
    print(f"wrote {p} and {p.with_name(CARD_FILENAME)}")
    return p
