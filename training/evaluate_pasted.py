"""``evaluate-pasted``: the whole reading's nodule sensitivity on nodules no part of it has seen.

The whole studies hold five annotated nodules: too few to say how often the reading finds a
nodule. This evaluation puts many more into real lungs and runs the viewer's whole reading
on them, network included:

* **Nodules**: the non-calcified LIDC crops of the *test* patients of a split file (by default
  the split behind the shipped network, so the network never trained on them), none of the
  whole studies' own patients.
* **Hosts**: every series of the whole studies as acquired (the thick-slab reconstructions
  take part in fitting, :mod:`training.slabs`, but are not hosts here). The second reading that reads a host is fitted
  without the host's study *and* without any test patient's crop (its pasted positives are
  the other patients' crops, in the other studies): leave-one-study-out as in
  :mod:`training.evaluate_studies`, and no nodule scored here took part in fitting anything.
* **Pasting** as for fitting (:func:`training.second_reading.paste_nodule`: the nodule's own
  voxels, resampled to the host, half against the costal pleura), :data:`BATCH` nodules at a
  time at least :data:`SEPARATION_MM` apart; the network re-reads every slice a pasted nodule
  touches (the exact dense inference) and the session builds the lung region, candidates,
  lesions and suspicions on the whole series, as the viewer does.
* **Found**: a lesion whose finding box is centred within the nodule's box grown by 5 mm on
  one of its slices (the localised-hit rule). Reported: *on the spot* (any candidate), and
  *a finding* (suspicion at the fold's operating point; the cap of findings per scan is left
  out, since several nodules are pasted into one scan at once), by size and by class; and, for
  nodules of 6 mm or more by the readers' texture rating, whether the finding is read as ground
  glass and whether it *votes in the patient call* (:func:`~lungct_viewer.core.voting.enters_call`:
  its own measured size and texture).
* **FROC**: each nodule's most suspicious hit against the hosts' own false positives (their
  candidates on no annotated nodule), suspicions pooled as false positives per new scan of
  their fold's calibration (:meth:`~training.evaluate_studies.Fold.fp_rate`).

Sizes are the crops' ``diameter_mm`` (the readers' outline, mm).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from lungct_viewer.core import constants as C
from lungct_viewer.core.candidates import DESCRIPTOR_NAMES, FEATURE_NAMES
from lungct_viewer.core.errors import DataError
from lungct_viewer.core.voting import enters_call

from .evaluate_studies import ExampleSet, Fold, _write_csv, collect_examples, fit_folds
from .metrics import froc
from .second_reading import PASTES_PER_HOST, band_of, crop_files, finding_hits, paste_crop, paste_sites
from .slabs import SLAB_TARGETS_MM
from .studies import discover_studies

#: Nodules pasted into one copy of a host series at a time, and their least distance (mm,
#: centre to centre, beyond both radii) so that no two share a candidate.
BATCH = 8
SEPARATION_MM = 25.0
#: Size bins (mm) for the sensitivity table: [lo, hi).
SIZE_BINS = ((3.0, 6.0), (6.0, 10.0), (10.0, 20.0), (20.0, 100.0))
#: The readers' texture rating (LIDC ``Texture_value``, 1-5) in three groups.
TEXTURE_GROUPS = (("solid", ("5",)), ("part-solid", ("3", "4")), ("ground glass", ("1", "2")))


def _crop_rows(nodules_dir: Path) -> dict[str, dict]:
    rows = csv.DictReader(open(nodules_dir / "nodules.csv", newline=""))
    return {f"{r['patient_id']}_R_{r['nodule_id']}": r for r in rows}


def held_out_crops(nodules_dir: Path, split_file: Path, exclude_patients: set[str]):
    """``(test crops, fitting crops)``: the non-calcified crops of the split's test patients,
    and of every other patient; the whole studies' own patients in neither."""
    split = json.loads(Path(split_file).read_text())["split"]
    test = {p for p, s in split.items() if s == "test"} - exclude_patients
    crops = crop_files(nodules_dir, exclude_patients)
    held = [c for c in crops if c[0].split("_R_")[0] in test]
    fitting = [c for c in crops if c[0].split("_R_")[0] not in test]
    if not held:
        raise DataError(f"No crop of the test patients of {split_file} was found in {nodules_dir}.")
    return held, fitting


