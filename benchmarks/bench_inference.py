"""Inference benchmark: the current pipeline against the previous one, in one run.

Prints figures; asserts nothing. For each study (by default the five shared whole studies under
``$LUNGCT_DATA_DIR``, default ``../shared/data``; a phantom when none is present) it loads the
series, runs the current :class:`~lungct_viewer.core.pipeline.Analyzer` and the previous
per-box pipeline (``previous_pipeline.py``) in alternating order, and reports wall-clock and
process CPU seconds per slice, their ratios, and the largest difference between the two.
Then: LIDC-IDRI-0001 end to end (study load + model load + inference, as the ``analyze``
command does it), exactness against patch-by-patch classification on real slices, and the
memory of a whole synthetic 300-slice study in a fresh process.

Wall-clock figures depend on what else the machine runs (the load average is printed);
the CPU seconds and the ratios are the steadier figures. The two pipelines take turns every
``--chunk`` slices (8), so that both meet the same machine.

    python benchmarks/bench_inference.py [--model PATH] [--study DIR ...] [--no-previous]
                                         [--chunk N] [--memory-slices N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

DEFAULT_STUDIES = (
    "lidc-idri/LIDC-IDRI-0001",
    "lidc-idri/LIDC-IDRI-0005",
    "lung-pet-ct-dx/Lung_Dx-A0001",
    "covid-ct-md/normal002",
    "covid-ct-md/P001",
)


def data_dir() -> Path:
    return Path(os.environ.get("LUNGCT_DATA_DIR", ROOT.parent / "shared" / "data"))


def _studies(args) -> list[Path]:
    if args.study:
        return [Path(s) for s in args.study]
    found = [data_dir() / s for s in DEFAULT_STUDIES if (data_dir() / s).exists()]
    if found:
        return found
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    out = Path(tempfile.mkdtemp(prefix="lungct-bench-"))
    print("(no shared data: using a 40-slice phantom)")
    return [write_phantom_dicom(phantom_volume(seed=0, n_slices=40, size=512), out / "phantom")]


def _model(arg: str | None):
    from lungct_viewer.core.model import LoadedModel, ModelCard, build_model, load_model
    from lungct_viewer.core.pipeline import default_model_path

    path = Path(arg) if arg else default_model_path()
    if path.is_file():
        return load_model(path)
    print(f"(no model at {path}: using random weights)")
    return LoadedModel(build_model(seed=0), ModelCard(version="random"), "random")


def _rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process, MB (Linux)."""
    cur = peak = float("nan")
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return cur, peak


def _interleaved(analyzers: dict, volume, chunk: int, flip: bool = False) -> dict:
    """Run every analyzer over every slice, taking turns every ``chunk`` slices (alternating who
    goes first). Returns ``{name: (StudyAnalysis of all slices, wall s, process CPU s)}``."""
    out = {}
    names = list(analyzers)
    for c, start in enumerate(range(0, volume.num_slices, max(1, chunk))):
        order = list(range(start, min(start + max(1, chunk), volume.num_slices)))
        for name in names if (c + flip) % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            res = analyzers[name].analyze(volume, order=order)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if name not in out:
                out[name] = [res, 0.0, 0.0]
            else:
                out[name][0].slices.update(res.slices)
            out[name][1] += wall
            out[name][2] += cpu
    return {k: tuple(v) for k, v in out.items()}


def _largest_difference(a, b) -> tuple[float, bool]:
    """Largest |probability difference| inside the field, and whether the fields agree."""
    worst, same = 0.0, True
    for i, sa in a.slices.items():
        sb = b.slices[i]
        same &= bool(np.array_equal(sa.in_field, sb.in_field))
        f = sa.in_field & sb.in_field
        if f.any():
            worst = max(worst, float(np.abs(sa.probs[f] - sb.probs[f]).max()))
    return worst, same


