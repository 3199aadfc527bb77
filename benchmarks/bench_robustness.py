"""The shipped reading on the shared studies as another scanner might give them.

    python benchmarks/bench_robustness.py [--data-dir DIR] [--cache runs/cache] [--noise 40 80]

For the first series of each shared whole study, the whole reading (network, candidates,
second reading at the series' own operating point, patient call) on:

* the series as acquired;
* the series with added image noise of the given standard deviations (HU; white noise
  smoothed over about one pixel, as CT noise is correlated), as a lower-dose scan looks;
* its thick-slab reconstructions (``training/slabs.py``: 5 and 7.5 mm; 4 and 8 mm for 2 mm
  series), as older scanners, PET/CT and archives give them.

Prints, per variant: candidates, false-positive findings (with their sizes), annotated nodules
found (localised hits), the patient call and the seconds. The shipped second reading was
fitted on these studies (and on their reconstructions), so this says how stable the reading
is, not how it does on new patients: ``python -m training evaluate-studies`` gives the
leave-one-study-out figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _noisy(volume, sigma_hu: float, rng):
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, volume.hu.shape).astype(np.float32), (0, 0.8, 0.8))
    noise *= sigma_hu / max(float(noise.std()), 1e-6)
    return dataclasses.replace(volume, hu=np.clip(volume.hu + noise, -1024, 3071).astype(np.int16))


def main(argv: list[str] | None = None) -> int:
    from lungct_viewer.core.model import MODEL_FILENAME, load_model
    from lungct_viewer.core.pipeline import Analyzer
    from lungct_viewer.core.second_reading import load_second_reading
    from lungct_viewer.core.session import ReadingSession
    from lungct_viewer.core.userdirs import default_data_dir
    from lungct_viewer.resources import MODEL_DIR
    from training.second_reading import lesion_hits
    from training.slabs import SLAB_TARGETS_MM
    from training.studies import analysed_series, discover_studies

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--noise", type=float, nargs="*", default=[40.0, 80.0], help="noise standard deviations, HU")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model_path = MODEL_DIR / MODEL_FILENAME
    loaded = load_model(model_path)
    reading = load_second_reading(model_path)
    analyzer = Analyzer(loaded)
    rng = np.random.default_rng(args.seed)
    print("study            variant          candidates  FP  (sizes mm)         nodules  call           s")
    for spec in discover_studies(args.data_dir or default_data_dir()):
        # the first series and its thick-slab reconstructions (cached like the series)
        group = []
        for sr in analysed_series(spec, loaded, args.cache, log=lambda s: None, slabs_mm=SLAB_TARGETS_MM):
            if group and not sr.derived:
                break
            group.append(sr)
        series = group[0]
        variants = [("as acquired", series)]
        for sigma in args.noise:
            vol = _noisy(series.volume, sigma, rng)
            variants.append((f"noise {sigma:g} HU", dataclasses.replace(series, volume=vol, analysis=None)))
        variants += [(f"{sr.volume.slice_spacing_mm:g} mm slabs", sr) for sr in group[1:]]
        for name, sr in variants:
            t0 = time.perf_counter()
            analysis = sr.analysis if sr.analysis is not None else analyzer.analyze(sr.volume)
            sr = dataclasses.replace(sr, analysis=analysis)
            session = ReadingSession(sr.volume, loaded.card, reading)
            session.set_analysis(analysis)
            findings = session.findings()
            hits = [lesion_hits(les, sr)[0] for les in findings]
            fps = [les for les, h in zip(findings, hits) if not h]
            found = {n for h in hits for n in h}
            sizes = ", ".join(f"{les.diameter_mm:.1f}" for les in fps)
            print(
                f"{spec.name:<16} {name:<16} {len(session.lesions()):>10} {len(fps):>3}  ({sizes:<16}) "
                f"{len(found)}/{len(sr.truth.nodules):<6} {session.diagnosis().label.value:<14} "
                f"{time.perf_counter() - t0:>5.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
