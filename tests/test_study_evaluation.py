"""Whole-study evaluation: FROC, localised hits, the second reading's fit, pasted nodules,
ground truth from the real readings, and the evaluate-studies command end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from training.metrics import froc
from training.second_reading import finding_hits, fit_regression, operating_threshold, paste_nodule


def test_froc_counts_nodules_once_and_reads_sensitivity_at_rates():
    scans = [
        {"n_nodules": 2, "lesions": [(0.9, (1,)), (0.8, ()), (0.7, (1,)), (0.4, (2,))]},
        {"n_nodules": 0, "lesions": [(0.95, ()), (0.3, ())]},
    ]
    r = froc(scans)
    assert r["nodules"] == 2 and r["scans"] == 2
    # thresholds 0.95: 1 FP (0.5/scan), sens 0; 0.9: sens 0.5; 0.8: 2 FP (1/scan); 0.7: nodule 1
    # again (counted once); 0.4: nodule 2 -> sens 1 at 2 FP (1/scan); 0.3: 3 FP (1.5/scan)
    at = r["sensitivity_at"]
    assert at["0.125"] == 0.0 and at["0.5"] == 0.5 and at["1.0"] == 1.0 and at["8.0"] == 1.0
    assert r["cpm"] == pytest.approx(np.mean([0, 0, 0.5, 1, 1, 1, 1]))
    assert froc([{"n_nodules": 0, "lesions": [(0.5, ())]}])["cpm"] is None


def test_a_hit_must_be_centred_on_the_nodule():
    boxes = {10: (100, 100, 119, 119)}  # a 20 px box on slice 10
    sp = (0.7, 0.7)  # 5 mm ~ 7.1 px
    assert finding_hits(boxes, 10, (95, 95, 125, 125), sp)  # centred on it
    assert finding_hits(boxes, 10, (120, 100, 132, 112), sp)  # centre 6 px beside it: within 5 mm
    assert not finding_hits(boxes, 10, (60, 60, 240, 240), sp)  # covers it, centred elsewhere
    assert not finding_hits(boxes, 11, (95, 95, 125, 125), sp)  # another slice


def test_regression_and_operating_point():
    rng = np.random.default_rng(0)
    from lungct_viewer.core.candidates import FEATURE_NAMES

    k = len(FEATURE_NAMES)
    pos = rng.normal(0, 1, (200, k)) + 1.0
    neg = rng.normal(0, 1, (400, k))
    pos = np.abs(pos) + 0.5  # log features need positive values
    neg = np.abs(neg) + 0.5
    j = FEATURE_NAMES.index("fill")
    pos[:, j] += 2.0  # fill separates the classes
    mean, scale, coef, intercept = fit_regression(pos, neg)
    assert coef[j] == max(coef)
    scores = np.linspace(0, 1, 11)[::-1]  # 1.0, 0.9, ..., 0.0 on 5 scans
    t = operating_threshold(scores, n_scans=5, target_fp=1.0)
    assert (scores >= t).sum() == 5
    assert operating_threshold(scores[:3], n_scans=5) == 0.0


def test_operating_points_come_from_scans_the_reading_was_not_fitted_on():
    """Three studies (one with a thick-slice series): each study's false positives are scored
    by a reading fitted without it; each band gets its own operating point; with one study
    there is no other, and the calibration says it is in-sample."""
    from types import SimpleNamespace

    from lungct_viewer.core.candidates import FEATURE_NAMES
    from training.evaluate_studies import cross_fitted_calibration
    from training.second_reading import Example

    rng = np.random.default_rng(3)
    k = len(FEATURE_NAMES)
    j = FEATURE_NAMES.index("fill")

    def examples(study, key, n, positive):
        x = np.abs(rng.normal(0, 1, (n, k))) + 0.5
        x[:, j] += 2.0 if positive else 0.0
        return [Example(study, key, row, positive, (1,) if positive else ()) for row in x]

    series, real, pasted = [], {}, {}
    for name, spacings in (("a", (2.5,)), ("b", (2.0, 5.0)), ("c", (1.25,))):
        for m, sp in enumerate(spacings):
            key = f"{name}/{m}"
            series.append(
                SimpleNamespace(spec=SimpleNamespace(name=name), key=key, volume=SimpleNamespace(slice_spacing_mm=sp))
            )
            real.setdefault(name, []).extend(examples(name, key, 40, False))
        pasted[name] = examples(name, f"{name}/0", 30, True)
    cal = cross_fitted_calibration(["a", "b", "c"], series, real, pasted)
    assert cal.cross_fitted and cal.scans == {"thin": 3, "thick": 1}
    assert len(cal.negatives["thin"]) == 120 and len(cal.negatives["thick"]) == 40
    assert np.all(np.diff(cal.negatives["thin"]) <= 0)
    t_thin, t_thick = cal.threshold("thin", 1.0), cal.threshold("thick", 1.0)
    assert (cal.negatives["thin"] >= t_thin).sum() == 3 and (cal.negatives["thick"] >= t_thick).sum() == 1
    assert cal.fp_rate(t_thin, "thin") == pytest.approx(1.0) and cal.fp_rate(1.1, "thin") == 0.0
    from training.evaluate_studies import _fit

    reading = cal.apply(_fit({"a", "b", "c"}, real, pasted, "all"), 1.0)
    assert reading.threshold == t_thin and reading.thick_threshold == t_thick
    assert reading.threshold_for(5.0) == t_thick and reading.threshold_for(2.0) == t_thin
    # a band without scans: thin-slice studies only give one operating point for all
    only_thin = cross_fitted_calibration(["a", "c"], series, real, pasted)
    assert only_thin.scans["thick"] == 0 and only_thin.threshold("thick") is None
    assert only_thin.apply(_fit({"a", "c"}, real, pasted, "x")).thick_threshold is None
    assert only_thin.fp_rate(0.5, "thick") == only_thin.fp_rate(0.5, "thin")
    single = cross_fitted_calibration(["b"], series, real, pasted)
    assert not single.cross_fitted and single.scans == {"thin": 1, "thick": 1}


def test_a_pasted_nodule_displaces_lung_or_sits_on_the_pleura():
    """In the lung a pasted nodule lies (almost) wholly in the lung region; against the pleura
    it sits on a broad base or touches it, never mostly inside the chest wall."""
    from test_candidates import SPACING, _chest

    from lungct_viewer.core.lung import lung_region
    from training.second_reading import PASTE_INSIDE_MIN, PLEURAL_INSIDE_MIN, SUBPLEURAL_MM, paste_sites

    hu = _chest()
    lung = lung_region(hu, SPACING)
    sites = paste_sites(hu, lung, SPACING)
    assert len(sites) and sites.costal.any() and not sites.costal.all()
    radius = 6.0  # mm
    zz, yy, xx = np.mgrid[0:10, 0:40, 0:40]
    ball = ((zz - 4.5) * 1.25) ** 2 + ((yy - 19.5) * 0.35) ** 2 + ((xx - 19.5) * 0.35) ** 2 <= radius**2
    crop = np.where(ball, 30.0, -850.0)
    for against_pleura, inside_min in ((False, PASTE_INSIDE_MIN), (True, PLEURAL_INSIDE_MIN)):
        centres = sites.for_nodule(radius, against_pleura)
        chosen = {tuple(v) for v in centres.tolist()}
        depth = sites.depth_mm[[tuple(v) in chosen for v in sites.voxels.tolist()]]
        if against_pleura:
            assert depth.min() >= 0.5 * radius and depth.max() <= radius + SUBPLEURAL_MM
        else:
            assert depth.min() >= radius
        for seed in range(5):
            host = hu.copy()
            out = paste_nodule(
                host, lung, SPACING, crop, ball, (1.25, 0.35, 0.35), np.random.default_rng(seed), centres, inside_min
            )
            assert out is not None
            box, _original, _centre, nodule = out
            assert lung.crop(box)[nodule].mean() >= inside_min
    far = sites.away_from(sites.voxels[0], SPACING, 20.0)
    assert 0 < len(far) < len(sites)
    assert (((far.voxels - sites.voxels[0]) * np.asarray(SPACING)) ** 2).sum(axis=1).min() > 20.0**2


def test_pasting_a_nodule_is_undone_exactly():
    from test_candidates import SPACING, _chest

    from lungct_viewer.core.lung import lung_region

    hu = _chest()
    before = hu.copy()
    lung = lung_region(hu, SPACING)
    crop = np.full((6, 20, 20), -800, np.float32)
    mask = np.zeros((6, 20, 20), bool)
    mask[1:5, 5:15, 5:15] = True
    crop[mask] = 40
    sites = np.argwhere(lung.crop((slice(0, 24), slice(0, 256), slice(0, 256))) & (hu < -700))
    out = paste_nodule(hu, lung, SPACING, crop, mask, (1.25, 0.7, 0.7), np.random.default_rng(1), sites)
    assert out is not None
    box, original, centre, nodule = out
    assert nodule.shape == original.shape and nodule.any()
    assert (hu[box] > before[box]).any() and hu[box].max() >= 30
    hu[box] = original
    assert np.array_equal(hu, before)


@pytest.mark.realdata
def test_field_roi_share_counts_only_analysed_windows_at_the_sensitivity():
    """The red overlay's share of the lung field: windows outside the field never count."""
    from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
    from training.evaluate_studies import field_roi_share

    def slice_(index, p_roi, in_field):
        p = np.asarray(p_roi, dtype=np.float32)
        probs = np.stack([1 - p, p / 2, p / 2], axis=-1)
        return SliceAnalysis(index, probs, np.asarray(in_field), (100, 100), (1.0, 1.0))

    a = slice_(0, [[0.9, 0.6, 0.2]], [[True, True, True]])  # 2 of 3 called ROI at 0.5
    b = slice_(1, [[0.95, 0.1, 0.99]], [[True, True, False]])  # 1 of 2 analysed; the third is outside
    study = StudyAnalysis("1.2.3", 2, {0: a, 1: b})
    assert field_roi_share(study, 0.5) == pytest.approx(3 / 5)
    assert field_roi_share(study, 0.92) == pytest.approx(1 / 5)
    assert field_roi_share(StudyAnalysis("1.2.3", 0, {}), 0.5) == 0.0


