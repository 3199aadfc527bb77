"""The reading on the shared studies as another scanner might give them.

    python benchmarks/bench_robustness.py [--data-dir DIR] [--cache runs/cache]
        [--noise 40 80] [--sharpen 1] [--held-out] [--study NAME]

For the first series of each shared whole study, the whole reading (network, candidates,
second reading at the series' own operating point, patient call) on:

* the series as acquired;
* the series with added image noise of the given standard deviations (HU; white noise
  smoothed over about one pixel, as CT noise is correlated), as a lower-dose scan looks;
* the series through a sharper reconstruction kernel (in-plane unsharp masking: the image plus
  ``AMOUNT`` times its difference from a one-pixel Gaussian blur: edges overshoot and the noise
  grows, as a lung or bone kernel gives them);
* its thick-slab reconstructions (``training/slabs.py``: 5 and 7.5 mm; 4 and 8 mm for 2 mm
  series), as older scanners, PET/CT and archives give them.

Prints, per variant: candidates, false-positive findings (with their sizes in mm and texture:
so solid, gr ground glass, no not assessed), annotated nodules found (localised hits), the
patient call and the seconds.

By default the reading is the shipped one, which was fitted on these studies (and on their
reconstructions): a stability check, not a figure for new patients. With ``--held-out`` each
study is read by the second reading fitted without it, as ``python -m training
evaluate-studies`` fits its folds (about 6 more minutes on two cores with the network's output
cached): how the reading holds on a scanner, a kernel and a dose it was not fitted on. The
noisy and sharpened series never take part in fitting.
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


def _sharpened(volume, amount: float):
    from scipy import ndimage

    hu = volume.hu.astype(np.float32)
    hu += amount * (hu - ndimage.gaussian_filter(hu, (0, 1.0, 1.0)))
    return dataclasses.replace(volume, hu=np.clip(np.rint(hu), -1024, 3071).astype(np.int16))


def _groups(series) -> list[list]:
    """Each study's first acquired series followed by its thick-slab reconstructions, from
    series in :func:`training.studies.analysed_series` order (a series, then its slabs)."""
    groups: dict[str, list] = {}
    current = None
    for sr in series:
        name = sr.spec.name
        if not sr.derived:
            current = name if name not in groups else None
            if current:
                groups[name] = [sr]
        elif current == name:
            groups[name].append(sr)
    return list(groups.values())


def _first_group(series) -> list:
    """The first acquired series and its slabs, without reading the study's other series."""
    group = []
    for sr in series:
        if group and not sr.derived:
            break
        group.append(sr)
    return group


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
    ap.add_argument("--sharpen", type=float, nargs="*", default=[1.0], help="unsharp-masking amounts")
    ap.add_argument("--held-out", action="store_true", help="read each study with the second reading fitted without it")
    ap.add_argument("--study", action="append", default=None, help="only this study (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    model_path = MODEL_DIR / MODEL_FILENAME
    loaded = load_model(model_path)
    analyzer = Analyzer(loaded)
    specs = discover_studies(data_dir)
    if args.study and not args.held_out:
        specs = [s for s in specs if s.name in args.study]
    if args.held_out:
        from training.evaluate_studies import collect_examples, fit_folds
        from training.second_reading import PASTES_PER_HOST, crop_files

        print("fitting the second reading without each study in turn ...", flush=True)
        crops = crop_files(Path(data_dir) / "lidc-nodules", {s.name for s in specs})
        ex = collect_examples(
            specs,
            loaded,
            args.cache,
            crops,
            np.random.default_rng(1234),
            PASTES_PER_HOST,
            lambda s: None,
            slabs_mm=SLAB_TARGETS_MM,
        )
        folds = fit_folds(specs, ex.series, ex.real, ex.pasted)
        readings = {name: fold.reading for name, fold in folds.items()}
        groups = _groups(ex.series)
    else:
        shipped = load_second_reading(model_path)
        readings = {s.name: shipped for s in specs}
        groups = [
            _first_group(analysed_series(spec, loaded, args.cache, log=lambda s: None, slabs_mm=SLAB_TARGETS_MM))
            for spec in specs
        ]
    rng = np.random.default_rng(args.seed)
    print(f"second reading: {'fitted without the study read (held out)' if args.held_out else 'shipped (in-sample)'}")
    if args.study:
        groups = [g for g in groups if g[0].spec.name in args.study]
    print("study            variant          candidates  FP  (sizes mm, texture)    nodules  call           s")
    for group in groups:
        series = group[0]
        spec = series.spec
        variants = [("as acquired", series)]
        for sigma in args.noise:
            vol = _noisy(series.volume, sigma, rng)
            variants.append((f"noise {sigma:g} HU", dataclasses.replace(series, volume=vol, analysis=None)))
        for amount in args.sharpen:
            vol = _sharpened(series.volume, amount)
            variants.append((f"sharper x{amount:g}", dataclasses.replace(series, volume=vol, analysis=None)))
        variants += [(f"{sr.volume.slice_spacing_mm:g} mm slabs", sr) for sr in group[1:]]
        for name, sr in variants:
            t0 = time.perf_counter()
            analysis = sr.analysis if sr.analysis is not None else analyzer.analyze(sr.volume)
            sr = dataclasses.replace(sr, analysis=analysis)
            session = ReadingSession(sr.volume, loaded.card, readings[spec.name])
            session.set_analysis(analysis)
            findings = session.findings()
            hits = [lesion_hits(les, sr)[0] for les in findings]
            fps = [les for les, h in zip(findings, hits) if not h]
            found = {n for h in hits for n in h}
            sizes = ", ".join(f"{les.diameter_mm:.1f} {les.texture.value[:2]}" for les in fps)
            print(
                f"{spec.name:<16} {name:<16} {len(session.lesions()):>10} {len(fps):>3}  ({sizes:<20}) "
                f"{len(found)}/{len(sr.truth.nodules):<6} {session.diagnosis().label.value:<14} "
                f"{time.perf_counter() - t0:>5.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
