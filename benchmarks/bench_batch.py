"""Cohort batch throughput: the same studies read with 1 worker (in process) and with N local
Dask workers, each run as the command a user types (start-up included).

    .venv/bin/python benchmarks/bench_batch.py                  # 6 phantom studies, 1 vs 2 workers
    .venv/bin/python benchmarks/bench_batch.py --studies 10 --slices 32 --size 384
    .venv/bin/python benchmarks/bench_batch.py --real           # the shared real studies (depth 2)

Prints the wall time of each run, studies per minute, the ratio, and the median seconds per
study on its worker (the steady state, without start-up). Figures, not asserts. On a 2-core
machine two workers share the same two cores that one worker's TensorFlow already uses, and
each worker process pays its own TensorFlow start and model load, so expect little or no gain.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_cohort(root: Path, studies: int, slices: int, size: int) -> None:
    from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

    for k in range(studies):
        write_phantom_dicom(phantom_volume(seed=100 + k, n_slices=slices, size=size), root / f"patient-{k:03d}")


def run(root: Path, out: Path, workers: int, depth: int, model: str | None) -> tuple[float, list[dict]]:
    cmd = [
        sys.executable,
        "-m",
        "lungct_viewer",
        "batch",
        str(root),
        "--out",
        str(out),
        "-q",
        "--workers",
        str(workers),
        "--depth",
        str(depth),
    ]
    if model:
        cmd += ["--model", model]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"batch failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}")
    with open(out / "cohort.csv", newline="") as fh:
        return wall, list(csv.DictReader(fh))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=6)
    p.add_argument("--slices", type=int, default=24)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2, help="workers of the parallel run (default 2)")
    p.add_argument("--real", action="store_true", help="the shared real studies instead of phantoms")
    p.add_argument("--model", help="model file (default: the shipped model)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp_path = Path(tmp)
        if args.real:
            from lungct_viewer.core.userdirs import default_data_dir

            root, depth = default_data_dir(), 2
            if not root.is_dir():
                raise SystemExit(f"the shared data are not at {root} (set LUNGCT_DATA_DIR)")
            what = f"the shared real data ({root}, patient folders 2 levels down)"
        else:
            root, depth = tmp_path / "cohort", 1
            make_cohort(root, args.studies, args.slices, args.size)
            what = f"{args.studies} phantom studies of {args.slices} slices of {args.size} x {args.size} px"
        print(f"cohort: {what}; {os.cpu_count()} CPU core(s)")
        results = {}
        for workers in (1, args.workers):
            wall, rows = run(root, tmp_path / f"out-{workers}", workers, depth, args.model)
            ok = [r for r in rows if r["status"] == "ok"]
            per_study = statistics.median(float(r["total_s"]) for r in ok) if ok else float("nan")
            results[workers] = (wall, len(ok))
            print(
                f"{workers} worker(s): {wall:6.1f} s wall for {len(ok)} studies read "
                f"({len(rows) - len(ok)} other rows) = {60 * len(ok) / wall:5.1f} studies/min; "
                f"median {per_study:.1f} s per study on its worker"
            )
        (w1, n1), (wn, nn) = results[1], results[args.workers]
        if n1 and nn:
            print(f"speed-up with {args.workers} workers: {(nn / wn) / (n1 / w1):.2f}x (studies/min ratio)")


if __name__ == "__main__":
    main()
