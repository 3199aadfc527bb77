"""The training package: importers, patch set, training, evaluation and export.

Real-data tests use small subsets of ``../shared/data`` (skipped when absent); the
learning test trains briefly on synthetic phantom patches.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lungct_viewer.core.errors import DataError
from training import layout as L
from training.cli import main
from training.patchset import ORIGINS, crop_patches

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _no_partial(out: Path) -> None:
    assert not any(p.name.startswith(".staging") for p in out.iterdir()) if out.exists() else True


# ------------------------------------------------------------------ import-lidc
@pytest.fixture(scope="module")
def lidc_layout(tmp_path_factory, lidc_0001, lidc_0005) -> Path:
    out = tmp_path_factory.mktemp("layout")
    assert main(["import-lidc", str(lidc_0001), "--out", str(out)]) == 0
    assert main(["import-lidc", str(lidc_0005), "--out", str(out)]) == 0
    return out


@pytest.mark.realdata
def test_import_lidc_0001_malignant_consensus_matches_reference(lidc_layout, lidc_0001, real_data_dir):
    from training.ctio import load_ct
    from training.lidc import dice, reference_mask_to_volume

    info = json.loads((lidc_layout / "LIDC-IDRI-0001" / "series_0.json").read_text())
    labelled = [n for n in info["nodules"] if n["label"] in ("benign", "malignant")]
    assert len(labelled) == 1 and labelled[0]["label"] == "malignant"
    assert labelled[0]["ratings"] == [5, 5, 5, 4] and labelled[0]["median_malignancy"] == 5.0
    vol = load_ct(lidc_0001)
    ref = reference_mask_to_volume(real_data_dir / "lidc-idri/reference-masks/LIDC-IDRI-0001_R_1.nii.gz", vol)
    mine = np.zeros(vol.shape, bool)
    with np.load(lidc_layout / "LIDC-IDRI-0001" / "masks_0.npz") as z:
        u2k = {u: i for i, u in enumerate(vol.sop_instance_uids)}
        for uid in z.files:
            mine[u2k[uid]] = z[uid] == L.MALIGNANT_CODE
    d = dice(mine, ref)
    print(f"Dice of the consensus mask vs the reference mask: {d:.3f}")
    assert d > 0.85


@pytest.mark.realdata
def test_import_lidc_per_reader_and_indeterminate(lidc_layout, lidc_0005, tmp_path):
    info = json.loads((lidc_layout / "LIDC-IDRI-0005" / "series_0.json").read_text())
    labels = [n["label"] for n in info["nodules"]]
    assert labels.count("indeterminate") == 2 and "malignant" not in labels and "benign" not in labels
    with np.load(lidc_layout / "LIDC-IDRI-0005" / "masks_0.npz") as z:
        codes = set(np.unique(np.concatenate([z[k].ravel() for k in z.files])).tolist())
    assert L.INDETERMINATE_CODE in codes and L.AVOID_CODE in codes
    assert not codes & {L.BENIGN_CODE, L.MALIGNANT_CODE}
    assert main(["import-lidc", str(lidc_0005), "--out", str(tmp_path), "--reader", "0"]) == 0
    info0 = json.loads((tmp_path / "LIDC-IDRI-0005" / "series_0.json").read_text())
    assert info0["mask_rule"] == "reader 0"
    assert all(n["readers"] == [0] for n in info0["nodules"])


@pytest.mark.realdata
def test_import_lidc_bad_inputs(lidc_0005, tmp_path, capsys):
    # a study without any reading XML: no masks
    study = tmp_path / "study"
    study.mkdir()
    for f in sorted(lidc_0005.glob("*.dcm"))[:3]:
        shutil.copy(f, study)
    out = tmp_path / "out"
    assert main(["import-lidc", str(study), "--out", str(out)]) == 2
    assert "no masks" in capsys.readouterr().err
    assert not (out / "study").exists()
    # a corrupt XML
    xml = (lidc_0005 / "076.xml").read_text()
    (study / "076.xml").write_text(xml[: len(xml) // 2])
    assert main(["import-lidc", str(study), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "076.xml" in err and "not valid XML" in err
    assert not (out / "study").exists()
    _no_partial(out)


# ------------------------------------------------------------------ import-voc
@pytest.mark.realdata
def test_import_voc_carries_boxes_across_series(lung_dx_a0001, real_data_dir, tmp_path):
    ann = real_data_dir / "lung-pet-ct-dx/Annotation/A0001"
    assert main(["import-voc", str(lung_dx_a0001), str(ann), "--out", str(tmp_path)]) == 0
    infos = [json.loads(p.read_text()) for p in sorted((tmp_path / "Lung_Dx-A0001").glob("series_*.json"))]
    assert len(infos) == 2
    assert sorted(sum(not b["carried"] for b in i["boxes"]) for i in infos) == [9, 11]
    for i in infos:
        assert len(i["boxes"]) == 20 and not i["unplaced_annotations"]
        assert i["nodules"][0]["label"] == "malignant"
    # bad annotation: a box outside the image
    bad = tmp_path / "bad_ann"
    bad.mkdir()
    f = sorted(ann.glob("*.xml"))[0]
    (bad / f.name).write_text(f.read_text().replace("<xmax>", "<xmax>9"))
    with pytest.raises(DataError, match=f.name):
        from training.voc import import_voc

        import_voc(lung_dx_a0001, bad, tmp_path / "out2")
    assert not (tmp_path / "out2" / "Lung_Dx-A0001").exists()


# ------------------------------------------------------------------ import-nodules
SUBSET = [
    "LIDC-IDRI-0001",
    "LIDC-IDRI-0002",
    "LIDC-IDRI-0003",
    "LIDC-IDRI-0005",
    "LIDC-IDRI-0007",
    "LIDC-IDRI-0010",
    "LIDC-IDRI-0011",
    "LIDC-IDRI-0012",
]


@pytest.fixture(scope="module")
def nodule_layout(tmp_path_factory, lidc_nodules) -> Path:
    import csv

    have = {r["patient_id"] for r in csv.DictReader(open(lidc_nodules / "nodules.csv"))}
    pats = [p for p in SUBSET if p in have]
    out = tmp_path_factory.mktemp("nodules")
    args = ["import-nodules", str(lidc_nodules), "--out", str(out)]
    for p in pats:
        args += ["--patient", p]
    assert main(args) == 0
    return out


@pytest.mark.realdata
def test_import_nodules_labels_and_orientation(nodule_layout, lidc_nodules, lidc_0001):
    nods = L.read_nodules(nodule_layout / "LIDC-IDRI-0001")
    assert len(nods) == 1 and nods[0]["label"] == "malignant"
    n = nods[0]
    assert n["image"].shape == n["mask"].shape and n["image"].dtype == np.int16
    assert n["pixel_spacing_mm"] == pytest.approx([0.703125, 0.703125])
    # the crop, read as (slice, row, col), shows the nodule where the whole study shows it
    from training.ctio import load_ct

    vol = load_ct(lidc_0001)
    import nibabel as nib

    img = nib.load(str(lidc_nodules / "image" / "LIDC-IDRI-0001_R_1.nii.gz"))
    aff = img.affine
    x0, y0 = -aff[0, 3], -aff[1, 3]  # the crop's origin, RAS -> LPS (mm)
    k = n["mask"].sum((1, 2)).argmax()
    z = aff[2, 3] + aff[2, 2] * k
    s = int(np.argmin(np.abs(vol.image_positions_mm[:, 2] - z)))
    r0 = int(round((y0 - vol.image_positions_mm[s, 1]) / 0.703125))
    c0 = int(round((x0 - vol.image_positions_mm[s, 0]) / 0.703125))
    h, w = n["image"].shape[1:]
    whole = vol.hu[s, r0 : r0 + h, c0 : c0 + w].astype(float)
    assert np.corrcoef(whole.ravel(), n["image"][k].astype(float).ravel())[0, 1] > 0.95


@pytest.mark.realdata
def test_import_nodules_corrupt_nifti_leaves_nothing(lidc_nodules, tmp_path, capsys):
    src = tmp_path / "src"
    (src / "image").mkdir(parents=True)
    (src / "nodule_mask").mkdir()
    lines = (lidc_nodules / "nodules.csv").read_text().splitlines()
    rows = [lines[0]] + [ln for ln in lines[1:] if ln.startswith(("LIDC-IDRI-0001,", "LIDC-IDRI-0005,"))]
    (src / "nodules.csv").write_text("\n".join(rows) + "\n")
    for name in ("LIDC-IDRI-0001_R_1", "LIDC-IDRI-0005_R_1", "LIDC-IDRI-0005_R_2"):
        for sub in ("image", "nodule_mask"):
            shutil.copy(lidc_nodules / sub / f"{name}.nii.gz", src / sub)
    data = (src / "image" / "LIDC-IDRI-0005_R_2.nii.gz").read_bytes()
    (src / "image" / "LIDC-IDRI-0005_R_2.nii.gz").write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    assert main(["import-nodules", str(src), "--out", str(out)]) == 2
    assert "LIDC-IDRI-0005_R_2.nii.gz" in capsys.readouterr().err
    assert not (out / "LIDC-IDRI-0001").exists() and not (out / "LIDC-IDRI-0005").exists()
    _no_partial(out)
    # a mask of the wrong size
    shutil.copy(lidc_nodules / "image" / "LIDC-IDRI-0005_R_2.nii.gz", src / "image")
    shutil.copy(
        lidc_nodules / "nodule_mask" / "LIDC-IDRI-0001_R_1.nii.gz", src / "nodule_mask" / "LIDC-IDRI-0005_R_2.nii.gz"
    )
    assert main(["import-nodules", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "LIDC-IDRI-0005_R_2" in err and "but its image" in err, err  # the size mismatch is named
    assert not (out / "LIDC-IDRI-0001").exists()


# ------------------------------------------------------------------ patches (real)
@pytest.mark.realdata
@pytest.mark.slow
def test_patches_on_real_subset(nodule_layout, lidc_layout, tmp_path):
    out = tmp_path / "p.npz"
    assert (
        main(
            [
                "patches",
                "--data",
                str(nodule_layout),
                "--data",
                str(lidc_layout),
                "--out",
                str(out),
                "--per-class",
                "300",
                "--slice-step",
                "12",
                "--neg-per-slice",
                "40",
                "--test-fraction",
                "0.25",
                "--train-patient",
                "LIDC-IDRI-0001",
                "--test-patient",
                "LIDC-IDRI-0005",
                "--val-patient",
                "LIDC-IDRI-0002",
                "--crop-neg-per-slice",
                "4",
            ]
        )
        == 0
    )
    with np.load(out) as z:
        x, y, split, pat, pats = z["x"], z["y"], z["split"], z["patient"], z["patients"]
        aug, origin = z["aug"], z["origin"]
    assert x.shape[1:] == (50, 50) and x.dtype == np.float16
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    tr = split == 0
    assert np.bincount(y[tr], minlength=3).tolist() == [300, 300, 300]
    assert aug[tr].any()  # the minority class was augmented
    # by patient: no patient's nodules in two splits; only the background of a training
    # patient's whole study is shared with validation (blocks of 10 slices)
    for p in np.unique(pat):
        assert len(np.unique(split[(pat == p) & ((origin != 1) | (y > 0))])) <= 1
        assert set(np.unique(split[pat == p]).tolist()) in ({0}, {1}, {2}, {0, 1})
        assert set(split[(pat == p) & (split == 1) & (origin == 1)].tolist()) <= {1}
    assert set(split[pat == list(pats).index("LIDC-IDRI-0005")]) == {2}
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["split"]["LIDC-IDRI-0001"] == "train"
    # Not-ROI windows of nodule-free crop slices: many patients, every split, never an ROI label
    cs = origin == ORIGINS.index("crop-slice")
    assert cs.any() and (y[cs] == 0).all()
    assert set(pat[cs].tolist()) <= set(pat[origin == ORIGINS.index("crop")].tolist())  # crop patients
    # counterfactual negatives: training crops with the nodule removed replace Not-ROI patches
    cf = tmp_path / "cf.npz"
    assert (
        main(
            [
                "add-counterfactuals",
                "--patches",
                str(out),
                "--data",
                str(nodule_layout),
                "--out",
                str(cf),
                "--fraction",
                "0.3",
            ]
        )
        == 0
    )
    with np.load(cf) as z:
        y2, split2, origin2, x2 = z["y"], z["split"], z["origin"], z["x"]
    assert np.array_equal(y2, y) and np.array_equal(split2, split)  # counts and splits unchanged
    new = origin2 == ORIGINS.index("counterfactual")
    assert new.any() and (y2[new] == 0).all() and set(split2[new].tolist()) <= {0, 1}
    assert new[tr].sum() <= int(0.3 * 300)
    assert not np.array_equal(x2[new], x[new])
    info = json.loads(cf.with_suffix(".json").read_text())
    assert info["counterfactual_negatives"]["count"]["train"] == new[tr].sum()


@pytest.mark.realdata
def test_patches_min_train_diameter_drops_only_small_training_nodules(nodule_layout, tmp_path):
    """``--min-train-diameter-mm``: no ROI patch of a smaller crop nodule in the training split;
    the held-back splits keep every nodule, so the evaluation population is unchanged."""
    nods = {f"{p.name}/{n['key']}": n for p in L.list_patients(nodule_layout) for n in L.read_nodules(p)}
    diam = {k: n["diameter_mm"] for k, n in nods.items()}
    # keep the largest benign and the largest malignant training nodule, drop the rest
    train = {k: n for k, n in nods.items() if not k.startswith("LIDC-IDRI-0005/")}
    limit = min(max(n["diameter_mm"] for n in train.values() if n["label"] == lab) for lab in ("benign", "malignant"))
    runs = {}
    for name, extra in (("all", []), ("big", ["--min-train-diameter-mm", str(limit)])):
        out = tmp_path / f"{name}.npz"
        assert (
            main(
                [
                    "patches",
                    "--data",
                    str(nodule_layout),
                    "--out",
                    str(out),
                    "--per-class",
                    "0",
                    "--test-fraction",
                    "0",
                    "--val-fraction",
                    "0",
                    "--test-patient",
                    "LIDC-IDRI-0005",
                    "--crop-neg-per-slice",
                    "2",
                ]
                + extra
            )
            == 0
        )
        with np.load(out) as z:
            runs[name] = {k: z[k] for k in ("y", "split", "nodule", "origin")}
    for name, r in runs.items():
        roi = (r["y"] > 0) & (r["origin"] == ORIGINS.index("crop"))
        train_nodules = set(r["nodule"][roi & (r["split"] == 0)].tolist())
        held = sorted(r["nodule"][roi & (r["split"] > 0)].tolist())
        runs[name]["train_nodules"], runs[name]["held"] = train_nodules, held
    small = {k for k in runs["all"]["train_nodules"] if diam[k] < limit}
    assert small and runs["big"]["train_nodules"] == runs["all"]["train_nodules"] - small
    assert runs["big"]["held"] == runs["all"]["held"] and runs["big"]["held"]


def test_texture_augmentation_varies_tissue_and_keeps_air():
    """The training pipeline's scanner variation: tissue intensities change within the stated
    bounds, air clipped at -1000 HU stays 0, values stay in [0, 1]; off, patches pass unchanged
    (up to the horizontal flip)."""
    from training.train import TEXTURE_GAIN, TEXTURE_NOISE_MAX, TEXTURE_OFFSET, make_dataset

    x = np.zeros((64, 50, 50), np.float16)
    x[:, 10:40, 10:40] = 0.5  # a tissue square, symmetric under the flip
    y = np.zeros(64, np.int8)
    plain = next(iter(make_dataset(x, y, 64, 0, True, texture=False)))[0].numpy()[..., 0]
    assert np.array_equal(plain, x.astype(np.float32))
    varied = next(iter(make_dataset(x, y, 64, 0, True, texture=True)))[0].numpy()[..., 0]
    assert (varied[:, :10, :] == 0).all()  # air untouched
    tissue = varied[:, 10:40, 10:40]
    assert 0.0 <= varied.min() and varied.max() <= 1.0
    means = tissue.mean(axis=(1, 2))
    bound = 0.5 * TEXTURE_GAIN + TEXTURE_OFFSET + 0.01
    assert np.abs(means - 0.5).max() <= bound and means.std() > 0.002  # per-patch gain / offset
    assert 0.0 < tissue.std(axis=(1, 2)).max() <= TEXTURE_NOISE_MAX * 1.2  # per-patch noise level


def test_crop_slice_negatives_come_only_from_nodule_free_slices():
    """A crop whose nodule spans the middle slices: ROI windows come from those slices, the
    extra Not-ROI windows only from the slices above and below, padded like the ROI crops."""
    rng = np.random.default_rng(0)
    hu = np.full((5, 40, 40), -850.0, np.float32)
    hu[[0, 4]] = -700.0  # marks the nodule-free slices
    mask = np.zeros(hu.shape, np.uint8)
    mask[1:4, 14:26, 14:26] = 1
    hu[1:4][mask[1:4] > 0] = 30.0
    nod = {"image": hu, "mask": mask, "pixel_spacing_mm": (0.7, 0.7), "file": "synthetic"}
    rois, surround, empty = crop_patches(nod, rng, cap=30, per_slice=6, empty_per_slice=5)
    assert len(rois) > 0 and len(surround) == 0  # a 40 px crop has no window without nodule
    assert empty.shape == (10, 50, 50)
    lung_700 = (-700 + 1000) / 1400
    assert np.allclose(empty, lung_700, atol=1e-4)  # only slice 0 and 4 pixels, mirror-padded
    assert (rois.max(axis=(1, 2)) > 0.7).all()  # every ROI window holds nodule (30 HU) pixels
    _, _, none = crop_patches(nod, rng, cap=30, per_slice=6, empty_per_slice=0)
    assert len(none) == 0


def test_patches_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="No patient folders"):
        from training.patchset import PatchConfig, build_patch_set

        build_patch_set([empty], tmp_path / "x.npz", PatchConfig())
    assert not (tmp_path / "x.npz").exists()


# ------------------------------------------------------------------ phantom: patches, train, evaluate, export
@pytest.fixture(scope="module")
def phantom_layout(tmp_path_factory) -> Path:
    from training.phantom import import_phantom

    root = tmp_path_factory.mktemp("phantom")
    for i, seed in enumerate((11, 12, 13, 14)):
        import_phantom(root / "layout", root / "dicom", f"PHANTOM-{i}", seed, n_slices=10, size=160)
    return root / "layout"


def test_phantom_wrong_mask_size_and_empty_class(phantom_layout, tmp_path):
    from training.patchset import PatchConfig, build_patch_set

    bad = tmp_path / "bad"
    shutil.copytree(phantom_layout / "PHANTOM-0", bad / "PHANTOM-0")
    masks = dict(np.load(bad / "PHANTOM-0" / "masks_0.npz"))
    k = next(iter(masks))
    masks[k] = masks[k][:100]
    np.savez_compressed(bad / "PHANTOM-0" / "masks_0.npz", **masks)
    with pytest.raises(DataError, match="wrong size"):
        build_patch_set([bad], tmp_path / "p.npz", PatchConfig(per_class=50))
    # a layout without any malignant nodule: an empty class
    shutil.copytree(phantom_layout / "PHANTOM-1", tmp_path / "one" / "PHANTOM-1")
    m = dict(np.load(tmp_path / "one" / "PHANTOM-1" / "masks_0.npz"))
    m = {u: np.where(a == L.MALIGNANT_CODE, 0, a).astype(np.uint8) for u, a in m.items()}
    np.savez_compressed(tmp_path / "one" / "PHANTOM-1" / "masks_0.npz", **m)
    with pytest.raises(DataError, match="empty class"):
        build_patch_set(
            [tmp_path / "one"], tmp_path / "p2.npz", PatchConfig(per_class=50, forced={"PHANTOM-1": "train"})
        )
    assert not (tmp_path / "p.npz").exists() and not (tmp_path / "p2.npz").exists()


@pytest.mark.slow
def test_phantom_train_learns_evaluate_export(phantom_layout, tmp_path):
    from lungct_viewer.core.model import load_model

    patches = tmp_path / "phantom.npz"
    assert (
        main(
            [
                "patches",
                "--data",
                str(phantom_layout),
                "--out",
                str(patches),
                "--per-class",
                "300",
                "--neg-per-slice",
                "30",
                "--roi-per-slice",
                "10",
                "--mimic-fraction",
                "0",
                "--train-patient",
                "PHANTOM-0",
                "--train-patient",
                "PHANTOM-1",
                "--train-patient",
                "PHANTOM-2",
                "--val-patient",
                "PHANTOM-3",
            ]
        )
        == 0
    )
    run = tmp_path / "run"
    common = [
        "train",
        "--patches",
        str(patches),
        "--run-dir",
        str(run),
        "--batch-size",
        "50",
        "--learning-rate",
        "1e-3",
        "--patience",
        "5",
        "--seed",
        "3",
    ]
    assert main(common + ["--epochs", "2"]) == 0
    assert main(common + ["--epochs", "4", "--resume"]) == 0  # resumable: continues at epoch 3
    summary = json.loads((run / "train_summary.json").read_text())
    print("phantom validation accuracy", summary["val_accuracy"], summary["val_per_class_recall"])
    assert summary["val_accuracy"] > 0.6  # chance is 1/3
    for f in ("history.csv", "checkpoints/best.keras", "checkpoints/last.keras", "model.keras"):
        assert (run / f).exists(), f
    assert summary["epochs_run"] == 4 and summary["epochs_this_session"] == 2
    assert len((run / "history.csv").read_text().splitlines()) == 5
    # fine-tuning starts from the given model's weights (a vanishing learning rate keeps them)
    ft = tmp_path / "ft"
    assert (
        main(
            [
                "train",
                "--patches",
                str(patches),
                "--run-dir",
                str(ft),
                "--batch-size",
                "50",
                "--epochs",
                "1",
                "--learning-rate",
                "1e-12",
                "--init-model",
                str(run / "model.keras"),
            ]
        )
        == 0
    )
    w0 = load_model(run / "model.keras").keras_model.get_weights()
    w1 = load_model(ft / "model.keras").keras_model.get_weights()
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(w0, w1, strict=True))
    mined = tmp_path / "mined.npz"
    assert (
        main(
            [
                "mine-negatives",
                "--model",
                str(run / "model.keras"),
                "--patches",
                str(patches),
                "--data",
                str(phantom_layout),
                "--out",
                str(mined),
                "--per-slice",
                "5",
            ]
        )
        == 0
    )
    with np.load(mined) as z, np.load(patches) as z0:
        tr = z["split"] == 0
        before = np.bincount(z0["y"][z0["split"] == 0], minlength=3)
        assert np.bincount(z["y"][tr], minlength=3).tolist() == before.tolist()
        assert set(np.unique(z["patient"][z["origin"] == 4])) <= {0, 1, 2}  # training patients only
        assert (z["x"][z["split"] != 0] == z0["x"][z0["split"] != 0]).all()  # held-back data untouched
    ev = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(run / "model.keras"),
                "--patches",
                str(patches),
                "--split",
                "val",
                "--out",
                str(ev),
                "--tta",
            ]
        )
        == 0
    )
    m = json.loads((ev / "metrics.json").read_text())
    assert {"nodule_level", "patient_level", "patch_level"} <= set(m)
    assert m["test_time_augmentation"]
    ci = m["nodule_level"]["auc_95ci"]
    assert ci is None or ci[0] <= m["nodule_level"]["auc"] <= ci[1]
    assert (ev / "patient_threshold_curve.png").stat().st_size > 1000
    assert len((ev / "patient_threshold_curve.csv").read_text().splitlines()) == 52
    out = tmp_path / "model"
    assert (
        main(
            [
                "export",
                "--model",
                str(run / "model.keras"),
                "--run-dir",
                str(run),
                "--evaluation",
                str(ev / "metrics.json"),
                "--patches",
                str(patches),
                "--out",
                str(out),
                "--version",
                "test",
            ]
        )
        == 0
    )
    loaded = load_model(out / "lungct_cnn.keras")
    assert loaded.card.version == "test"
    assert loaded.card.operating_point["voting_threshold"] == m["threshold"]
    assert any("10.7937/K9/TCIA.2015.LO9QL9SX" in s for s in loaded.card.licences)
    assert "python -m training" in loaded.card.reproduce
