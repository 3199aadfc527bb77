"""``evaluate-studies``: the viewer's whole reading on whole studies, scored so it cannot flatter.

* **The pipeline** is the viewer's: :class:`~lungct_viewer.core.session.ReadingSession` on the
  network's per-slice output (cached per model), the model card's operating point.
* **Leave-one-study-out.** The second reading is fitted on the other studies (their
  candidates, their annotated nodules and nodule crops pasted into their lungs,
  :mod:`training.second_reading`) and applied to the study left out, for each study in turn;
  its operating point comes from the training studies only. These are the headline figures.
  The second reading fitted on every study (the one shipped) is scored too, labelled so.
* **Localised hits.** A lesion hits a nodule only when the centre of one of its per-slice boxes
  lies inside the nodule's box on that slice grown by 5 mm; a lesion that merely overlaps a
  nodule is a false positive and the nodule is missed. Several lesions on one nodule count it
  once. Nodules: LIDC consensus nodules (>= 2 readers, >= 3 mm) and VOC tumours; "tumours"
  are the benign and malignant ones, "indeterminate" (median rating 3) are reported apart.
* **FROC** (3-D lesions as the unit): sensitivity at 1/8 ... 8 false positives per scan and
  their mean (CPM), pooled over the scans, each scored by the fold that left its study out.
  Folds score on different scales, so a lesion's suspicion is pooled as the false positives
  per *training* scan its fold raises at that suspicion (the scale the operating point is set
  on); the cap on findings per scan is not applied to the curve.
* Per series: nodules found, false positives at the operating point (and how many lie on other
  readers' marks), the largest and median finding (mm^2 on a slice, mm across), the patient
  call, candidates and time. Each held-out series' ``report.json`` is written (its thick-slab
  reconstructions' too, under ``reports/<study>_<series>_slab<k>``), so that an outside scorer
  can read it.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungct_viewer.core.errors import DataError
from lungct_viewer.core.second_reading import SecondReading

from .metrics import FROC_RATES, froc, plot_froc
from .second_reading import (
    PASTES_PER_HOST,
    TARGET_FP_PER_SCAN,
    Calibration,
    Example,
    band_of,
    calibration,
    crop_files,
    fit_second_reading,
    pasted_examples,
    study_examples,
)
from .slabs import SLAB_TARGETS_MM
from .studies import analysed_series, discover_studies


def _examples(studies: set[str], real: dict[str, list[Example]], pasted: dict[str, list[Example]]):
    """``(positives, negatives)`` of ``studies``: annotated and pasted nodules; the other
    candidates, minus those on other readers' marks."""
    pos = [e for s, ex in real.items() if s in studies for e in ex if e.positive]
    pos += [e for s, ex in pasted.items() if s in studies for e in ex]
    neg = [e for s, ex in real.items() if s in studies for e in ex if not e.positive and not e.other_mark]
    return pos, neg


def reading_build(created: str) -> str:
    """Build metadata of a second reading's version from its ISO creation time (UTC):
    ``2026-11-30T15:10:19+00:00`` gives ``20261130.1510``."""
    day, _, clock = created.partition("T")
    return f"{day.replace('-', '')}.{clock[:5].replace(':', '')}"


def _fit(studies: set[str], real, pasted, version: str, training: dict | None = None) -> SecondReading:
    pos, neg = _examples(studies, real, pasted)
    return fit_second_reading(pos, neg, version=version, training=training)


def _scored_negatives(reading: SecondReading, study: str, series, real) -> list[tuple[str, np.ndarray]]:
    """``(band, suspicions)`` of the false-positive candidates of each series of ``study``."""
    out = []
    for sr in series:
        if sr.spec.name != study:
            continue
        neg = [e for e in real[study] if e.series == sr.key and not e.positive and not e.other_mark]
        scores = reading.score_matrix(np.stack([e.features for e in neg])) if neg else np.zeros(0)
        out.append((band_of(sr.volume.slice_spacing_mm), scores))
    return out


def cross_fitted_calibration(studies: list[str], series, real, pasted, readings: dict | None = None) -> Calibration:
    """Each study's scans scored by a reading fitted on the other ``studies`` (given in
    ``readings`` or fitted here). With one study there is no other: its own (in-sample)
    scores are used, and the calibration says so."""
    if len(studies) == 1:
        only = studies[0]
        reading = _fit({only}, real, pasted, "in-sample")
        return calibration(_scored_negatives(reading, only, series, real), cross_fitted=False)
    scored = []
    for held in studies:
        reading = (readings or {}).get(held) or _fit(set(studies) - {held}, real, pasted, f"without-{held}")
        scored += _scored_negatives(reading, held, series, real)
    return calibration(scored)


