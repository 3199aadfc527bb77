"""GPU check: time per slice of the GPU plan, and its exactness against the CPU.

Run on a machine with an NVIDIA GPU, after ``pip install -e ".[gpu]"``::

    python benchmarks/gpu_check.py [--study DIR] [--model PATH] [--slices N] [--allow-cpu]

It analyses a study (LIDC-IDRI-0001 from ``$LUNGCT_DATA_DIR``, default ``../shared/data``;
a 64-slice phantom when absent) with the CPU plan on the CPU, then with the GPU plan on the
GPU for several batch sizes, with and without XLA, and prints for each: seconds per slice
(first run, which includes kernel tuning and compilation, and a second run), and the largest
difference to the CPU result (logits and probabilities, in-field patches; the fields must be
identical). Patch-by-patch classification on the CPU checks a sample of in-field patches of
two slices. Exit status: 0 when every difference is at most 1e-4, 1 otherwise, 2 when there
is no GPU (``--allow-cpu`` runs the GPU plan on the CPU instead: a dry run of the script).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

TOL = 1e-4


def _study(arg: str | None):
    from lungct_viewer.core.dicom import load_study

    if arg:
        return load_study(Path(arg))[0]
    data = Path(os.environ.get("LUNGCT_DATA_DIR", ROOT.parent / "shared" / "data"))
    lidc = data / "lidc-idri" / "LIDC-IDRI-0001"
    if lidc.exists():
        return load_study(lidc)[0]
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    print("(no shared data: using a 64-slice phantom)")
    out = Path(tempfile.mkdtemp(prefix="lungct-gpu-check-"))
    return load_study(write_phantom_dicom(phantom_volume(seed=0, n_slices=64, size=512), out / "phantom"))[0]


def _model(arg: str | None):
    from lungct_viewer.core.model import LoadedModel, ModelCard, build_model, load_model
    from lungct_viewer.core.pipeline import default_model_path

    path = Path(arg) if arg else default_model_path()
    if path.is_file():
        return load_model(path)
    print(f"(no model at {path}: using random weights)")
    return LoadedModel(build_model(seed=0), ModelCard(version="random"), "random")


def _diff(res, ref) -> tuple[float, float, bool]:
    """Largest in-field |logit| and |probability| differences, and whether fields agree."""
    dl = dp = 0.0
    same = True
    for i, a in res.slices.items():
        b = ref.slices[i]
        same &= bool(np.array_equal(a.in_field, b.in_field))
        f = a.in_field & b.in_field
        if f.any():
            dl = max(dl, float(np.abs(a.logits[f] - b.logits[f]).max()))
            dp = max(dp, float(np.abs(a.probs[f] - b.probs[f]).max()))
    return dl, dp, same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study")
    ap.add_argument("--model")
    ap.add_argument("--slices", type=int, default=0, help="analyse only the first N slices (0: all)")
    ap.add_argument("--batches", default="8,16,32", help="GPU slices per call to try")
    ap.add_argument("--allow-cpu", action="store_true", help="without a GPU, run the GPU plan on the CPU")
    args = ap.parse_args()

    from lungct_viewer.core.model import configure_tensorflow

    configure_tensorflow()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.allow_cpu:
        print("no GPU visible to TensorFlow (is tensorflow[and-cuda] installed?); --allow-cpu for a dry run")
        return 2
    for g in gpus:
        details = tf.config.experimental.get_device_details(g)
        print(
            f"GPU: {g.name} {details.get('device_name', '')} "
            f"compute capability {details.get('compute_capability', '?')}"
        )
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs")

    from lungct_viewer.core.inference import classify_patches_reference
    from lungct_viewer.core.pipeline import Analyzer
    from lungct_viewer.core.preprocessing import prepare_slice

    model = _model(args.model)
    vol = _study(args.study)
    order = list(range(vol.num_slices if args.slices <= 0 else min(args.slices, vol.num_slices)))
    n = len(order)
    print(f"study: {vol.series_uid} ({vol.num_slices} slices, analysing {n}); model {model.version}")

    cpu = Analyzer(model, device="CPU")
    t = time.perf_counter()
    ref = cpu.analyze(vol, order=order)
    cpu_s = time.perf_counter() - t
    print(f"CPU plan on the CPU: {cpu_s / n:.3f} s/slice ({ref.skipped_fraction:.0%} of patches outside the field)")

    ok = True
    # patch by patch on the CPU, a sample of in-field cells of two slices
    rng = np.random.default_rng(0)
    for i in (order[len(order) // 2], order[(2 * len(order)) // 3]):
        sa = ref.slices[i]
        cells = np.zeros_like(sa.in_field)
        field = np.flatnonzero(sa.in_field)
        if field.size == 0:
            continue
        cells.flat[rng.choice(field, min(200, field.size), replace=False)] = True
        img = prepare_slice(vol.hu[i], vol.pixel_spacing_mm).image
        with tf.device("/CPU:0"):
            rp = classify_patches_reference(model.keras_model, img, where=cells)
            rl = classify_patches_reference(model.keras_model, img, logits=True, where=cells)
        dl = float(np.abs(sa.logits[cells] - rl[cells]).max())
        dp = float(np.abs(sa.probs[cells] - rp[cells]).max())
        ok &= dl <= TOL and dp <= TOL
        print(
            f"CPU plan vs patch by patch, slice {i} ({int(cells.sum())} patches): "
            f"max |logits| diff {dl:.1e}, max |probs| diff {dp:.1e}"
        )

    best = None
    for jit in (False, True):
        for b in [int(x) for x in args.batches.split(",") if x]:
            try:
                an = Analyzer(model, device="GPU", batch_slices=b, jit_compile=jit)
                t = time.perf_counter()
                first = an.analyze(vol, order=order)
                cold = time.perf_counter() - t
                t = time.perf_counter()
                res = an.analyze(vol, order=order)
                warm = time.perf_counter() - t
            except Exception as exc:  # report and go on with the other settings
                print(f"GPU plan, {b} slices per call, XLA {jit}: failed: {type(exc).__name__}: {exc}")
                ok = False
                continue
            dl, dp, same = _diff(res, ref)
            dl1, dp1, same1 = _diff(first, ref)
            good = max(dl, dl1) <= TOL and max(dp, dp1) <= TOL and same and same1
            ok &= good
            print(
                f"GPU plan on {an.device}, {b} slices per call, XLA {jit}: first run {cold / n:.4f} s/slice, "
                f"second run {warm / n:.4f} s/slice ({n / warm:.0f} slices/s); vs CPU: max |logits| diff "
                f"{max(dl, dl1):.1e}, max |probs| diff {max(dp, dp1):.1e}, same fields {same and same1}"
                f"{'' if good else '  <-- NOT EXACT'}",
                flush=True,
            )
            if best is None or warm < best[0]:
                best = (warm, b, jit)
    if best is not None:
        print(
            f"fastest: {best[1]} slices per call, XLA {best[2]}: {best[0] / n:.4f} s/slice "
            f"({cpu_s / best[0]:.1f}x the CPU plan on this machine's CPU)"
        )
    print("RESULT:", "exact within 1e-4" if ok else "NOT exact (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
