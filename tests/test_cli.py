"""The headless ``analyze`` command: real output on a phantom, clear errors on bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lungct_viewer.cli import main
from lungct_viewer.core.export import slice_png_name
from lungct_viewer.core.labels import Label

REQUIRED = {"diagnosis", "series", "findings", "timing", "model"}


def _run(args):
    return subprocess.run([sys.executable, "-m", "lungct_viewer", *args], capture_output=True, text=True, timeout=600)


def _strings(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)
    elif isinstance(x, str):
        yield x


@pytest.mark.slow
def test_analyze_phantom_writes_report_and_pngs(phantom_model, phantom_study, tmp_path, capsys):
    model_path, acc = phantom_model
    assert acc > 0.8, f"the phantom model did not learn (held-out accuracy {acc:.2f})"
    folder, ph = phantom_study
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--model", str(model_path), "--threshold", "0.4"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert REQUIRED <= report.keys()
    labels = {lab.value for lab in Label}
    assert report["diagnosis"]["threshold"] == 0.4
    assert report["diagnosis"]["label"] in labels - {Label.NOT_ROI.value}
    assert report["series"]["slices"] == ph.volume.num_slices
    assert report["series"]["pixel_spacing_mm"] == [0.7, 0.7]
    assert report["model"]["version"] == "phantom-test"
    assert report["timing"]["slices"] == ph.volume.num_slices
    assert report["timing"]["lung_region_s"] >= 0  # computed beside the network
    # no identifier and no path unless asked
    assert "patient_name" not in report["series"] and "patient_id" not in report["series"]
    assert "source" not in report["series"] and "path" not in report["model"]
    assert not [s for s in _strings(report) if os.path.isabs(s)], "an absolute path in report.json"
    text = (out / "report.json").read_text()
    assert ph.volume.patient_id not in text and "PHANTOM^" not in text
    # findings are the passing lesions' cross-sections, slice by slice
    f0, lesions = report["findings"], report["lesions"]
    assert f0, "no findings on a phantom with two nodules"
    assert {f["lesion_id"] for f in f0} == {les["id"] for les in lesions}
    assert report["candidates"] == []  # no second reading beside this model: every candidate passes
    for f in f0:
        assert {
            "lesion_id",
            "slice_number",
            "slice_index",
            "sop_instance_uid",
            "bbox_px",
            "centroid_mm",
            "area_mm2",
            "diameter_mm",
            "label",
            "probability",
            "suspicion",
        } <= f.keys()
        assert f["slice_number"] == f["slice_index"] + 1 and 0 <= f["slice_index"] < ph.volume.num_slices
        assert f["sop_instance_uid"] == ph.volume.sop_instance_uids[f["slice_index"]]
        assert f["label"] in {Label.BENIGN.value, Label.MALIGNANT.value}
        les = next(les for les in lesions if les["id"] == f["lesion_id"])
        assert les["slice_numbers"][0] <= f["slice_number"] <= les["slice_numbers"][1]
        assert f["label"] == les["label"] and f["probability"] == les["probability"]
    for les in lesions:
        assert les["label"] in {Label.BENIGN.value, Label.MALIGNANT.value} and les["passes_second_reading"]
        own = les["p_malignant"] if les["label"] == Label.MALIGNANT.value else les["p_benign"]
        assert les["probability"] == pytest.approx(own, abs=1e-4)  # the probability of its own call
        # the phantom's nodules are solid soft tissue on 2.5 mm slices: texture judged from 6 mm
        assert les["texture"] == ("solid" if les["diameter_mm"] >= 6 else "not_assessed"), les
        call_min = report["detection"]["call_min_diameter_mm"]
        assert les["in_patient_call"] == (les["diameter_mm"] >= call_min)
        assert "solid_core_mm" not in les["features"]  # what the second reading scores only
    assert report["diagnosis"]["lesions_in_call"] == sum(les["in_patient_call"] for les in lesions)
    assert report["diagnosis"]["ground_glass_lesions_not_in_call"] == 0
    # every nodule's central slice has a finding whose box contains the nodule centre
    for nod in ph.nodules:
        k, r, c = int(round(nod.center[0])), nod.center[1], nod.center[2]
        hits = [
            f
            for f in f0
            if f["slice_index"] == k
            and f["bbox_px"][0] <= c < f["bbox_px"][2]
            and f["bbox_px"][1] <= r < f["bbox_px"][3]
        ]
        assert hits, f"nodule {nod} not found"
    # one PNG per slice with findings, named by the slice number + UID; red where the ROI is
    pngs = sorted(p.name for p in out.glob("*.png"))
    want = sorted({slice_png_name(f["slice_index"], f["sop_instance_uid"]) for f in f0})
    assert pngs == want
    assert all(
        slice_png_name(f["slice_index"], f["sop_instance_uid"]).startswith(f"slice_{f['slice_number']:04d}_")
        for f in f0
    )  # the file names count slices from 1, as the screen and slice_number
    mal = max(ph.nodules, key=lambda n: n.radius_px)
    k = int(round(mal.center[0]))
    with Image.open(out / slice_png_name(k, ph.volume.sop_instance_uids[k])) as im:
        px = np.asarray(im.convert("RGB")).astype(int)
    from lungct_viewer.core.render import HEADER_PX

    r, c = int(mal.center[1]) + HEADER_PX, int(mal.center[2])
    patch = px[r - 2 : r + 3, c - 2 : c + 3]
    assert (patch[..., 0] > patch[..., 1] + 30).all(), "the nodule centre is not red in the export"
    assert "Research use only" in capsys.readouterr().out
    # a skipped file is named in the warnings, without its folder; paths and identifiers only when asked
    study = tmp_path / "DOE_JANE"
    shutil.copytree(folder, study)
    (study / "notes.txt").write_text("not DICOM")
    out2, out3 = tmp_path / "skipped", tmp_path / "with-ids"
    assert main(["analyze", str(study), "--out", str(out2), "--model", str(model_path), "-q"]) == 0
    rep2 = json.loads((out2 / "report.json").read_text())
    assert any("notes.txt" in w for w in rep2["warnings"]) and "DOE_JANE" not in json.dumps(rep2)
    assert (
        main(["analyze", str(study), "--out", str(out3), "--model", str(model_path), "-q", "--include-identifiers"])
        == 0
    )
    rep3 = json.loads((out3 / "report.json").read_text())
    assert rep3["series"]["patient_id"].startswith("PHANTOM") and "patient_name" in rep3["series"]
    assert os.path.isabs(rep3["series"]["source"]) and os.path.isabs(rep3["model"]["path"])
    assert any(os.path.isabs(w.split(": ")[0]) for w in rep3["warnings"])


def test_missing_folder_is_one_clear_line_and_no_output(tmp_path, phantom_model):
    out = tmp_path / "out"
    r = _run(["analyze", str(tmp_path / "nope"), "--out", str(out), "--model", str(phantom_model[0])])
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "nope" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_junk_folder_and_bad_models(tmp_path, phantom_study, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("not a scan")
    (junk / "b.dcm").write_bytes(b"\x00" * 300)
    out = tmp_path / "out"
    bad_model = tmp_path / "bad.keras"
    bad_model.write_bytes(b"this is not a model")
    study = str(phantom_study[0])
    for args, needle in (
        # the junk folder fails on the study, before the (damaged) model is touched
        (["analyze", str(junk), "--out", str(out), "--model", str(bad_model)], "No CT images were found"),
        (["analyze", study, "--out", str(out), "--model", str(tmp_path / "none.keras")], "No model file"),
        (["analyze", study, "--out", str(out), "--model", str(bad_model)], "is damaged"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err, (needle, err)
    assert not out.exists() or not any(out.iterdir())


def test_junk_study_message(tmp_path, phantom_model, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    assert main(["analyze", str(junk), "--out", str(tmp_path / "o"), "--model", str(phantom_model[0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No CT images" in err


def test_wrong_shape_model_is_rejected(tmp_path, phantom_study):
    import keras

    from lungct_viewer.core.errors import ModelLoadError
    from lungct_viewer.core.model import load_model

    inp = keras.Input((32, 32, 1))
    m = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp)))
    path = tmp_path / "wrong.keras"
    m.save(path)
    with pytest.raises(ModelLoadError, match="wrong shape"):
        load_model(path)


def test_output_inside_source_and_existing_files_refused(tmp_path, phantom_model, phantom_study):
    src = tmp_path / "src"
    shutil.copytree(phantom_study[0], src)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in src.iterdir())
    assert main(["analyze", str(src), "--out", str(src / "out"), "--model", str(phantom_model[0])]) == 2
    assert sorted((p.name, p.stat().st_mtime_ns) for p in src.iterdir()) == before
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    assert main(["analyze", str(src), "--out", str(out), "--model", str(phantom_model[0]), "-q"]) == 2
    assert (out / "report.json").read_text() == "{}"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_threshold_out_of_range_is_rejected(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(tmp_path), "--out", str(tmp_path / "o"), "--threshold", "1.5"])
    assert exc.value.code == 2


@pytest.mark.realdata
@pytest.mark.slow
def test_analyze_runs_on_real_two_series_study(lung_dx_a0001, phantom_model, tmp_path):
    out = tmp_path / "out"
    r = _run(["analyze", str(lung_dx_a0001), "--out", str(out), "--model", str(phantom_model[0]), "-q"])
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["series"]["slices"] == 64
    assert report["series"]["pixel_spacing_mm"] == [0.841796875, 0.841796875]
    assert report["timing"]["slices"] == 64