def test_ground_truth_from_the_real_readings(lidc_0001, lung_dx_a0001):
    from lungct_viewer.core.dicom import load_series, scan_folder, select_series
    from training.ground_truth import lidc_truth, voc_truth

    vol = load_series(select_series(scan_folder(lidc_0001)))
    t = lidc_truth(lidc_0001, vol)
    assert len(t.nodules) == 1 and t.nodules[0].label == "malignant" and t.nodules[0].readers == 4
    assert t.nodules[0].slices[0] >= 35 and t.nodules[0].slices[1] <= 48
    assert 20 <= t.nodules[0].diameter_mm(vol) <= 40
    scan = scan_folder(lung_dx_a0001)
    ann = lung_dx_a0001.parent / "Annotation" / "A0001"
    for info in scan.series:  # boxes drawn on either series are carried to both
        v = load_series(info)
        nods = voc_truth(ann, v, lung_dx_a0001).nodules
        assert len(nods) == 1 and len(nods[0].boxes) >= 10  # 20 boxes on 11 table positions


def _write_crop(folder, name, hu, mask, spacing):
    import nibabel as nib

    aff = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    for sub, arr in (("image", hu.astype(np.float32)), ("nodule_mask", mask.astype(np.uint8))):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0), aff), str(folder / sub / f"{name}.nii.gz"))