def _slice_boxes(box: tuple[slice, slice, slice], mask: np.ndarray) -> dict[int, tuple[int, int, int, int]]:
    """Per slice, the pasted nodule's ``(x0, y0, x1, y1)`` box (inclusive, native pixels)."""
    out = {}
    for k in range(mask.shape[0]):
        ys, xs = np.nonzero(mask[k])
        if len(ys):
            out[box[0].start + k] = (
                box[2].start + int(xs.min()),
                box[1].start + int(ys.min()),
                box[2].start + int(xs.max()),
                box[1].start + int(ys.max()),
            )
    return out


def paste_batch(series, lung, analyzer, crops, rng, reading_for, card):
    """Paste ``crops`` into one copy of ``series`` and read it; one record per pasted nodule."""
    from lungct_viewer.core.session import ReadingSession

    vol = series.volume
    spacing = vol.voxel_spacing_mm
    hu = vol.hu.copy()
    sites = paste_sites(hu, lung, spacing)
    if len(sites) == 0:
        return []
    if len(sites) > 200_000:  # thin the candidate sites: the draw stays uniform
        sites = sites.take(rng.choice(len(sites), 200_000, replace=False))
    pasted = []
    for crop in crops:
        done, against_pleura = paste_crop(hu, lung, spacing, crop, rng, sites)
        if done is None:
            continue
        box, _original, centre, nodule = done
        name = crop[0]
        extent_mm = max(n * s for n, s in zip(nodule.shape, spacing))
        sites = sites.away_from(centre, spacing, SEPARATION_MM + extent_mm)
        pasted.append({"name": name, "boxes": _slice_boxes(box, nodule), "subpleural": against_pleura})
        if len(sites) == 0:
            break
    if not pasted:
        return []
    touched = sorted(
        {k for p in pasted for k in p["boxes"]} | {k + d for p in pasted for k in p["boxes"] for d in (-1, 1)}
    )
    touched = [k for k in touched if 0 <= k < vol.num_slices]
    vol2 = dataclasses.replace(vol, hu=hu)
    analysis = dataclasses.replace(series.analysis, slices=dict(series.analysis.slices))
    for sa in analyzer.iter_analyze(vol2, touched):
        analysis.slices[sa.index] = sa
    reading = reading_for(series)
    session = ReadingSession(vol2, card, reading)
    session.set_analysis(analysis)
    lesions = session.lesions()
    sp = vol.pixel_spacing_mm
    out = []
    for p in pasted:
        hits = [
            les for les in lesions if any(finding_hits(p["boxes"], f.slice_index, f.bbox_px, sp) for f in les.findings)
        ]
        scored = [les for les in hits if les.suspicion is not None]
        best = max(scored, key=lambda les: les.suspicion) if scored else None
        finding = best is not None and best.suspicion >= reading.threshold_for(vol.slice_spacing_mm)
        out.append(
            {
                "name": p["name"],
                "host": series.key,
                "subpleural": p["subpleural"],
                "slices": len(p["boxes"]),
                "on_the_spot": bool(hits),
                "suspicion": best.suspicion if best else None,
                "finding": finding,
                "in_call": finding and enters_call(best, C.DEFAULT_CALL_MIN_DIAMETER_MM),
                "texture": best.texture.value if best else None,
                # what the second reading saw on the most suspicious hit
                **{
                    f: round(float(best.candidate.features[f]), 4) if best else None
                    for f in FEATURE_NAMES + DESCRIPTOR_NAMES
                },
            }
        )
    return out


