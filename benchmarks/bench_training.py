"""Training throughput: patches per second of the method's CNN (batch 400) and of patch
building on a phantom study. Figures are printed, not asserted.

    .venv/bin/python benchmarks/bench_training.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def bench_fit(n: int = 4000, epochs: int = 2) -> float:
    import keras

    from lungct_viewer.core import constants as C
    from lungct_viewer.core.model import build_model
    from training.train import make_dataset

    rng = np.random.default_rng(0)
    x = rng.random((n, 50, 50), dtype=np.float32).astype(np.float16)
    y = rng.integers(0, 3, n).astype(np.int8)
    m = build_model(0)
    m.compile(optimizer=keras.optimizers.Adam(C.LEARNING_RATE), loss="sparse_categorical_crossentropy")
    ds = make_dataset(x, y, C.BATCH_SIZE, 0, True)
    steps = n // C.BATCH_SIZE
    m.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # warm-up
    t = time.perf_counter()
    m.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0)
    return epochs * steps * C.BATCH_SIZE / (time.perf_counter() - t)


def bench_patches() -> float:
    from training.patchset import PatchConfig, build_patch_set
    from training.phantom import import_phantom

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for i in range(2):
            import_phantom(d / "layout", d / "dicom", f"P{i}", seed=20 + i, n_slices=16, size=256)
        t = time.perf_counter()
        s = build_patch_set(
            [d / "layout"],
            d / "p.npz",
            PatchConfig(per_class=200, forced={"P0": "train", "P1": "val"}),
            log=lambda *_: None,
        )
        return 32 / (time.perf_counter() - t), s


if __name__ == "__main__":
    print(f"training: {bench_fit():.0f} patches/s (batch 400, CPU threads: {os.cpu_count()})")
    sps, _ = bench_patches()
    print(f"patch building: {sps:.1f} whole-study slices/s (256 x 256 phantom)")