@dataclass
class Fold:
    """The second reading fitted without one study, its operating points set by
    leave-one-study-out within its own training studies."""

    reading: SecondReading
    calibration: Calibration

    def fp_rate(self, score: float, band: str) -> float:
        """False positives per new scan of ``band`` this fold raises at suspicion ``score``: the
        common scale on which folds are pooled (lower = more suspicious)."""
        return self.calibration.fp_rate(score, band)


def fit_folds(specs, series, real: dict[str, list[Example]], pasted: dict[str, list[Example]]) -> dict[str, Fold]:
    """For each study, the second reading fitted on the other studies' examples, its operating
    points from those studies only (each scored by a reading fitted without it)."""
    folds = {}
    names = [s.name for s in specs]
    for held in names:
        others = [n for n in names if n != held]
        reading = _fit(set(others), real, pasted, f"loso-{held}")
        cal = cross_fitted_calibration(others, series, real, pasted)
        folds[held] = Fold(cal.apply(reading), cal)
    return folds


def field_roi_share(analysis, min_roi_probability: float) -> float:
    """Share of the analysed lung-field windows the network calls ROI (P(ROI) at or above
    ``min_roi_probability``) over a whole series: the red overlay's specificity on lung."""
    from lungct_viewer.core.candidates import logit

    floor = logit(min_roi_probability)
    called = analysed = 0
    for sa in analysis.slices.values():
        g = sa.roi_logit[np.asarray(sa.in_field, dtype=bool)]
        called += int(np.count_nonzero(g >= floor))
        analysed += int(g.size)
    return called / analysed if analysed else 0.0


def _series_row(series, session, examples: list[Example], label: str, seconds: float) -> dict:
    vol, truth = series.volume, series.truth
    by_id = {les.candidate.id: les for les in session.lesions()}
    found_ids = {n for e in examples for n in e.nodules if by_id[e.candidate_id].passes}
    passing = session.findings()
    ex_of = {e.candidate_id: e for e in examples}
    fps = [les for les in passing if not ex_of[les.candidate.id].nodules]
    areas = [f.area_mm2 for les in passing for f in les.findings]
    d = session.diagnosis()
    tumours = [n for n in truth.nodules if n.label != "indeterminate"]
    indet = [n for n in truth.nodules if n.label == "indeterminate"]
    return {
        "study": series.spec.name,
        "series": series.key.split("/", 1)[1],
        "description": vol.description,
        "second_reading": label,
        "slices": vol.num_slices,
        "slice_spacing_mm": vol.slice_spacing_mm,
        "tumours": len(tumours),
        "tumours_found": sum(1 for n in tumours if n.id in found_ids),
        "indeterminate": len(indet),
        "indeterminate_found": sum(1 for n in indet if n.id in found_ids),
        "nodule_sizes_mm": [round(n.diameter_mm(vol), 1) for n in truth.nodules],
        "lesions": len(passing),
        "false_positives": len(fps),
        "false_positives_on_other_marks": sum(1 for les in fps if ex_of[les.candidate.id].other_mark),
        "candidates": len(session.lesions()),
        "largest_finding_mm2": round(max(areas), 1) if areas else 0.0,
        "median_finding_mm2": round(float(np.median(areas)), 1) if areas else 0.0,
        "largest_lesion_mm": round(max((les.diameter_mm for les in passing), default=0.0), 1),
        "field_windows_roi": round(field_roi_share(series.analysis, session.params.min_roi_probability), 3),
        "patient_call": d.label.value,
        "malignant_fraction": d.malignant_fraction,
        "inference_s": round(series.analysis.inference_s, 1),
        "candidates_s": round(seconds, 2),
    }


@dataclass
class ExampleSet:
    """Every series of the studies with its reading session and examples (see
    :func:`collect_examples`)."""

    series: list  # AnalysedSeries, in study order
    sessions: dict  # series key -> ReadingSession (model defaults, no second reading)
    real: dict[str, list[Example]]  # study -> its candidates
    pasted: dict[str, list[Example]]  # study -> crops pasted into its first series and its slabs
    seconds: dict[str, float]  # series key -> seconds for the reading after the network