def evaluate_pasted(
    model_path: Path,
    data_dir: Path,
    out: Path,
    nodules_dir: Path,
    split_file: Path,
    cache_dir: Path | None,
    per_host: int | None = None,
    pastes: int = PASTES_PER_HOST,
    seed: int = 1234,
    log=print,
    slabs_mm: tuple[float, ...] = SLAB_TARGETS_MM,
) -> dict:
    from lungct_viewer.core.model import load_model
    from lungct_viewer.core.pipeline import Analyzer

    loaded = load_model(model_path)
    specs = discover_studies(data_dir)
    if len(specs) < 2:
        raise DataError("Leave-one-study-out needs at least two whole studies.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    held, fitting = held_out_crops(nodules_dir, split_file, {s.name for s in specs})
    rows_by_name = _crop_rows(nodules_dir)
    log(f"{len(held)} test-patient crops to paste; second readings fitted on {len(fitting)} other crops")
    ex: ExampleSet = collect_examples(specs, loaded, cache_dir, fitting, rng, pastes, log, slabs_mm=slabs_mm)
    folds: dict[str, Fold] = fit_folds(specs, ex.series, ex.real, ex.pasted)
    analyzer = Analyzer(loaded)
    records, scans, host_fps = [], [], []
    hosts = [sr for sr in ex.series if not sr.derived]
    t0 = time.perf_counter()
    for sr in hosts:
        fold = folds[sr.spec.name]
        band = band_of(sr.volume.slice_spacing_mm)
        pick = held if per_host is None else [held[int(i)] for i in rng.permutation(len(held))[:per_host]]
        lung = ex.sessions[sr.key].lung
        host_records = []
        for b in range(0, len(pick), BATCH):
            host_records += paste_batch(
                sr, lung, analyzer, pick[b : b + BATCH], rng, lambda _s, f=fold: f.reading, loaded.card
            )
        for r in host_records:
            crop = rows_by_name.get(r["name"], {})
            r["diameter_mm"] = float(crop.get("diameter_mm") or "nan")
            r["label"] = crop.get("Diagnosis", "")
            r["texture_rating"] = crop.get("Texture_value", "")
            r["fp_per_new_scan"] = fold.fp_rate(r["suspicion"], band) if r["suspicion"] is not None else None
        records += host_records
        # the host's own false positives under its fold, and the pasted nodules' best hits
        base = ex.sessions[sr.key]
        base.set_second_reading(fold.reading)
        real = {e.candidate_id: e for e in ex.real[sr.spec.name] if e.series == sr.key}
        fps = [
            les.suspicion
            for les in base.lesions()
            if not real[les.candidate.id].nodules and not real[les.candidate.id].other_mark
        ]
        host_fps += [{"host": sr.key, "suspicion": v, "fp_per_new_scan": fold.fp_rate(v, band)} for v in fps]
        lesions = [(-fold.fp_rate(v, band), ()) for v in fps]
        lesions += [
            (-fold.fp_rate(r["suspicion"], band), (k,))
            for k, r in enumerate(host_records)
            if r["suspicion"] is not None
        ]
        scans.append({"n_nodules": len(host_records), "lesions": lesions})
        found = sum(r["finding"] for r in host_records)
        log(
            f"  {sr.key}: {len(host_records)} nodules pasted, {sum(r['on_the_spot'] for r in host_records)} "
            f"with a candidate on the spot, {found} findings ({time.perf_counter() - t0:.0f} s)"
        )
    summary = summarise(records, froc(scans), [s.name for s in specs], len(hosts), loaded.version)
    summary["split_file"] = str(split_file)
    summary["operating_points"] = operating_points(records, host_fps, len(hosts))
    _write_csv(out / "pasted.csv", records)
    _write_csv(out / "host_false_positives.csv", host_fps)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    log(format_table(summary))
    return summary


#: Operating points compared: false-positive lesions per new scan on each fold's calibration
#: (:class:`~training.second_reading.Calibration`, the scale on which the shipped operating
#: point is chosen: 1).
FP_TARGETS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


def operating_points(records: list[dict], host_fps: list[dict], scans: int) -> list[dict]:
    """Pasted nodules found and the hosts' own false positives (before the cap of findings per
    scan) if the threshold were set at each of :data:`FP_TARGETS`."""
    out = []
    for target in FP_TARGETS:
        found = [r for r in records if r["fp_per_new_scan"] is not None and r["fp_per_new_scan"] <= target]
        fps = [f for f in host_fps if f["fp_per_new_scan"] <= target]
        out.append(
            {
                "fp_per_new_scan": target,
                "finding": round(len(found) / len(records), 3) if records else None,
                "finding_6mm_or_more": _share(
                    [r for r in found if r["diameter_mm"] >= 6], [r for r in records if r["diameter_mm"] >= 6]
                ),
                "host_false_positives_per_scan": round(len(fps) / max(scans, 1), 2),
            }
        )
    return out


def _share(part: list, whole: list) -> float | None:
    return round(len(part) / len(whole), 3) if whole else None


def _rate(rs: list[dict], key: str) -> float | None:
    return round(sum(bool(r[key]) for r in rs) / len(rs), 3) if rs else None


def _group(rs: list[dict], **name) -> dict:
    return {**name, "n": len(rs), "on_the_spot": _rate(rs, "on_the_spot"), "finding": _rate(rs, "finding")}


def summarise(records: list[dict], curve: dict, studies: list[str], scans: int, version: str) -> dict:
    by_size = [
        _group([r for r in records if lo <= r["diameter_mm"] < hi], size_mm=f"{lo:g}-{hi:g}") for lo, hi in SIZE_BINS
    ]
    by_label = [
        _group([r for r in records if r["label"] == lab], label=lab) for lab in sorted({r["label"] for r in records})
    ]
    by_site = [
        _group([r for r in records if r["subpleural"] == sub], site=site)
        for site, sub in (("against the pleura", True), ("in the lung", False))
    ]
    six = [r for r in records if r["diameter_mm"] >= 6]
    by_texture = []
    for name, values in TEXTURE_GROUPS:
        rs = [r for r in six if r.get("texture_rating") in values]
        found = [r for r in rs if r["finding"]]
        by_texture.append(
            {
                **_group(rs, texture=name),
                # of the findings: read as ground glass (left out of the call for it), and voting
                "findings_read_as_ground_glass": _share([r for r in found if r["texture"] == "ground_glass"], found),
                "in_call": _rate(rs, "in_call"),
            }
        )
    return {
        "model_version": version,
        "studies": studies,
        "scans": scans,
        "nodules": len(records),
        "crops": len({r["name"] for r in records}),
        "on_the_spot": _rate(records, "on_the_spot"),
        "finding": _rate(records, "finding"),
        "by_size": by_size,
        "by_label": by_label,
        "by_site": by_site,
        "by_texture_6mm_or_more": by_texture,
        "froc_sensitivity_at": curve["sensitivity_at"],
        "cpm": curve["cpm"],
    }


def format_table(m: dict) -> str:
    lines = [
        f"model {m['model_version']}: {m['nodules']} pastes of {m['crops']} test-patient crops into {m['scans']} "
        "series (second readings fitted without the host study and without these crops)",
        f"candidate on the spot {m['on_the_spot']}, finding at the operating point {m['finding']}",
        "",
        "group                 n    on the spot  finding",
    ]
    for r in m["by_size"]:
        lines.append(f"{r['size_mm'] + ' mm':<18} {r['n']:>4}    {r['on_the_spot']!s:>7}    {r['finding']!s:>6}")
    for r in m["by_label"] + m["by_site"]:
        name = r.get("label") or r.get("site")
        lines.append(f"{name:<18} {r['n']:>4}    {r['on_the_spot']!s:>7}    {r['finding']!s:>6}")
    lines += ["", "6 mm or more, by texture  n    on the spot  finding  read as ground glass  votes in the call"]
    for r in m.get("by_texture_6mm_or_more", []):
        lines.append(
            f"{r['texture']:<22} {r['n']:>4}    {r['on_the_spot']!s:>7}    {r['finding']!s:>6}    "
            f"{r['findings_read_as_ground_glass']!s:>18}    {r['in_call']!s:>6}"
        )
    lines.append("(a finding measured under 6 mm by the pipeline does not vote either)")
    at = "  ".join(f"{float(k):g}: {v:.2f}" for k, v in m["froc_sensitivity_at"].items())
    lines += ["", f"FROC (false positives per scan of the hosts): {at}; CPM {m['cpm']}", ""]
    lines.append("threshold at FP/new scan        finding   finding >= 6 mm   host FP/scan (before the cap)")
    for o in m.get("operating_points", []):
        lines.append(
            f"{o['fp_per_new_scan']:>29g}   {o['finding']!s:>7}   {o['finding_6mm_or_more']!s:>15}   "
            f"{o['host_false_positives_per_scan']:>6}"
        )
    return "\n".join(lines)


def run_evaluate_pasted(args) -> dict:
    return evaluate_pasted(
        args.model,
        args.data_dir,
        args.out,
        args.nodules or Path(args.data_dir) / "lidc-nodules",
        args.split_file,
        args.cache,
        args.per_host,
        args.pastes,
        args.seed,
        slabs_mm=args.slabs_mm,
    )
