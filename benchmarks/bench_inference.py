"""Inference benchmark: reference vs dense per slice, and a whole-study analysis.

Prints figures; asserts nothing. Uses LIDC-IDRI-0001 from ``$LUNGCT_DATA_DIR`` (default
``../shared/data``) when present, a phantom otherwise. Uses the shipped model when installed,
random weights otherwise (timing does not depend on the weights).

    python benchmarks/bench_inference.py [--study DIR] [--model PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from lungct_viewer.core.detection import all_findings, detect_study  # noqa: E402
from lungct_viewer.core.dicom import load_study  # noqa: E402
from lungct_viewer.core.inference import DenseClassifier, classify_patches_reference  # noqa: E402
from lungct_viewer.core.model import LoadedModel, ModelCard, build_model, load_model  # noqa: E402
from lungct_viewer.core.pipeline import Analyzer, default_model_path  # noqa: E402
from lungct_viewer.core.preprocessing import prepare_slice  # noqa: E402
from lungct_viewer.core.voting import diagnose  # noqa: E402


def _study_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    data = Path(os.environ.get("LUNGCT_DATA_DIR", ROOT.parent / "shared" / "data"))
    lidc = data / "lidc-idri" / "LIDC-IDRI-0001"
    if lidc.exists():
        return lidc
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    out = Path(tempfile.mkdtemp(prefix="lungct-bench-"))
    return write_phantom_dicom(phantom_volume(seed=0, n_slices=40, size=512), out / "phantom")


def _model(arg: str | None) -> LoadedModel:
    path = Path(arg) if arg else default_model_path()
    if path.is_file():
        return load_model(path)
    print(f"(no model at {path}: using random weights)")
    return LoadedModel(build_model(seed=0), ModelCard(version="random"), "random")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study")
    ap.add_argument("--model")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    study = _study_dir(args.study)
    model = _model(args.model)

    t0 = time.perf_counter()
    vol, _ = load_study(study)
    load_s = time.perf_counter() - t0
    mid = vol.num_slices // 2
    img = prepare_slice(vol.hu[mid], vol.pixel_spacing_mm).image
    dense = DenseClassifier(model.keras_model)
    dense.predict(img)  # trace once
    classify_patches_reference(model.keras_model, img[:100, :100])
    td, tr = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        d = dense.predict(img)
        td.append(time.perf_counter() - t)
        t = time.perf_counter()
        r = classify_patches_reference(model.keras_model, img)
        tr.append(time.perf_counter() - t)
    d_s, r_s = statistics.median(td), statistics.median(tr)
    print(f"study: {study} ({vol.num_slices} slices, {vol.hu.shape[1]}x{vol.hu.shape[2]})")
    print(f"slice {mid}: grid {d.shape[0]}x{d.shape[1]} patches, max |dense - reference| = {np.abs(d - r).max():.2e}")
    print(f"per slice, full field: reference {r_s:.3f} s, dense {d_s:.3f} s, ratio {r_s / d_s:.1f}x")

    # whole study, end to end (load + model + analysis + detection + vote)
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    vol, _ = load_study(study)
    load2 = time.perf_counter() - t0
    analyzer = Analyzer(model)
    analyzer.analyze_slice(vol, mid)  # warm-up trace, as the viewer's first slice does
    t0 = time.perf_counter()
    res = analyzer.analyze(vol)
    infer = time.perf_counter() - t0
    dets = detect_study(res, vol, model.detection_params())
    diag = diagnose(all_findings(dets), model.voting_threshold)
    total = time.perf_counter() - t_all
    print(f"whole study: load {load2:.2f} s (first load {load_s:.2f} s), inference {infer:.2f} s "
          f"({infer / vol.num_slices * 1000:.0f} ms/slice, "
          f"{res.skipped_fraction:.0%} of patches outside the lung field), "
          f"end to end {total:.2f} s on {res.device}; diagnosis {diag.label}, {diag.n_findings} findings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