def collect_examples(specs, loaded, cache_dir, crops, rng, pastes: int, log=print, slabs_mm=()) -> ExampleSet:
    """The network's output on every series of ``specs`` (cached), the pipeline's candidates
    as examples, and ``pastes`` of ``crops`` pasted into each study's first series and into
    each thick-slab reconstruction (``slabs_mm``, :mod:`training.slabs`)."""
    out = ExampleSet([], {}, {}, {}, {})
    for spec in specs:
        log(f"{spec.name}:")
        first = True
        for sr in analysed_series(spec, loaded, cache_dir, log=log, slabs_mm=slabs_mm):
            t0 = time.perf_counter()
            session, ex = study_examples(sr, loaded.card)
            out.seconds[sr.key] = time.perf_counter() - t0
            out.series.append(sr)
            out.sessions[sr.key] = session
            out.real.setdefault(spec.name, []).extend(ex)
            log(
                f"  {sr.key}: {len(ex)} candidates in {out.seconds[sr.key]:.1f} s, "
                f"{sum(e.positive for e in ex)} on nodules, {sum(e.other_mark for e in ex)} on other marks"
            )
            if crops and (first or sr.derived):
                p, tried = pasted_examples(sr, session.lung, crops, rng, pastes)
                out.pasted.setdefault(spec.name, []).extend(p)
                log(f"  {sr.key}: {len(p)} of {tried} pasted nodules found by the core and object steps")
            if not sr.derived:
                first = False
    if crops and not any(out.pasted.values()):
        raise DataError("No pasted nodule could be segmented; check the nodule crops.")
    return out