def _phantom_studies_and_crops(tmp_path, n_crops: int = 6):
    """Two phantom whole 'studies' (no annotation) and ``n_crops`` spherical nodule crops of
    patients LIDC-IDRI-9000... (3.0-5.0 mm radius): a data folder in the shared layout."""
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    data = tmp_path / "data"
    for k, seed in enumerate((31, 32)):
        ph = phantom_volume(seed=seed, n_slices=12, size=192)
        write_phantom_dicom(ph, data / "covid-ct-md" / f"case{k}")
    crops = data / "lidc-nodules"
    rows = []
    for i in range(n_crops):
        hu = np.full((6, 30, 30), -850.0)
        zz, yy, xx = np.mgrid[0:6, 0:30, 0:30]
        r = 2.5 + 2.5 * i / max(n_crops - 1, 1)
        mask = ((zz - 2.5) * 1.25) ** 2 + ((yy - 15) * 0.7) ** 2 + ((xx - 15) * 0.7) ** 2 <= r**2
        hu[mask] = 20.0
        _write_crop(crops, f"LIDC-IDRI-9{i:03d}_R_1", hu, mask, (1.25, 0.7, 0.7))
        rows.append(
            {
                "patient_id": f"LIDC-IDRI-9{i:03d}",
                "nodule_id": "1",
                "Calcification_value": "6",
                "diameter_mm": f"{2 * r:.1f}",
                "Diagnosis": "Malign" if i % 2 else "Benign",
                "Texture_value": "5",  # solid (the readers' 1-5 scale)
            }
        )
    with open(crops / "nodules.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return data, crops


@pytest.mark.slow
def test_evaluate_studies_end_to_end_on_phantoms(tmp_path, phantom_model):
    """Two phantom 'studies' without annotations and a few phantom nodule crops: every study
    is scored by a second reading fitted without it, and the fitted reading is written."""
    from lungct_viewer.core.second_reading import load_second_reading
    from training.evaluate_studies import evaluate_studies

    data, crops = _phantom_studies_and_crops(tmp_path)
    model_path, _acc = phantom_model
    out = tmp_path / "eval"
    fit_out = tmp_path / "model" / "second_reading.json"
    summary = evaluate_studies(
        model_path, data, out, crops, cache_dir=None, fit_out=fit_out, pastes=6, log=lambda s: None
    )
    loso = summary["leave_one_study_out"]
    assert [r["second_reading"] for r in loso["series"]] == ["left out", "left out"]
    assert set(loso["fold_thresholds"]) == {"case0", "case1"}
    assert all(r["tumours"] == 0 for r in loso["series"])
    assert all(0.0 <= r["field_windows_roi"] <= 1.0 for r in loso["series"])
    assert loso["cpm"] is None  # no annotated nodule in these studies
    assert (out / "metrics.json").is_file() and (out / "examples.csv").is_file()
    # one report per held-out series, its reconstructions' too (2 studies x (1 + 2 slabs))
    assert len(list((out / "reports").glob("*/report.json"))) == 6
    assert len(list((out / "reports").glob("*_slab2/report.json"))) == 2
    examples = list(csv.DictReader(open(out / "examples.csv")))
    assert any(r["pasted"] for r in examples)
    reading = load_second_reading(fit_out.with_name("lungct_cnn.keras"))
    assert reading is not None and reading.evaluation["tumours"] == 0
    assert json.loads((out / "metrics.json").read_text())["scans"] == 2
    # two studies: a fold has one training study, so its operating point is in-sample, and says so
    assert loso["calibration"].startswith("in-sample")
    # the 2.5 mm phantoms are also read as 5 and 7.5 mm slabs, reported apart from the headline
    slabs = summary["thick_slab_reconstructions"]["series"]
    assert sorted(r["series"].rsplit("/", 1)[1] for r in slabs) == ["slab2", "slab2", "slab3", "slab3"]
    assert all(r["slice_spacing_mm"] > 3.5 for r in slabs)
    assert summary["fitted_on_all_studies"]["thick_threshold"] is not None
    assert reading.thick_threshold == summary["fitted_on_all_studies"]["thick_threshold"]


def test_a_pasted_nodule_reads_like_one_drawn_in_place():
    """Context swap: a crop pasted into a lung gives the object features of the same nodule
    drawn there directly (no halo, no crop border, no change of scale)."""
    from test_candidates import SPACING, _chest

    from lungct_viewer.core.candidates import Seed, find_core, segment_object
    from lungct_viewer.core.lung import lung_region

    # drawn as a scanner images it: each voxel holds the share of it the ball fills
    drawn = _chest()
    sub = 5  # subsamples per voxel along each axis
    box = (slice(9, 16), slice(116, 141), slice(58, 83))
    zz, yy, xx = np.meshgrid(*[np.arange(s.start, s.stop, 1.0 / sub) + 0.5 / sub - 0.5 for s in box], indexing="ij")
    inside = ((zz - 12) * SPACING[0]) ** 2 + ((yy - 128) * SPACING[1]) ** 2 + ((xx - 70) * SPACING[2]) ** 2 <= 16.0
    share = inside.reshape(7, sub, 25, sub, 25, sub).mean(axis=(1, 3, 5))
    drawn[box] = np.rint(drawn[box] * (1 - share) + 20 * share).astype(drawn.dtype)
    lung = lung_region(drawn, SPACING)
    core, r = find_core(Seed(12, 128.0, 70.0, 5.0), drawn, lung, SPACING)
    f_drawn = segment_object(core, r, drawn, lung, SPACING)[2]

    # the same nodule as a crop with voxels half as large (0.35 mm, 1.25 mm slices), pasted:
    # two crop voxels make one host voxel along each axis, the ball centred on a host voxel
    zz, yy, xx = np.mgrid[0:14, 0:50, 0:50]
    ball = ((zz - 6.5) * 1.25) ** 2 + ((yy - 24.5) * 0.35) ** 2 + ((xx - 24.5) * 0.35) ** 2 <= 4.0**2
    crop = np.where(ball, 20.0, -850.0)
    host = _chest()
    lung_h = lung_region(host, SPACING)
    site = np.array([[12, 128, 70]])
    pasted = paste_nodule(host, lung_h, SPACING, crop, ball, (1.25, 0.35, 0.35), np.random.default_rng(0), site)
    assert pasted is not None
    c = pasted[2]
    core, r = find_core(Seed(int(round(c[0] - 0.5)), c[1] - 0.5, c[2] - 0.5, 5.0), host, lung_h, SPACING)
    f_pasted = segment_object(core, r, host, lung_h, SPACING)[2]
    assert f_pasted["faces_touched"] == f_drawn["faces_touched"] == 0
    assert f_pasted["volume_mm3"] == pytest.approx(f_drawn["volume_mm3"], rel=0.3)
    assert f_pasted["radius_mm"] == pytest.approx(f_drawn["radius_mm"], abs=1.0)
    assert f_pasted["elongation"] == pytest.approx(f_drawn["elongation"], abs=0.3)
    assert f_pasted["mean_hu"] == pytest.approx(f_drawn["mean_hu"], abs=40)
    assert f_pasted["attachments"] == f_drawn["attachments"] == 0  # no rim of fragments


def test_held_out_crops_are_the_test_patients_only(tmp_path):
    """The nodules scored by evaluate-pasted are the split's test patients'; the second
    readings are fitted on the others; a whole study's own patient is in neither."""
    from training.evaluate_pasted import held_out_crops

    _data, crops = _phantom_studies_and_crops(tmp_path, n_crops=4)
    split = tmp_path / "split.json"
    split.write_text(
        json.dumps(
            {
                "split": {
                    "LIDC-IDRI-9000": "test",
                    "LIDC-IDRI-9001": "train",
                    "LIDC-IDRI-9002": "val",
                    "LIDC-IDRI-9003": "test",
                }
            }
        )
    )
    held, fitting = held_out_crops(crops, split, exclude_patients={"LIDC-IDRI-9003"})
    assert [c[0] for c in held] == ["LIDC-IDRI-9000_R_1"]
    assert sorted(c[0] for c in fitting) == ["LIDC-IDRI-9001_R_1", "LIDC-IDRI-9002_R_1"]


def test_a_pasted_nodules_box_per_slice():
    from training.evaluate_pasted import _slice_boxes

    mask = np.zeros((3, 10, 12), dtype=bool)
    mask[1, 2:5, 3:9] = True
    mask[2, 4, 6] = True
    box = (slice(20, 23), slice(100, 110), slice(200, 212))
    assert _slice_boxes(box, mask) == {21: (203, 102, 208, 104), 22: (206, 104, 206, 104)}


@pytest.mark.slow
def test_evaluate_pasted_end_to_end_on_phantoms(tmp_path, phantom_model):
    """Held-back crops pasted into two phantom studies, read by the whole pipeline (network
    included) under second readings fitted without the host and without those crops."""
    from training.evaluate_pasted import evaluate_pasted
    from training.metrics import FROC_RATES

    data, crops = _phantom_studies_and_crops(tmp_path)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"split": {f"LIDC-IDRI-9{i:03d}": "test" if i < 3 else "train" for i in range(6)}}))
    model_path, _acc = phantom_model
    out = tmp_path / "pasted"
    m = evaluate_pasted(model_path, data, out, crops, split, cache_dir=None, per_host=3, pastes=6, log=lambda s: None)
    rows = list(csv.DictReader(open(out / "pasted.csv")))
    assert 0 < m["nodules"] == len(rows) <= 2 * 3 and m["scans"] == 2
    assert {r["name"] for r in rows} <= {"LIDC-IDRI-9000_R_1", "LIDC-IDRI-9001_R_1", "LIDC-IDRI-9002_R_1"}
    assert {r["host"].split("/")[0] for r in rows} <= {"case0", "case1"}
    for r in rows:  # a finding is a hit on the spot at the operating point
        assert r["finding"] != "True" or (r["on_the_spot"] == "True" and r["suspicion"] != "")
    assert 0.0 <= m["finding"] <= m["on_the_spot"] <= 1.0
    assert sum(g["n"] for g in m["by_site"]) == m["nodules"] == sum(g["n"] for g in m["by_label"])
    assert set(m["froc_sensitivity_at"]) == {str(r) for r in FROC_RATES}
    assert json.loads((out / "metrics.json").read_text())["nodules"] == m["nodules"]
    # a looser operating point never finds fewer nodules nor raises fewer false positives
    ops = m["operating_points"]
    assert [o["fp_per_new_scan"] for o in ops] == sorted(o["fp_per_new_scan"] for o in ops)
    for a, b in zip(ops, ops[1:]):
        assert a["finding"] <= b["finding"] and a["host_false_positives_per_scan"] <= b["host_false_positives_per_scan"]
    assert (out / "host_false_positives.csv").is_file() or all(o["host_false_positives_per_scan"] == 0 for o in ops)
    assert all(r["radius_mm"] != "" for r in rows if r["suspicion"] != "")  # the hit's features are kept
    # every finding has a texture, and votes only when it is not ground glass
    for r in rows:
        assert r["in_call"] != "True" or (r["finding"] == "True" and r["texture"] != "ground_glass")
        assert r["finding"] != "True" or r["texture"] in {"solid", "ground_glass", "not_assessed"}
    tex = {g["texture"]: g for g in m["by_texture_6mm_or_more"]}
    assert set(tex) == {"solid", "part-solid", "ground glass"}
    assert tex["solid"]["n"] == sum(float(r["diameter_mm"]) >= 6 for r in rows) and tex["ground glass"]["n"] == 0


