"""The reading of one study end to end, with the candidates prepared beside the network or not.

    python benchmarks/bench_analyze.py [--study DIR] [--repeat 2]

``read_study`` (behind ``analyze``) computes the series' lung region and the objects under
each analysed slice's seeds on a thread while the network runs (``reading.analyse``). This
script reads one study (default LIDC-IDRI-0001 under ``$LUNGCT_DATA_DIR``, default
``../shared/data``) that way and with everything after the network, taking turns, and prints
per run: the network's seconds, the seconds from the network's end to the lesions and the
patient call (what a reader waits for after the last slice), and the total; then whether the
two readings found the same candidates. The machine is shared: compare within one run (the
ratios), not across runs. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _read(volume, engine, beside: bool):
    """``(network s, after the network s, total s), candidates`` of one reading."""
    from lungct_viewer.core.reading import analyse
    from lungct_viewer.core.session import ReadingSession

    model = engine.model
    session = ReadingSession(volume, model.card, model.second_reading)
    t0 = time.perf_counter()
    if beside:
        analyse(session, engine)
    else:
        session.set_analysis(engine.analyze(volume))
    t1 = time.perf_counter()
    cs = session.ensure_candidates()  # computes the lung region first when it is not there yet
    session.lesions()
    session.diagnosis()
    t2 = time.perf_counter()
    return (t1 - t0, t2 - t1, t2 - t0), cs.candidates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("LUNGCT_DATA_DIR", ROOT.parent / "shared" / "data"))
    ap.add_argument("--study", type=Path, default=data / "lidc-idri" / "LIDC-IDRI-0001")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each order (they take turns)")
    args = ap.parse_args()
    if not args.study.is_dir():
        print(f"no study at {args.study}; set LUNGCT_DATA_DIR or --study")
        return 0
    from lungct_viewer.core.dicom import load_study
    from lungct_viewer.core.model import load_model
    from lungct_viewer.core.pipeline import Analyzer, default_model_path

    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    volume, _ = load_study(args.study)
    engine = Analyzer(load_model(default_model_path()))
    engine.analyze_slice(volume, volume.num_slices // 2)  # warm the network up
    rows: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    found = {}
    for k in range(args.repeat):
        for beside in (k % 2 == 0, k % 2 == 1):
            r, found[beside] = _read(volume, engine, beside)
            rows[beside].append(r)
            name = "prepared beside the network" if beside else "all after the network     "
            print(f"{name}: network {r[0]:6.2f} s, after it {r[1]:5.2f} s, total {r[2]:6.2f} s")
    best = {b: [min(r[i] for r in rows[b]) for i in range(3)] for b in rows}
    print(f"{args.study.name}, {volume.num_slices} slices, best of {args.repeat}:")
    for i, what in enumerate(("network", "after the network", "total")):
        b, a = best[True][i], best[False][i]
        print(f"  {what:<18} beside {b:6.2f} s  after {a:6.2f} s  ratio {b / a:.2f}")
    same = [(c.core, c.box, c.features, len(c.seeds)) for c in found[True]] == [
        (c.core, c.box, c.features, len(c.seeds)) for c in found[False]
    ]
    print(f"  the same {len(found[True])} candidates both ways: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
