"""Time scanning + loading a CT study (headers first, then parallel decode).

Usage::

    python benchmarks/bench_load.py [--repeat N] [folder]

Without a folder it loads LIDC-IDRI-0001 from ``$LUNGCT_DATA_DIR`` (default
``../shared/data`` beside the repository); when that is absent it writes a 133-slice
512 x 512 phantom into a temporary folder and loads that instead. Prints the median time
of scan, load and both. The first run also warms the file cache and is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lungct_viewer.core.dicom import load_series, scan_folder  # noqa: E402


def data_dir() -> Path:
    env = os.environ.get("LUNGCT_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def time_once(folder: Path) -> tuple[float, float, tuple[int, ...]]:
    t0 = time.perf_counter()
    scan = scan_folder(folder)
    t1 = time.perf_counter()
    vol = load_series(scan.default_series())
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, vol.shape


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)

    tmp = None
    folder = args.folder
    if folder is None:
        folder = data_dir() / "lidc-idri" / "LIDC-IDRI-0001"
        if not folder.exists():
            from lungct_viewer.core.phantom import phantom_volume, write_phantom_dicom

            tmp = tempfile.TemporaryDirectory(prefix="lungct-bench-")
            print(f"{folder} not found; using a 133-slice phantom instead")
            folder = write_phantom_dicom(phantom_volume(seed=0, n_slices=133, size=512), Path(tmp.name) / "phantom")
    try:
        scan0, load0, shape = time_once(folder)
        print(f"study: {folder.name}  volume {shape}  cpus {os.cpu_count()}")
        print(f"first run (cold cache possible): scan {scan0:.3f} s  load {load0:.3f} s")
        runs = [time_once(folder) for _ in range(max(1, args.repeat))]
        scans = [r[0] for r in runs]
        loads = [r[1] for r in runs]
        totals = [a + b for a, b in zip(scans, loads, strict=True)]
        print(
            f"median of {len(runs)}: scan {statistics.median(scans):.3f} s  "
            f"load {statistics.median(loads):.3f} s  total {statistics.median(totals):.3f} s  "
            f"(min total {min(totals):.3f} s)"
        )
        print(f"{statistics.median(totals):.4f}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