def evaluate_studies(
    model_path: Path,
    data_dir: Path,
    out: Path,
    nodules_dir: Path | None,
    cache_dir: Path | None,
    studies: list[str] | None = None,
    fit_out: Path | None = None,
    pastes: int = PASTES_PER_HOST,
    seed: int = 1234,
    log=print,
    slabs_mm: tuple[float, ...] = SLAB_TARGETS_MM,
) -> dict:
    from lungct_viewer.core.model import load_model
    from lungct_viewer.core.report import build_report, write_report

    loaded = load_model(model_path)
    specs = [s for s in discover_studies(data_dir) if not studies or s.name in studies]
    if len(specs) < 2:
        raise DataError("Leave-one-study-out needs at least two whole studies.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    crops = crop_files(nodules_dir, {s.name for s in specs}) if nodules_dir else []
    ex_set = collect_examples(specs, loaded, cache_dir, crops, rng, pastes, log, slabs_mm=slabs_mm)
    series, sessions, real, pasted, seconds = (
        ex_set.series,
        ex_set.sessions,
        ex_set.real,
        ex_set.pasted,
        ex_set.seconds,
    )
    _write_examples(
        out / "examples.csv", [e for ex in real.values() for e in ex] + [e for ex in pasted.values() for e in ex]
    )

    # leave one study out; the headline figures are the acquired series, the thick-slab
    # reconstructions of the held-out study are reported apart
    rows, slab_rows, froc_scans = [], [], []
    folds = fit_folds(specs, series, real, pasted)
    for spec in specs:
        fold = folds[spec.name]
        for sr in series:
            if sr.spec.name != spec.name:
                continue
            session = sessions[sr.key]
            session.set_second_reading(fold.reading)
            ex = [e for e in real[spec.name] if e.series == sr.key]
            row = _series_row(sr, session, ex, "left out", seconds[sr.key])
            write_report(
                out / "reports" / sr.key.replace("/", "_"),
                build_report(session, warnings=[f"second reading fitted without {spec.name}"]),
            )
            if sr.derived:
                slab_rows.append(row)
                continue
            rows.append(row)
            band = band_of(sr.volume.slice_spacing_mm)
            susp = {les.candidate.id: les.suspicion for les in session.lesions()}
            # folds score on different scales: pool them on a common one, the false positives
            # per new scan each fold's calibration gives at a lesion's suspicion
            froc_scans.append(
                {
                    "n_nodules": len(sr.truth.nodules),
                    "lesions": [(-fold.fp_rate(susp[e.candidate_id], band), e.nodules) for e in ex],
                }
            )
    curve = froc(froc_scans)
    # the second reading fitted on every study (shipped), its operating points from the folds'
    # readings on the studies they left out; scored on the same studies (not independent)
    names = [s.name for s in specs]
    cal = cross_fitted_calibration(names, series, real, pasted, {n: f.reading for n, f in folds.items()})
    pos_all, neg_all = _examples(set(names), real, pasted)
    final = cal.apply(
        _fit(
            set(names),
            real,
            pasted,
            version="fit-all",
            training={
                "studies": names,
                "scans": sum(1 for sr in series if not sr.derived),
                "thick_slab_reconstructions": sum(1 for sr in series if sr.derived),
                "slab_spacings_mm": list(slabs_mm),
                "positives_pasted": sum(len(v) for v in pasted.values()),
                "positives_annotated": sum(1 for ex in real.values() for e in ex if e.positive),
                "negatives": len(neg_all),
                "pastes_per_host": pastes,
                "seed": seed,
            },
        )
    )
    fitted_rows = []
    for sr in series:
        if sr.derived:
            continue
        session = sessions[sr.key]
        session.set_second_reading(final)
        ex = [e for e in real[sr.spec.name] if e.series == sr.key]
        fitted_rows.append(_series_row(sr, session, ex, "fitted on this study", seconds[sr.key]))
    summary = {
        "model_version": loaded.version,
        "studies": names,
        "scans": len(rows),
        "leave_one_study_out": {
            "froc_sensitivity_at": curve["sensitivity_at"],
            "cpm": curve["cpm"],
            "nodules": curve["nodules"],
            "series": rows,
            "tumours_found": sum(r["tumours_found"] for r in rows),
            "tumours": sum(r["tumours"] for r in rows),
            "indeterminate_found": sum(r["indeterminate_found"] for r in rows),
            "indeterminate": sum(r["indeterminate"] for r in rows),
            "false_positives_per_scan": float(np.mean([r["false_positives"] for r in rows])),
            "max_false_positives": max(r["false_positives"] for r in rows),
            "fold_thresholds": {
                k: {"thin": round(f.reading.threshold, 4), "thick": _round(f.reading.thick_threshold)}
                for k, f in folds.items()
            },
            "calibration": "leave-one-study-out within each fold's training studies"
            if all(f.calibration.cross_fitted for f in folds.values())
            else "in-sample (a fold with a single training study)",
        },
        "thick_slab_reconstructions": _slab_summary(slab_rows),
        "fitted_on_all_studies": {
            "threshold": final.threshold,
            "thick_threshold": final.thick_threshold,
            "series": fitted_rows,
            "false_positives_per_scan": float(np.mean([r["false_positives"] for r in fitted_rows])),
        },
        "pasted_found": {k: len(v) for k, v in pasted.items()},
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    _write_csv(out / "series.csv", rows + slab_rows + fitted_rows)
    _write_csv(out / "froc.csv", curve["curve"])
    plot_froc(
        curve,
        out / "froc.png",
        f"Leave-one-study-out FROC, {len(rows)} scans, {curve['nodules']} nodules (CPM {curve['cpm']:.3f})"
        if curve["cpm"] is not None
        else "Leave-one-study-out FROC",
        summary["leave_one_study_out"]["false_positives_per_scan"],
    )
    if fit_out is not None:
        from lungct_viewer.core.second_reading import save_second_reading

        # the model it reads for, and the UTC minute it was fitted (semantic versioning's build
        # metadata: two fits of one day are told apart)
        final.version = f"{loaded.version}+{reading_build(final.created)}"
        final.evaluation = {
            k: summary["leave_one_study_out"][k]
            for k in (
                "froc_sensitivity_at",
                "cpm",
                "tumours_found",
                "tumours",
                "indeterminate_found",
                "indeterminate",
                "false_positives_per_scan",
                "max_false_positives",
            )
        }
        if slab_rows:
            final.evaluation["thick_slab_reconstructions"] = {
                k: v for k, v in summary["thick_slab_reconstructions"].items() if k != "series"
            }
        thick = (
            f" ({final.thick_threshold:.3f} on series whose slices lie more than {final.thick_slice_mm:g} mm apart)"
            if final.thick_threshold is not None
            else ""
        )
        final.notes = [
            "Fitted on the candidates of the studies listed under training (negatives), their annotated nodules and "
            "LIDC nodule crops pasted into their lungs (positives), on each series as acquired and as thick-slab "
            f"reconstructions; operating point {final.threshold:.3f}{thick}: the suspicion at which scans raise "
            f"{TARGET_FP_PER_SCAN:g} false-positive lesion per scan when each is scored by a second reading fitted "
            f"without its study; at most {final.max_lesions} findings per scan.",
            "Evaluation figures are leave-one-study-out: each study scored by a second reading fitted without it.",
        ]
        save_second_reading(final, fit_out)
        log(f"wrote {fit_out}")
    log(format_table(summary))
    return summary


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(float(v), digits)


def _slab_summary(rows: list[dict]) -> dict:
    """The held-out studies' thick-slab reconstructions: false positives, nodules, calls."""
    if not rows:
        return {"series": []}
    negative = [r for r in rows if r["tumours"] + r["indeterminate"] == 0]
    return {
        "series": rows,
        "scans": len(rows),
        "false_positives_per_scan": float(np.mean([r["false_positives"] for r in rows])),
        "max_false_positives": max(r["false_positives"] for r in rows),
        "nodules_found": sum(r["tumours_found"] + r["indeterminate_found"] for r in rows),
        "nodules": sum(r["tumours"] + r["indeterminate"] for r in rows),
        "studies_without_nodules_called_malignant": sum(r["patient_call"] == "malignant" for r in negative),
        "studies_without_nodules": len(negative),
    }


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _write_examples(path: Path, examples: list[Example]) -> None:
    from lungct_viewer.core.candidates import FEATURE_NAMES

    _write_csv(
        path,
        [
            {
                "study": e.study,
                "series": e.series,
                "candidate_id": e.candidate_id,
                "positive": int(e.positive),
                "nodules": " ".join(map(str, e.nodules)),
                "other_mark": int(e.other_mark),
                "pasted": e.pasted,
                "max_roi_logit": round(e.max_roi_logit, 4),
                **{f: round(float(v), 5) for f, v in zip(FEATURE_NAMES, e.features)},
            }
            for e in examples
        ],
    )


def format_table(m: dict) -> str:
    loso = m["leave_one_study_out"]
    lines = [
        f"model {m['model_version']}, {m['scans']} scans of {len(m['studies'])} studies",
        "",
        "leave-one-study-out (second reading fitted without the study):",
        "study            series    tumours  indet.  FP (other marks)  largest mm2  median mm2  call"
        "          cands   s",
    ]
    for r in loso["series"] + m["fitted_on_all_studies"]["series"]:
        if r is m["fitted_on_all_studies"]["series"][0]:
            lines += ["", "second reading fitted on every study (shipped; these studies took part in fitting):"]
        lines.append(
            f"{r['study']:<16} {r['series']:<9} {r['tumours_found']}/{r['tumours']:<6} "
            f"{r['indeterminate_found']}/{r['indeterminate']:<5} {r['false_positives']:>3} "
            f"({r['false_positives_on_other_marks']})"
            f"          {r['largest_finding_mm2']:>8.0f}    {r['median_finding_mm2']:>8.0f}  {r['patient_call']:<13} "
            f"{r['candidates']:>5} {r['candidates_s']:>4.1f}"
        )
    slabs = m.get("thick_slab_reconstructions", {})
    if slabs.get("series"):
        lines += ["", "thick-slab reconstructions of the held-out studies (derived series, left out with their study):"]
        for r in slabs["series"]:
            lines.append(
                f"{r['study']:<16} {r['series']:<16} {r['slice_spacing_mm']:>4.1f} mm  "
                f"nodules {r['tumours_found'] + r['indeterminate_found']}/{r['tumours'] + r['indeterminate']}  "
                f"FP {r['false_positives']:>2}  call {r['patient_call']}"
            )
        lines.append(
            f"  {slabs['false_positives_per_scan']:.2f} false positives per scan (max {slabs['max_false_positives']}); "
            f"{slabs['studies_without_nodules_called_malignant']} of {slabs['studies_without_nodules']} "
            "without nodules called malignant"
        )
    at = "  ".join(f"{float(k):g}: {v:.2f}" for k, v in loso["froc_sensitivity_at"].items())
    lines += [
        "",
        f"FROC (leave-one-study-out, {loso['nodules']} nodules): {at}; CPM {loso['cpm']}",
        f"false positives per scan at the operating point: {loso['false_positives_per_scan']:.2f} "
        f"(max {loso['max_false_positives']}); rates {', '.join(f'{r:g}' for r in FROC_RATES)}",
    ]
    return "\n".join(lines)


def run_evaluate_studies(args) -> dict:
    return evaluate_studies(
        args.model,
        args.data_dir,
        args.out,
        args.nodules,
        args.cache,
        args.study,
        args.fit_out,
        args.pastes,
        args.seed,
        log=lambda s: print(s, flush=True),
        slabs_mm=args.slabs_mm,
    )