def test_the_model_card_records_the_whole_study_figures_and_the_reconstructions():
    from lungct_viewer.core.model import ModelCard
    from training.export import apply_evaluation

    studies = {
        "studies": ["a", "b"],
        "scans": 3,
        "leave_one_study_out": {
            "cpm": 0.39999999999999997,
            "tumours_found": 1,
            "tumours": 2,
            "indeterminate_found": 0,
            "indeterminate": 1,
            "false_positives_per_scan": 0.8333,
            "series": [{"study": "a", "series": "x", "false_positives": 1, "patient_call": "malignant"}],
        },
        "thick_slab_reconstructions": {"series": [{"study": "a"}], "scans": 2, "false_positives_per_scan": 1.5},
    }
    from training.export import READING_DEVIATIONS

    old_wording = "The patient-level majority vote pools the votes of every lesion."  # a former card's
    card = apply_evaluation(
        ModelCard(version="t", deviations_from_method=["A recipe change.", old_wording]), None, studies
    )
    # the reading's deviations are the code's current ones; a reworded one replaces its old text
    assert card.deviations_from_method == ["A recipe change.", *READING_DEVIATIONS]
    whole = card.metrics["whole_studies"]
    assert whole["thick_slab_reconstructions"] == {"scans": 2, "false_positives_per_scan": 1.5}
    assert whole["series"][0]["patient_call"] == "malignant"
    (note,) = [n for n in card.notes if n.startswith("Whole studies")]
    assert "CPM 0.40." in note and "0.8 false-positive lesions per scan" in note
    # a second refresh replaces the note instead of adding another
    apply_evaluation(card, None, {**studies, "thick_slab_reconstructions": {}})
    assert sum(n.startswith("Whole studies") for n in card.notes) == 1
    assert card.metrics["whole_studies"]["thick_slab_reconstructions"] is None


def test_two_second_readings_fitted_on_one_day_have_different_versions():
    from training.evaluate_studies import reading_build

    assert reading_build("2026-11-30T15:10:19+00:00") == "20261130.1510"
    assert reading_build("2026-11-30T09:05:59+00:00") != reading_build("2026-11-30T15:10:19+00:00")