def run_memory(n_slices: int, model_arg: str | None) -> int:
    """Analyse a synthetic ``n_slices`` study (real slices repeated when the data is present,
    a phantom otherwise) in this process and print resident memory."""
    from lungct_viewer.core.study import CTVolume

    model = _model(model_arg)
    lidc = data_dir() / DEFAULT_STUDIES[0]
    if lidc.exists():
        from lungct_viewer.core.dicom import load_study

        src, _ = load_study(lidc)
        hu = np.concatenate([src.hu] * (n_slices // src.num_slices + 1))[:n_slices]
        vol = CTVolume.from_array(hu, src.pixel_spacing_mm, description=f"LIDC-IDRI-0001 repeated to {n_slices}")
        del src
    else:
        from lungct_viewer.core.phantom import phantom_volume

        vol = phantom_volume(seed=0, n_slices=n_slices, size=512).volume
    from lungct_viewer.core.pipeline import Analyzer

    analyzer = Analyzer(model)
    before, _ = _rss_mb()
    res = analyzer.analyze(vol)
    after, peak = _rss_mb()
    held = sum(s.probs.nbytes + s.logits.nbytes + s.in_field.nbytes for s in res.slices.values())
    print(
        f"memory, synthetic {n_slices}-slice study ({vol.description}; volume {vol.hu.nbytes / 2**20:.0f} MB): "
        f"RSS {before:.0f} MB with model and volume loaded, {after:.0f} MB with results for all "
        f"{len(res.slices)} slices (results {held / 2**20:.1f} MB), peak {peak:.0f} MB; "
        f"inference {res.inference_s:.1f} s"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", action="append", help="a study folder (repeatable); default: the five shared studies")
    ap.add_argument("--model")
    ap.add_argument("--no-previous", action="store_true", help="skip the previous pipeline")
    ap.add_argument("--chunk", type=int, default=8, help="slices per turn when the pipelines take turns")
    ap.add_argument("--memory-slices", type=int, default=300, help="slices of the synthetic study (0: skip)")
    ap.add_argument("--memory-only", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_only:
        return run_memory(args.memory_only, args.model)

    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    model = _model(args.model)
    model_s = time.perf_counter() - t0
    from lungct_viewer.core.dicom import load_study
    from lungct_viewer.core.pipeline import Analyzer

    new = Analyzer(model)
    print(f"model load {model_s:.2f} s (TensorFlow import included); current plan: {new.plan}")
    previous = None
    if not args.no_previous:
        import previous_pipeline

        previous = previous_pipeline.Analyzer(model)
    rows = []
    for k, study in enumerate(_studies(args)):
        t = time.perf_counter()
        vol, _ = load_study(study)
        load_s = time.perf_counter() - t
        analyzers = {"current": new} if previous is None else {"current": new, "previous": previous}
        runs = _interleaved(analyzers, vol, args.chunk, flip=bool(k % 2))
        res, wall, cpu = runs["current"]
        n = vol.num_slices
        row = {"study": study.name, "n": n, "load": load_s, "wall": wall, "cpu": cpu}
        line = (
            f"{study.name}: {n} slices, load {load_s:.2f} s, {res.skipped_fraction:.0%} of patches outside "
            f"the field; current {wall / n:.3f} s/slice (CPU {cpu / n:.3f}, {cpu / wall:.2f} cores busy)"
        )
        if previous is not None:
            pres, pwall, pcpu = runs["previous"]
            diff, same = _largest_difference(res, pres)
            row.update(pwall=pwall, pcpu=pcpu)
            line += (
                f"; previous {pwall / n:.3f} s/slice (CPU {pcpu / n:.3f}); "
                f"speed-up {pwall / wall:.2f}x wall, {pcpu / cpu:.2f}x CPU; "
                f"max |current - previous| {diff:.1e}, same field: {same}"
            )
        print(line, flush=True)
        rows.append(row)
        if k == 0:
            first_study = (study, vol, load_s, res)
    n = sum(r["n"] for r in rows)
    wall = sum(r["wall"] for r in rows)
    cpu = sum(r["cpu"] for r in rows)
    mean_line = (
        f"mean over {len(rows)} studies ({n} slices): current {wall / n:.3f} s/slice "
        f"(CPU {cpu / n:.3f}); per-study mean {np.mean([r['wall'] / r['n'] for r in rows]):.3f} s/slice"
    )
    if previous is not None:
        pwall = sum(r["pwall"] for r in rows)
        pcpu = sum(r["pcpu"] for r in rows)
        mean_line += (
            f"; previous {pwall / n:.3f} s/slice (CPU {pcpu / n:.3f}); "
            f"speed-up {pwall / wall:.2f}x wall, {pcpu / cpu:.2f}x CPU"
        )
    print(mean_line)

    # the first study end to end, as `analyze` does it: load the study, load the model, infer
    study, vol, load_s, res = first_study
    r0 = rows[0]
    line = (
        f"{study.name} end to end: study load {load_s:.2f} s + model load {model_s:.2f} s + inference "
        f"{r0['wall']:.2f} s (CPU {r0['cpu']:.2f} s) = {load_s + model_s + r0['wall']:.2f} s (current)"
    )
    if previous is not None:
        line += f", {load_s + model_s + r0['pwall']:.2f} s (previous)"
    print(line)

    # the current slice's first result with a fresh analyzer, without and with warm_up()
    mid = vol.num_slices // 2
    t = time.perf_counter()
    Analyzer(model).analyze_slice(vol, mid)
    cold = time.perf_counter() - t
    warm_an = Analyzer(model)
    t = time.perf_counter()
    warm_an.warm_up()
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    warm_an.analyze_slice(vol, mid + 1)
    print(
        f"first result on the current slice with a new Analyzer: {cold:.2f} s; after warm_up() "
        f"({warm_s:.2f} s, e.g. while the model loads) {time.perf_counter() - t:.2f} s"
    )

    # exactness against patch-by-patch classification, on in-field cells of real slices
    from lungct_viewer.core.detection import roi_probability
    from lungct_viewer.core.inference import classify_patches_reference
    from lungct_viewer.core.preprocessing import prepare_slice

    for i in (vol.num_slices // 2, int(vol.num_slices * 0.7)):
        sa = res.slices[i]
        img = prepare_slice(vol.hu[i], vol.pixel_spacing_mm).image
        f = sa.in_field
        t = time.perf_counter()
        rp = classify_patches_reference(model.keras_model, img, where=f)
        rl = classify_patches_reference(model.keras_model, img, logits=True, where=f)
        ref_s = time.perf_counter() - t
        p_roi = roi_probability(sa.probs)
        print(
            f"exactness, {study.name} slice {i} ({int(f.sum())} in-field patches): max |logits - reference| "
            f"{np.abs(sa.logits[f] - rl[f]).max():.1e}, "
            f"max |probs - reference| {np.abs(sa.probs[f] - rp[f]).max():.1e} "
            f"(reference {ref_s:.1f} s for these patches); "
            f"logits range {sa.logits[f].min():.1f}..{sa.logits[f].max():.1f}, "
            f"{int((p_roi[f] == 1.0).sum())} patches with P(ROI) = 1.0 in float32, "
            f"ROI logit {sa.roi_logit[f].min():.1f}..{sa.roi_logit[f].max():.1f}"
        )
    print(f"load average at end {os.getloadavg()[0]:.1f}", flush=True)

    if args.memory_slices > 0:
        cmd = [sys.executable, __file__, "--memory-only", str(args.memory_slices)]
        if args.model:
            cmd += ["--model", args.model]
        subprocess.run(cmd, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
