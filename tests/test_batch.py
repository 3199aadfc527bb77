"""The cohort batch on phantom studies: discovery and names, the same results as ``analyze``
and as a 2-worker Dask cluster, bad studies kept apart, resuming, and clean stops."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest

from lungct_viewer.batch import (
    COLUMNS,
    MARKER_NAME,
    TIMING_COLUMNS,
    discover_studies,
    run_batch,
    study_id,
)
from lungct_viewer.batch.cohort import STAGING, done_marker, read_cohort_csv, scrub
from lungct_viewer.batch.runner import STOPPED_MESSAGE
from lungct_viewer.cli import main

SLICES, SIZE = 10, 160
#: Patient folders named as real exports often are: by the patient's name or ID.
GOOD = ("Doe^Jane", "PAT-0002", "PAT-0004")
BROKEN = "PAT-0003 broken"  # DICOM headers fine, pixel data cut short: fails when loading
JUNK = "junk"  # no DICOM at all: fails when the studies are found
IDENTIFYING = ("Doe^Jane", "Doe", "PAT-000", "broken", "junk")


def _phantom(folder: Path, seed: int, n_slices: int = SLICES) -> Path:
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    return write_phantom_dicom(phantom_volume(seed=seed, n_slices=n_slices, size=SIZE), folder)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """ROOT with five patient folders: two plain studies, one with two series (the longer one
    is the default), one whose pixel data are cut short, one without DICOM."""
    root = tmp_path_factory.mktemp("cohort") / "ROOT"
    _phantom(root / "Doe^Jane" / "CT" / "series1", 41)
    _phantom(root / "PAT-0002", 42)
    broken = _phantom(root / BROKEN / "s", 43)
    for f in sorted(broken.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.PixelData = ds.PixelData[:100]
        ds.save_as(f)
    _phantom(root / "PAT-0004" / "s1", 44)
    _phantom(root / "PAT-0004" / "s2", 45, n_slices=SLICES + 2)
    (root / JUNK).mkdir()
    (root / JUNK / "notes.txt").write_text("not a scan")
    (root / JUNK / "empty.dcm").write_bytes(b"\0" * 200)
    return root


def _without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING_COLUMNS}


def _report(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    for k in ("created", "timing"):
        report.pop(k)
    return report


def _study_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def _assert_complete(out: Path) -> None:
    """Every study folder is whole (marker and every file it lists) and nothing is staged."""
    for d in _study_dirs(out):
        marker = json.loads((d / MARKER_NAME).read_text())
        assert done_marker(d, marker["fingerprint"]) is not None, d
        assert sorted(p.name for p in d.iterdir()) == sorted([*marker["files"], MARKER_NAME])
    assert not (out / STAGING).exists() or not any((out / STAGING).iterdir())


@pytest.fixture(scope="module")
def sequential(cohort, phantom_model, tmp_path_factory):
    """One sequential batch through the command line: (OUT, exit status, rows)."""
    out = tmp_path_factory.mktemp("seq") / "OUT"
    rc = main(["batch", str(cohort), "--out", str(out), "--model", str(phantom_model[0]), "-q"])
    return out, rc, read_cohort_csv(out / "cohort.csv")


# ------------------------------------------------------------------------------ finding
def test_studies_are_found_per_patient_folder_and_named_by_their_uids(cohort, tmp_path):
    d = discover_studies(cohort)
    assert d.patient_folders == 5 and d.stray_files == 0
    entries = d.entries()
    assert [e.source for e in entries] == sorted(["Doe^Jane", "PAT-0002", BROKEN, "PAT-0004", JUNK])
    assert len(d.studies) == 4 and len(d.unread) == 1
    junk = d.unread[0]
    assert junk.failed and junk.source == JUNK and junk.id == "folder-0005" and "No CT images" in junk.message
    for s in d.studies:
        assert s.id == study_id(s.study_uid, s.series_uid) and len(s.id) == 16
        assert not any(word in s.id for word in IDENTIFYING)
    four = next(s for s in d.studies if s.source == "PAT-0004")
    assert four.num_slices == SLICES + 2  # the series analyze would pick
    # one study per axial series when asked
    each = discover_studies(cohort, each_series=True)
    assert sorted(s.num_slices for s in each.studies if s.source == "PAT-0004") == [SLICES, SLICES + 2]
    assert four.id in {s.id for s in each.studies}  # the same name in both modes

    # a copied patient folder is read once; the names do not depend on where the folders are
    root2 = tmp_path / "elsewhere"
    shutil.copytree(cohort / "PAT-0002", root2 / "first")
    shutil.copytree(cohort / "PAT-0002", root2 / "second copy")
    d2 = discover_studies(root2)
    assert [s.source for s in d2.studies] == ["first"]
    assert d2.studies[0].id == next(s.id for s in d.studies if s.source == "PAT-0002")
    dup = d2.unread[0]
    assert not dup.failed and dup.source == "second copy" and "read once" in dup.message
    # depth: 0 reads ROOT itself as one patient folder, 2 looks one level further down
    assert [s.source for s in discover_studies(cohort / "PAT-0002", depth=0).studies] == ["."]
    assert [s.source for s in discover_studies(cohort, depth=2).studies] == [
        "Doe^Jane/CT",
        f"{BROKEN}/s",
        "PAT-0004/s1",
        "PAT-0004/s2",
    ]


def test_messages_lose_the_patient_folder_path(cohort):
    folder = cohort / "Doe^Jane"
    assert (
        scrub(f"No CT images were found in {folder} (2 files skipped).", folder)
        == "No CT images were found in the study folder (2 files skipped)."
    )
    assert scrub(f"The series X is not in {folder}/CT/series1.", folder) == "The series X is not in the study folder."


# -------------------------------------------------------------------------- sequential
def test_sequential_batch_reads_like_analyze_and_keeps_bad_studies_apart(
    cohort, sequential, phantom_model, tmp_path, capsys
):
    out, rc, rows = sequential
    assert rc == 1  # some studies failed, the rest were read
    assert list(rows[0].keys()) == list(COLUMNS)  # no source column without --include-identifiers
    status = [r["status"] for r in rows]
    assert status == ["ok", "ok", "failed", "ok", "failed"]  # folder order: Doe^Jane, PAT-0002, broken, 4, junk
    broken, junk = rows[2], rows[4]
    assert "None of the 10 slices" in broken["message"] and broken["study"] != ""
    assert junk["message"].startswith("No CT images were found in the study folder")
    for r in (broken, junk):
        assert r["message"].count(". ") == 0 and "Traceback" not in r["message"]  # one sentence
        assert str(cohort) not in r["message"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(d.name for d in _study_dirs(out)) == sorted(r["study"] for r in ok)
    _assert_complete(out)

    # nothing under OUT names a patient folder or the cohort's path
    for path in out.rglob("*"):
        assert not any(word in path.name for word in IDENTIFYING), path
        if path.is_file() and path.suffix in (".json", ".csv"):
            text = path.read_text()
            assert str(cohort) not in text and "Doe^Jane" not in text and BROKEN not in text, path

    # each study's folder holds exactly what `analyze` writes for that patient folder
    model = str(phantom_model[0])
    for r, name in zip(ok, GOOD, strict=True):
        single = tmp_path / name.replace("^", "_")
        assert main(["analyze", str(cohort / name), "--out", str(single), "--model", model, "-q"]) == 0
        batch_dir = out / r["study"]
        assert _report(batch_dir) == _report(single)
        assert sorted(p.name for p in single.iterdir()) == sorted(
            p.name for p in batch_dir.iterdir() if p.name != MARKER_NAME
        )
        report = json.loads((batch_dir / "report.json").read_text())
        assert r["patient_call"] == report["diagnosis"]["label"]
        assert int(r["lesions"]) == len(report["lesions"])
        assert r["series_uid"] == report["series"]["series_uid"] and r["model_version"] == "phantom-test"
        if report["lesions"]:
            assert float(r["largest_lesion_mm"]) == max(les["diameter_mm"] for les in report["lesions"])
    assert any(int(r["lesions"]) > 0 for r in ok), "the phantom model found nothing on any study"
    capsys.readouterr()


# ------------------------------------------------------------------------- distributed
def test_two_dask_workers_give_the_sequential_results_and_load_the_model_once(
    cohort, sequential, phantom_model, tmp_path
):
    from distributed import Client, LocalCluster

    from lungct_viewer.batch.worker import loads_in_this_process

    seq_out, _, seq_rows = sequential
    out = tmp_path / "OUT"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        result = run_batch(cohort, out, model=phantom_model[0], scheduler=cluster.scheduler_address, progress=False)
        loads = client.run(loads_in_this_process)
    # 3 studies read by 2 processes with at most one model load each
    assert len(loads) == 2 and max(loads.values()) <= 1 and sum(loads.values()) >= 1, loads
    rows = read_cohort_csv(out / "cohort.csv")
    assert [_without_timing(r) for r in rows] == [_without_timing(r) for r in seq_rows]
    assert [r["status"] for r in result.rows] == ["ok", "ok", "failed", "ok", "failed"]
    for d in _study_dirs(seq_out):
        assert _report(out / d.name) == _report(d)
        assert sorted(p.name for p in (out / d.name).iterdir()) == sorted(p.name for p in d.iterdir())
    _assert_complete(out)


# --------------------------------------------------------------------------- resuming
def test_rerun_skips_finished_studies_and_rereads_when_model_or_options_change(
    cohort, sequential, phantom_model, tmp_path
):
    seq_out, _, seq_rows = sequential
    out = tmp_path / "OUT"
    shutil.copytree(seq_out, out)
    model = phantom_model[0]
    stamps = {d.name: (d / MARKER_NAME).stat().st_mtime_ns for d in _study_dirs(out)}

    again = run_batch(cohort, out, model=model, progress=False)
    assert [r["status"] for r in again.rows] == ["skipped", "skipped", "failed", "skipped", "failed"]
    assert {d.name: (d / MARKER_NAME).stat().st_mtime_ns for d in _study_dirs(out)} == stamps
    for new, old in zip(read_cohort_csv(out / "cohort.csv"), seq_rows, strict=True):
        if old["status"] == "ok":  # the earlier results stay in the table
            assert "Already read" in new["message"]
            assert {k: v for k, v in new.items() if k not in ("status", "message")} == {
                k: v for k, v in old.items() if k not in ("status", "message")
            }

    # a study folder that lost a file is read again, the others are not
    victim = _study_dirs(out)[0]
    next(victim.glob("*.png")).unlink()
    partial = run_batch(cohort, out, model=model, progress=False)
    assert [r["study"] for r in partial.rows if r["status"] == "ok"] == [victim.name]
    _assert_complete(out)

    # other options: read again, in place, and the table maps studies to folders when asked
    changed = run_batch(
        cohort, out, model=model, progress=False, options=_options(threshold=0.3, include_identifiers=True, dicom=True)
    )
    assert [r["status"] for r in changed.rows] == ["ok", "ok", "failed", "ok", "failed"]
    assert all(r["voting_threshold"] == 0.3 for r in changed.rows if r["status"] == "ok")
    from lungct_viewer.core.dicom_out import SEG_FILENAME, SR_FILENAME

    for r in changed.rows:  # --dicom: the SEG and SR beside the report wherever there are findings
        if r["status"] == "ok":
            names = {p.name for p in (out / r["study"]).iterdir()}
            assert ({SEG_FILENAME, SR_FILENAME} <= names) == (r["lesions"] > 0), (r, names)
    table = read_cohort_csv(out / "cohort.csv")
    assert [r["source"] for r in table] == ["Doe^Jane", "PAT-0002", BROKEN, "PAT-0004", JUNK]
    assert str(cohort / JUNK) in table[4]["message"]
    _assert_complete(out)

    # another model (here: the same weights with another card): read again
    other = tmp_path / "model-b" / model.name
    other.parent.mkdir()
    shutil.copy(model, other)
    card = json.loads((model.parent / "model_card.json").read_text())
    card["version"] = "phantom-test-b"
    (other.parent / "model_card.json").write_text(json.dumps(card))
    newer = run_batch(
        cohort, out, model=other, progress=False, options=_options(threshold=0.3, include_identifiers=True, dicom=True)
    )
    assert [r["model_version"] for r in newer.rows if r["status"] == "ok"] == ["phantom-test-b"] * 3
    assert len(_study_dirs(out)) == 3
    _assert_complete(out)


def _options(**kw):
    from lungct_viewer.core.reading import ReadOptions

    return ReadOptions(**kw)


# --------------------------------------------------------------------------- stopping
def test_ctrl_c_during_a_study_leaves_no_half_written_folder(cohort, phantom_model, tmp_path, monkeypatch, capsys):
    """Ctrl-C arrives while the second study's files are written (before its marker and
    rename): the first study stays, the second leaves nothing, a rerun finishes the job."""
    import lungct_viewer.batch.worker as worker

    real = worker.read_study
    calls = []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(args[0])
        reading = real(*args, **kwargs)
        if len(calls) == 2:
            assert any(Path(args[1]).iterdir())  # its files are in the staging folder
            raise KeyboardInterrupt
        return reading

    monkeypatch.setattr(worker, "read_study", interrupted_on_the_second)
    out = tmp_path / "OUT"
    model = str(phantom_model[0])
    assert main(["batch", str(cohort), "--out", str(out), "--model", model, "-q"]) == 130
    printed = capsys.readouterr().out
    assert "Stopped" in printed and "run the same command again" in printed
    rows = read_cohort_csv(out / "cohort.csv")
    assert [r["status"] for r in rows] == ["ok", "skipped", "skipped", "skipped", "failed"]
    assert all(r["message"] == STOPPED_MESSAGE for r in rows[1:4])
    assert [d.name for d in _study_dirs(out)] == [rows[0]["study"]]
    _assert_complete(out)
    assert not (out / STAGING).exists()

    monkeypatch.setattr(worker, "read_study", real)
    assert main(["batch", str(cohort), "--out", str(out), "--model", model, "-q"]) == 1
    rows = read_cohort_csv(out / "cohort.csv")
    assert [r["status"] for r in rows] == ["skipped", "ok", "failed", "ok", "failed"]
    _assert_complete(out)


def test_stopping_a_local_cluster_midway_keeps_only_whole_studies(cohort, sequential, phantom_model, tmp_path):
    seq_out = sequential[0]
    out = tmp_path / "OUT"
    stop = []
    result = run_batch(
        cohort,
        out,
        model=phantom_model[0],
        workers=2,
        progress=False,
        on_row=lambda row: stop.append(True) if row["status"] == "ok" else None,
        should_stop=lambda: bool(stop),
    )
    assert result.interrupted
    statuses = [r["status"] for r in result.rows]
    assert statuses.count("ok") >= 1 and "skipped" in statuses
    done = [d.name for d in _study_dirs(out)]
    assert set(done) == {r["study"] for r in result.rows if r["status"] == "ok"}
    _assert_complete(out)
    assert not (out / STAGING).exists()
    # the next run reads only what is missing; the results are those of a run without a stop
    rerun = run_batch(cohort, out, model=phantom_model[0], progress=False)
    assert sorted(r["study"] for r in rerun.rows if r["status"] == "skipped") == sorted(done)
    for d in _study_dirs(seq_out):
        assert _report(out / d.name) == _report(d)


# ----------------------------------------------------------------------------- errors
def test_batch_refuses_what_cannot_work_with_one_line(tmp_path, cohort, phantom_model, capsys):
    model = str(phantom_model[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    flat = tmp_path / "flat"
    _phantom(flat, 7, n_slices=3)
    for args, needle in (
        ([str(tmp_path / "nope"), "--out", str(tmp_path / "o1")], "does not exist"),
        ([str(cohort), "--out", str(cohort / "out")], "must not be inside the cohort folder"),
        ([str(empty), "--out", str(tmp_path / "o2")], "holds no patient folders"),
        ([str(flat), "--out", str(tmp_path / "o3")], "--depth 0"),
        ([str(cohort), "--out", str(tmp_path / "o4"), "--model", str(tmp_path / "none.keras")], "No model file"),
    ):
        extra = [] if "--model" in args else ["--model", model]
        assert main(["batch", *args, *extra, "-q"]) == 2, needle
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not (cohort / "out").exists()
    assert sorted(os.listdir(cohort)) == sorted([*GOOD, BROKEN, JUNK])
    with pytest.raises(SystemExit) as exc:
        main(["batch", str(cohort), "--out", str(tmp_path / "o5"), "--workers", "2", "--scheduler", "tcp://x:1"])
    assert exc.value.code == 2
