"""The reading after the network, per study: lung region, candidates, second reading, lesions.

    python benchmarks/bench_reading.py [--data-dir DIR] [--cache runs/cache] [--repeat 3]

For each shared whole study (the network's output is computed once and cached), times in
one run: the lung region, the candidates (seeds, cores, objects, features), the second
reading's scores, the lesions at the model's settings (votes, findings) and report.json.
Wall and CPU seconds are printed (the machine is shared: compare within one run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(fn, repeat: int):
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return out, best_wall, best_cpu


def main() -> int:
    from lungct_viewer.core.candidates import build_candidates, find_seeds, logit
    from lungct_viewer.core.constants import CANDIDATE_MIN_ROI_PROBABILITY
    from lungct_viewer.core.lung import lung_region
    from lungct_viewer.core.model import MODEL_FILENAME, load_model
    from lungct_viewer.core.report import build_report
    from lungct_viewer.core.session import CandidateSet, ReadingSession
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
    print(f"{'series':<26}{'slices':>7}  {'lung s':>12}  {'candidates s':>14}  {'n':>4}  {'second s':>9}  "
          f"{'lesions s':>10}  {'report s':>9}   (wall / cpu, best of {a.repeat})")
    totals = []
    for spec in discover_studies(a.data_dir):
        for sr in analysed_series(spec, model, a.cache, log=lambda s: None):
            vol = sr.volume
            spacing = (vol.slice_spacing_mm or 1.0, *vol.pixel_spacing_mm)
            lung, lw, lc = _timed(lambda: lung_region(vol.hu, vol.pixel_spacing_mm), a.repeat)

            def cands():
                seeds = [s for i in sorted(sr.analysis.slices)
                         for s in find_seeds(sr.analysis.slices[i], logit(CANDIDATE_MIN_ROI_PROBABILITY))]
                return build_candidates(seeds, vol.hu, lung, spacing)

            cs, cw, cc = _timed(cands, a.repeat)
            reading = model.second_reading
            susp, sw, sc = _timed(lambda: reading.score(cs) if reading else None, a.repeat)
            session = ReadingSession(vol, model.card, reading)
            session.set_analysis(sr.analysis)
            session.set_candidates(CandidateSet(cs, susp, cw, slices=frozenset(sr.analysis.slices)))

            def lesions():
                session._lesions = None
                return session.lesions()

            _, lsw, lsc = _timed(lesions, a.repeat)
            _, rw, rc = _timed(lambda: build_report(session), a.repeat)
            totals.append(lw + cw + sw + lsw + rw)
            print(f"{sr.key:<26}{vol.num_slices:>7}  {lw:5.2f} / {lc:5.2f}  {cw:6.2f} / {cc:6.2f}  {len(cs):>4}  "
                  f"{sw:9.4f}  {lsw:5.2f} / {lsc:4.2f}  {rw:9.3f}")
    print(f"reading after the network: {min(totals):.2f}-{max(totals):.2f} s per series (wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
