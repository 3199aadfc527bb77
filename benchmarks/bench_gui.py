"""Viewer benchmarks (targets are printed and compared, never asserted).

    python benchmarks/bench_gui.py            # all stages, each in a fresh process
    python benchmarks/bench_gui.py --stage scroll|first-slice|first-result|first-result-model-at-start|memory

Targets (issue "Viewer"):

* slice change with overlays on (ROI + heatmap + outlines), 512 x 512: <= 16 ms at the 95th
  percentile (set_index + a synchronous repaint of the view);
* first slice on screen <= 0.5 s after choosing the 133-slice LIDC-IDRI-0001 study
  (``$LUNGCT_DATA_DIR`` or ``../shared/data``);
* peak memory <= 1.5 GB for a 300-slice 512 x 512 study with analysis results for every slice,
  after scrolling through all of it with every overlay on (TensorFlow and the CNN loaded too).

Analysis results for the scroll and memory stages are patch probabilities made up on the
sliding-window grid (a few blobs per slice; the viewer finds their candidates): the viewer's
cost does not depend on where they came from, and the benchmark must not take minutes of CPU
inference.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _app_window(preload_model: bool = False, auto_analyze: bool = False):
    from PySide6 import QtCore, QtWidgets

    from lungct_viewer.gui.app import HeadlessDialogs, apply_style
    from lungct_viewer.gui.main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    apply_style(app)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"lungct-bench-{os.getpid()}.ini"
    w = MainWindow(
        settings=QtCore.QSettings(str(tmp), QtCore.QSettings.Format.IniFormat),
        dialogs=HeadlessDialogs(),
        auto_analyze=auto_analyze,
        preload_model=preload_model,
    )
    w.resize(1600, 1000)
    w.show()
    app.processEvents()
    return app, w


def _volume(n: int, size: int = 512):
    """A chest-like volume (body, lungs, noise) of ``n`` slices, built quickly."""
    from lungct_viewer.core.study import CTVolume

    yy, xx = np.mgrid[:size, :size]
    base = np.full((size, size), -1000, np.int16)
    base[((yy - size / 2) / (0.43 * size)) ** 2 + ((xx - size / 2) / (0.37 * size)) ** 2 < 1] = 40
    for cx in (0.33 * size, 0.67 * size):
        base[((yy - 0.49 * size) / (0.3 * size)) ** 2 + ((xx - cx) / (0.12 * size)) ** 2 < 1] = -850
    rng = np.random.default_rng(0)
    hu = np.empty((n, size, size), np.int16)
    noise = rng.normal(0, 15, (8, size, size)).astype(np.int16)
    for i in range(n):
        hu[i] = base + noise[i % 8]
    return CTVolume.from_array(hu, pixel_spacing_mm=(0.7, 0.7))


def _analysis(volume):
    from lungct_viewer.core.patches import grid_shape
    from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis

    rows, cols = volume.hu.shape[1:]
    gh, gw = grid_shape(rows, cols)
    rng = np.random.default_rng(1)
    slices = {}
    for i in range(volume.num_slices):
        p = np.zeros((gh, gw, 3), np.float32)
        p[..., 0] = 1.0
        for _ in range(2):
            a, b = rng.integers(8, gh - 12, 2)
            k = int(rng.integers(2, 5))
            pm = float(rng.uniform(0.1, 0.8))
            p[a : a + k, b : b + k] = (0.1, 0.9 - pm, pm)
        slices[i] = SliceAnalysis(i, p, np.ones((gh, gw), bool), (rows, cols), (1.0, 1.0))
    return StudyAnalysis(volume.series_uid, volume.num_slices, slices, model_version="bench")


def _show(app, w, vol) -> None:
    """Show ``vol`` with its made-up analysis, and wait for its candidates."""
    from PySide6 import QtCore

    w.set_volume(vol)
    loop = QtCore.QEventLoop()
    w.analysisFinished.connect(loop.quit)
    w.set_analysis(_analysis(vol))
    loop.exec()
    w.display.heat_check.setChecked(True)
    app.processEvents()


def stage_scroll() -> None:
    app, w = _app_window()
    vol = _volume(60)
    _show(app, w, vol)
    vp = w.view.viewport()

    def run(indices, idle: bool):
        times = []
        for i in indices:
            t0 = time.perf_counter()
            w.set_index(i)
            vp.repaint()
            times.append(time.perf_counter() - t0)
            if idle:  # between two wheel notches the event loop turns (idle prefetch)
                time.sleep(0.02)
                app.processEvents()
        return np.array(times) * 1000

    cold = run(range(30), idle=False)  # first visit, no idle time: heatmaps computed inline
    w.session._heat_cache.clear()
    cold_idle = run(range(30, 60), idle=True)  # first visit at 50 wheel notches/s
    warm = np.concatenate([run(range(59, -1, -1), False), run(range(60), False)])
    for name, t in (("first visit, back-to-back", cold), ("first visit, 50 notches/s", cold_idle), ("revisit", warm)):
        print(
            f"scroll 512x512, ROI+heatmap+outlines, {name}: median {np.median(t):.1f} ms, "
            f"p95 {np.percentile(t, 95):.1f} ms (target p95 <= 16 ms)"
        )
    w.close()


def stage_first_slice() -> None:
    from PySide6 import QtCore

    env = os.environ.get("LUNGCT_DATA_DIR")
    data = Path(env) if env else ROOT.parent / "shared" / "data"
    study = data / "lidc-idri" / "LIDC-IDRI-0001"
    if not study.exists():
        print(f"first slice: skipped, {study} not present (set LUNGCT_DATA_DIR)")
        return
    app, w = _app_window()
    time.sleep(0.5)  # the window's background warm-up (DICOM reader import) is done
    app.processEvents()
    for run in range(3):
        marks: dict[str, float] = {}
        loop = QtCore.QEventLoop()

        def shown(_i, marks=marks):
            w.view.viewport().repaint()
            marks.setdefault("first", time.perf_counter())

        def loaded(_v, marks=marks, loop=loop):
            w.view.viewport().repaint()
            marks["all"] = time.perf_counter()
            loop.quit()

        w.previewShown.connect(shown)
        w.studyLoaded.connect(loaded)
        t0 = time.perf_counter()
        w.open_path(str(study))
        loop.exec()
        w.previewShown.disconnect(shown)
        w.studyLoaded.disconnect(loaded)
        first = marks.get("first", marks["all"]) - t0
        print(
            f"LIDC-IDRI-0001 (133 slices), run {run + 1}: first slice on screen {first:.2f} s, "
            f"all slices browsable {marks['all'] - t0:.2f} s (target first <= 0.5 s)"
        )
    w.close()


def stage_memory() -> None:
    app, w = _app_window()
    before = _rss_peak_mb()
    vol = _volume(300)
    _show(app, w, vol)
    for i in range(vol.num_slices):
        w.set_index(i)
        if i % 10 == 0:
            app.processEvents()
    gui_peak = _rss_peak_mb()
    from lungct_viewer.core.model import build_model

    build_model(seed=0)  # TensorFlow and the CNN in memory, as in the running app
    for i in range(0, vol.num_slices, 3):
        w.set_index(i)
    app.processEvents()
    print(
        f"memory, 300 x 512 x 512 study with results for every slice: peak RSS "
        f"{gui_peak:.0f} MB without TensorFlow (start {before:.0f} MB), "
        f"{_rss_peak_mb():.0f} MB with TensorFlow and the CNN (target <= 1536 MB)"
    )
    w.close()


def stage_first_result(model_at_start: bool = False) -> None:
    """From the process's start: window, first slice on screen, the current slice's first
    result, every slice analysed, findings ready. As ``main.py`` does, the model loads once
    the study's first slice is on screen (``open_at_start``); ``model_at_start`` loads it
    while the window opens instead (the order before), for comparison in one run."""
    from PySide6 import QtCore

    t0 = float(os.environ.get("LUNGCT_BENCH_T0", time.time()))
    env = os.environ.get("LUNGCT_DATA_DIR")
    study = (Path(env) if env else ROOT.parent / "shared" / "data") / "lidc-idri" / "LIDC-IDRI-0001"
    if not study.exists():
        print(f"first result: skipped, {study} not present (set LUNGCT_DATA_DIR)")
        return
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, time.time() - t0)

    app, w = _app_window(preload_model=model_at_start, auto_analyze=True)
    mark("window on screen")
    loop = QtCore.QEventLoop()

    def on_session_event(_what: str) -> None:
        s = w.session
        if s is None:
            return
        if w.index in s.analysis.slices:
            mark("current slice's result")
        if s.candidates_ready and s.analysis.complete:
            mark("findings ready")
            loop.quit()

    def loaded(_v) -> None:
        mark("first slice on screen")
        mark("all slices browsable")
        w.session.subscribe(on_session_event)

    w.previewShown.connect(lambda _i: (w.view.viewport().repaint(), mark("first slice on screen")))
    w.studyLoaded.connect(loaded)
    w.analysisFinished.connect(lambda _a: mark("every slice analysed"))
    QtCore.QTimer.singleShot(180_000, loop.quit)
    if model_at_start:
        w.open_path(str(study))
    else:
        w.open_at_start(str(study))
    loop.exec()
    order = sorted(marks.items(), key=lambda kv: kv[1])
    when = "model loaded while the window opens" if model_at_start else "model loaded after the first slice"
    print(f"LIDC-IDRI-0001 ({when}), from the process's start: " + "; ".join(f"{k} {v:.2f} s" for k, v in order))
    first = marks.get("first slice on screen")
    result = marks.get("current slice's result")
    if first is not None and result is not None:
        print(
            f"  first result {result - first:.2f} s after the first slice (targets: first slice <= 1.0 s "
            "after the viewer's start, first result <= 1.5 s after it)"
        )
    w.close()


STAGES = {
    "scroll": stage_scroll,
    "first-slice": stage_first_slice,
    "first-result": stage_first_result,
    "first-result-model-at-start": lambda: stage_first_result(model_at_start=True),
    "memory": stage_memory,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=sorted(STAGES))
    args = ap.parse_args()
    if args.stage:
        STAGES[args.stage]()
        return 0
    rc = 0
    for name in STAGES:  # fresh process per stage: clean timings and peak memory
        env = dict(os.environ, LUNGCT_BENCH_T0=repr(time.time()))
        r = subprocess.run([sys.executable, __file__, "--stage", name], env=env)
        rc |= r.returncode
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
