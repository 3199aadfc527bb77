"""The reading after the network, per study: lung region, candidates, second reading, lesions.

    python benchmarks/bench_reading.py [--data-dir DIR] [--cache runs/cache] [--repeat 3]

For each shared whole study (the network's output is computed once and cached), times in
one run: the lung region, the candidates (seeds, cores, objects, features), the second
reading's scores, the lesions at the model's settings (votes, findings: the first reading, then
"again", when a setting moves, which is what a slider waits for) and report.json.
Wall and CPU seconds are printed (the machine is shared: compare within one run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(repeat: int, fn, *args):
    """``(result, best wall s, best CPU s)`` of ``fn(*args)`` over ``repeat`` runs."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return out, best_wall, best_cpu


def _candidates(analysis, hu, lung, spacing):
    from lungct_viewer.core.candidates import build_candidates, find_seeds, logit
    from lungct_viewer.core.constants import CANDIDATE_MIN_ROI_PROBABILITY

    floor = logit(CANDIDATE_MIN_ROI_PROBABILITY)
    seeds = [s for i in sorted(analysis.slices) for s in find_seeds(analysis.slices[i], floor)]
    return build_candidates(seeds, hu, lung, spacing)


def _session(series, model, candidates, suspicion, seconds):
    from lungct_viewer.core.session import CandidateSet, ReadingSession

    session = ReadingSession(series.volume, model.card, model.second_reading)
    session.set_analysis(series.analysis)
    session.set_candidates(CandidateSet(candidates, suspicion, seconds, slices=frozenset(series.analysis.slices)))
    return session


def _bench_series(sr, model, repeat: int) -> float:
    from lungct_viewer.core.lung import lung_region
    from lungct_viewer.core.report import build_report

    vol = sr.volume
    spacing = vol.voxel_spacing_mm
    lung, lw, lc = _timed(repeat, lung_region, vol.hu, spacing)
    cs, cw, cc = _timed(repeat, _candidates, sr.analysis, vol.hu, lung, spacing)
    reading = model.second_reading
    susp, sw, _ = _timed(repeat, reading.score, cs) if reading else (None, 0.0, 0.0)
    session = _session(sr, model, cs, susp, cw)
    _, lsw, lsc = _timed(1, session.lesions)  # the first reading of these candidates
    base = session.params

    def moved() -> None:  # a slider moves: the lesions are read again at the new setting
        p = session.params
        session.set_params(p.with_(min_votes=p.min_votes + 1 if p == base else base.min_votes))
        session.lesions()

    _, aw, _ = _timed(repeat, moved)
    _, rw, _ = _timed(repeat, build_report, session)
    print(
        f"{sr.key:<26}{vol.num_slices:>7}  {lw:5.2f} / {lc:5.2f}  {cw:6.2f} / {cc:6.2f}  {len(cs):>4}  "
        f"{sw:9.4f}  {lsw:5.2f} / {lsc:4.2f}  {aw:7.2f}  {rw:9.3f}"
    )
    return lw + cw + sw + lsw + rw


def main() -> int:
    from lungct_viewer.core.model import MODEL_FILENAME, load_model
    from lungct_viewer.core.userdirs import default_data_dir
    from lungct_viewer.resources import MODEL_DIR
    from training.studies import analysed_series, discover_studies

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--model", type=Path, default=MODEL_DIR / MODEL_FILENAME)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if not a.data_dir.is_dir():
        print(f"no data at {a.data_dir}; set LUNGCT_DATA_DIR")
        return 1
    model = load_model(a.model)
    print(
        f"{'series':<26}{'slices':>7}  {'lung s':>12}  {'candidates s':>14}  {'n':>4}  {'second s':>9}  "
        f"{'lesions s':>10}  {'again s':>7}  {'report s':>9}   (wall / cpu, best of {a.repeat})"
    )
    totals = [
        _bench_series(sr, model, a.repeat)
        for spec in discover_studies(a.data_dir)
        for sr in analysed_series(spec, model, a.cache, log=lambda s: None)
    ]
    print(f"reading after the network: {min(totals):.2f}-{max(totals):.2f} s per series (wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
