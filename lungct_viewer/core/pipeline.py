"""The analysis pipeline behind both the viewer and the headless ``analyze`` command.

:meth:`Analyzer.iter_analyze` turns a :class:`~.study.CTVolume` into one
:class:`~.results.SliceAnalysis` per slice, in the order asked for: preprocess (the single
path of :mod:`.preprocessing`), find the lung field, cover its patches with a few tight grid
boxes (:func:`field_boxes`), pack the boxes of one slice (CPU) or of many (GPU) side by side
into one image (a *canvas*, :func:`pack_boxes`) and run the exact dense classifier once over
it, evaluating the dense layers only for the in-field patches. Work is therefore
proportional to the lung field, in one network call per slice or per batch of slices, and
results equal patch-by-patch classification.

The next group of slices is prepared on a helper thread while the network runs. The first
group is the first slice alone, so that the current slice's result comes first and soon.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import resources
from . import constants as C
from .field import field_grid
from .inference import DenseClassifier, softmax
from .model import MODEL_FILENAME, LoadedModel
from .patches import grid_shape
from .preprocessing import prepare_slice
from .results import SliceAnalysis, StudyAnalysis
from .study import CTVolume

RESOURCES_DIR = resources.ROOT


def default_model_path() -> Path:
    """The shipped model: ``resources/model/lungct_cnn.keras``."""
    return RESOURCES_DIR / "model" / MODEL_FILENAME


def slice_order_from(current: int, n: int) -> list[int]:
    """All slice indices, ``current`` first, then alternately below and above it."""
    if n <= 0:
        return []
    current = min(max(int(current), 0), n - 1)
    order = [current]
    for d in range(1, n):
        for k in (current + d, current - d):
            if 0 <= k < n:
                order.append(k)
    return order


def gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


#: A box is split when the two tighter boxes cost at most this fraction of it (boxes are
#: packed into shared network calls, so a split costs no extra call).
SPLIT_GAIN = 0.97


def _box_cost(b: tuple[int, int, int, int]) -> int:
    """Pixels the dense pass touches for a grid box (patch context included)."""
    pad = (C.PATCH_SIZE_PX - C.PATCH_STRIDE_PX) // C.PATCH_STRIDE_PX
    return (b[1] - b[0] + pad) * (b[3] - b[2] + pad)


def _shrink(f: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The smallest box inside ``box`` holding all its in-field cells (None if there are none)."""
    i0, i1, j0, j1 = box
    sub = f[i0:i1, j0:j1]
    rows = np.flatnonzero(sub.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(sub.any(axis=0))
    return i0 + int(rows[0]), i0 + int(rows[-1]) + 1, j0 + int(cols[0]), j0 + int(cols[-1]) + 1


def _split(f: np.ndarray, box: tuple[int, int, int, int], depth: int) -> list[tuple[int, int, int, int]]:
    """Guillotine-split ``box`` where two tighter boxes cost clearly less than one."""
    best_cost, best = SPLIT_GAIN * _box_cost(box), None
    if depth > 0:
        i0, i1, j0, j1 = box
        cuts = [((i0, c, j0, j1), (c, i1, j0, j1)) for c in range(i0 + 1, i1)]
        cuts += [((i0, i1, j0, c), (i0, i1, c, j1)) for c in range(j0 + 1, j1)]
        for a, b in cuts:
            a, b = _shrink(f, a), _shrink(f, b)
            if a is None or b is None:
                continue
            cost = _box_cost(a) + _box_cost(b)
            if cost < best_cost:
                best_cost, best = cost, (a, b)
    if best is None:
        return [box]
    return _split(f, best[0], depth - 1) + _split(f, best[1], depth - 1)


def field_boxes(f: np.ndarray, max_depth: int = 3) -> list[tuple[int, int, int, int]]:
    """Grid boxes ``(i0, i1, j0, j1)`` (end-exclusive) that together cover every in-field
    patch with little wasted computation: the field's bounding box, split recursively (e.g.
    into the two lungs, then their narrower tips) wherever tighter boxes cost at least 3%
    less, counting the 4 cells of context each box needs. Boxes do not overlap."""
    box = _shrink(f, (0, f.shape[0], 0, f.shape[1]))
    return [] if box is None else _split(f, box, max_depth)


def pack_boxes(
    sizes: Sequence[tuple[int, int]], width: int | None = None
) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Pack rectangles side by side into one canvas (shelf packing, tallest first).

    ``sizes`` are ``(height, width)`` in pixels. Returns the canvas ``(height, width)`` and
    each rectangle's top-left corner ``(y, x)``; rectangles do not overlap. With ``width``
    the canvas is that wide (or as wide as the widest rectangle); otherwise the width giving
    the smallest canvas among a few candidates is used. When all sizes are multiples of the
    patch stride, so are all corners: every rectangle then sits on the canvas's patch grid.
    """
    n = len(sizes)
    if n == 0:
        return (0, 0), []
    order = sorted(range(n), key=lambda k: (-sizes[k][0], -sizes[k][1]))
    widest = max(w for _, w in sizes)

    def shelves(canvas_w: int) -> tuple[int, list[tuple[int, int]]]:
        pos: list[tuple[int, int]] = [(0, 0)] * n
        rows: list[list[int]] = []  # [y, used width]
        top = 0
        for k in order:
            h, w = sizes[k]
            for row in rows:
                if row[1] + w <= canvas_w:
                    pos[k] = (row[0], row[1])
                    row[1] += w
                    break
            else:
                pos[k] = (top, 0)
                rows.append([top, w])
                top += h
        return top, pos

    if width is not None:
        canvas_w = max(int(width), widest)
        h, pos = shelves(canvas_w)
        return (h, canvas_w), pos
    area = sum(h * w for h, w in sizes)
    step = C.PATCH_STRIDE_PX
    candidates = {widest, sum(w for _, w in sizes)}
    for f in (1.0, 1.25, 1.5, 2.0, 3.0):
        candidates.add(max(widest, step * math.ceil(f * math.sqrt(area) / step)))
    best = None
    for canvas_w in sorted(candidates):
        h, pos = shelves(canvas_w)
        if best is None or h * canvas_w < best[0]:
            best = (h * canvas_w, (h, canvas_w), pos)
    return best[1], best[2]


#: Slices per network call on a CPU. One slice's boxes (both lungs) already make a call big
#: enough to keep the cores busy: on 2 cores, 1, 2 and 4 slices per call took the same CPU time
#: and ran 1.8-1.9x parallel, while larger calls held more memory (each new call shape also
#: keeps about 1 MB of compiled kernels, so fewer, larger calls are no help either).
CPU_BATCH_SLICES = 1
#: Slices per network call on a GPU, its canvas width and the steps its shapes are rounded to.
GPU_BATCH_SLICES = 16
GPU_CANVAS_WIDTH = 1280
GPU_SHAPE_QUANTUM = 160
GPU_CELLS_QUANTUM = 2048


@dataclass(frozen=True)
class ExecutionPlan:
    """How slices are grouped into network calls and how the calls are shaped.

    ``device`` names the plan ("CPU" or "GPU"). The GPU plan batches many slices per call
    and rounds every call's shapes up to few distinct values (a fixed canvas width, canvas
    sides to multiples of ``shape_quantum`` and the number of patches to a multiple of
    ``cells_quantum``) so that kernels tuned or compiled for a shape are reused; it runs on a
    CPU too (tests use that). The CPU plan packs the boxes of ``batch_slices`` slices (one by
    default) into a canvas of just the size they need.
    """

    device: str
    batch_slices: int
    canvas_width: int | None = None
    shape_quantum: int = C.PATCH_STRIDE_PX
    cells_quantum: int = 1
    jit_compile: bool = False

    @classmethod
    def for_device(cls, device: str, batch_slices: int | None = None, jit_compile: bool | None = None) -> ExecutionPlan:
        if device not in ("CPU", "GPU"):
            raise ValueError(f"device must be 'CPU' or 'GPU', got {device!r}")
        if batch_slices is not None and int(batch_slices) < 1:
            raise ValueError(f"batch_slices must be at least 1, got {batch_slices!r}")
        if device == "GPU":
            return cls(
                "GPU",
                int(batch_slices or GPU_BATCH_SLICES),
                canvas_width=GPU_CANVAS_WIDTH,
                shape_quantum=GPU_SHAPE_QUANTUM,
                cells_quantum=GPU_CELLS_QUANTUM,
                jit_compile=bool(jit_compile) if jit_compile is not None else False,
            )
        return cls(
            "CPU",
            int(batch_slices or CPU_BATCH_SLICES),
            jit_compile=bool(jit_compile) if jit_compile is not None else False,
        )


@dataclass
class _Planned:
    """A slice ready for the network: input image, field and the boxes covering the field."""

    index: int
    image: np.ndarray
    field: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    native_shape: tuple[int, int]
    native_per_model: tuple[float, float]


class Analyzer:
    """Runs the CNN over slices. Not thread-safe: use one per worker thread.

    Parameters
    ----------
    model:
        The loaded CNN.
    use_field_mask:
        Skip patches outside the lung field (exact inside it). ``False`` analyses every patch.
    batch_slices:
        Slices packed into one network call (after the first slice, which always runs
        alone); ``None`` picks :data:`CPU_BATCH_SLICES` or :data:`GPU_BATCH_SLICES`.
    device:
        ``"CPU"``, ``"GPU"`` or ``None`` (a GPU when TensorFlow sees one). ``"GPU"`` without
        a GPU runs the GPU plan's code path on the CPU.
    jit_compile:
        Compile the network call with XLA (``None``: off; measured slower on CPUs).
    """

    def __init__(
        self,
        model: LoadedModel,
        use_field_mask: bool = True,
        batch_slices: int | None = None,
        *,
        device: str | None = None,
        jit_compile: bool | None = None,
    ):
        has_gpu = gpu_available()
        self.model = model
        self.use_field_mask = use_field_mask
        self.plan = ExecutionPlan.for_device(device or ("GPU" if has_gpu else "CPU"), batch_slices, jit_compile)
        #: where the network runs: "GPU" only for the GPU plan on a machine with a GPU
        self.device = "GPU" if (self.plan.device == "GPU" and has_gpu) else "CPU"
        self.batch_slices = self.plan.batch_slices
        tf_device = "/GPU:0" if self.device == "GPU" else "/CPU:0"
        self._dense = DenseClassifier(model.keras_model, jit_compile=self.plan.jit_compile, device=tf_device)

    def warm_up(self) -> None:
        """Prepare the network call ahead of the first slice (e.g. right after loading the
        model, on the same worker thread), so that the first result comes sooner."""
        self._dense.warm_up()

    # -- preparation (numpy only: runs on the helper thread) ---------------------------
    def _plan_slice(self, volume: CTVolume, index: int) -> _Planned:
        prep = prepare_slice(volume.hu[index], volume.pixel_spacing_mm)
        gh, gw = grid_shape(*prep.image.shape)
        f = field_grid(prep.hu_model) if self.use_field_mask else np.ones((gh, gw), dtype=bool)
        return _Planned(int(index), prep.image, f, field_boxes(f), prep.native_shape, prep.native_per_model)

    def _plan_group(self, volume: CTVolume, indices: Sequence[int]) -> list[_Planned]:
        return [self._plan_slice(volume, i) for i in indices]

    # -- one network call --------------------------------------------------------------
    def _run_group(self, group: list[_Planned]) -> list[SliceAnalysis]:
        s, p = C.PATCH_STRIDE_PX, C.PATCH_SIZE_PX
        items = [(k, box) for k, g in enumerate(group) for box in g.boxes]
        logits_list = []
        for g in group:
            lg = np.zeros((*g.field.shape, C.NUM_CLASSES), dtype=np.float32)
            lg[..., C.BENIGN :] = -np.inf
            logits_list.append(lg)
        if items:
            sizes = [((i1 - i0 - 1) * s + p, (j1 - j0 - 1) * s + p) for _, (i0, i1, j0, j1) in items]
            (ch, cw), corners = pack_boxes(sizes, self.plan.canvas_width)
            q = self.plan.shape_quantum
            ch = q * math.ceil(ch / q)
            if self.plan.canvas_width is not None:
                cw = q * math.ceil(cw / q)
            canvas = np.zeros((1, ch, cw), dtype=np.float32)
            canvas_cells, slice_cells = [], []
            for (k, (i0, i1, j0, j1)), (hh, ww), (y, x) in zip(items, sizes, corners):
                canvas[0, y : y + hh, x : x + ww] = group[k].image[i0 * s : i0 * s + hh, j0 * s : j0 * s + ww]
                ii, jj = np.nonzero(group[k].field[i0:i1, j0:j1])
                canvas_cells.append(np.stack([np.zeros_like(ii), y // s + ii, x // s + jj], axis=1))
                slice_cells.append(np.stack([np.full_like(ii, k), i0 + ii, j0 + jj], axis=1))
            cc = np.concatenate(canvas_cells)
            sc = np.concatenate(slice_cells)
            n = len(cc)
            padded = self.plan.cells_quantum * math.ceil(n / self.plan.cells_quantum)
            if padded > n:  # repeat the first cell so that the call's shape is a round number
                cc = np.concatenate([cc, np.repeat(cc[:1], padded - n, axis=0)])
            out = self._dense.logits_at(canvas, cc)[:n]
            for k, lg in enumerate(logits_list):
                sel = sc[:, 0] == k
                lg[sc[sel, 1], sc[sel, 2]] = out[sel]
        return [
            SliceAnalysis(
                index=g.index,
                probs=softmax(lg),
                in_field=g.field,
                native_shape=g.native_shape,
                native_per_model=g.native_per_model,
                logits=lg,
            )
            for g, lg in zip(group, logits_list)
        ]

    # -- public ------------------------------------------------------------------------
    def iter_analyze(
        self,
        volume: CTVolume,
        order: Iterable[int] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[SliceAnalysis]:
        """Yield each slice's result in ``order`` (default: all, top to bottom).

        The first slice runs alone, then :attr:`batch_slices` slices per network call.
        ``should_cancel()`` is polled before every network call; when it returns true the
        iteration ends (the slices yielded so far are complete results). A helper thread
        prepares the next slices meanwhile; it ends with the iteration, or when the iterator
        is closed (``close()``, or garbage collection) after leaving it early.
        """
        indices = list(range(volume.num_slices)) if order is None else [int(i) for i in order]
        for i in indices:
            if not 0 <= i < volume.num_slices:
                raise IndexError(f"slice {i} is not in this series of {volume.num_slices} slices")
        if not indices:
            return
        groups = [indices[:1]] + [indices[k : k + self.batch_slices] for k in range(1, len(indices), self.batch_slices)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lungct-prepare") as pool:
            pending = pool.submit(self._plan_group, volume, groups[0])
            try:
                for g in range(len(groups)):
                    if should_cancel is not None and should_cancel():
                        return
                    planned = pending.result()
                    pending = pool.submit(self._plan_group, volume, groups[g + 1]) if g + 1 < len(groups) else None
                    yield from self._run_group(planned)
            finally:
                if pending is not None:
                    pending.cancel()

    def analyze_slice(self, volume: CTVolume, index: int) -> SliceAnalysis:
        """One slice's result."""
        return self._run_group(self._plan_group(volume, [index]))[0]

    def analyze(
        self,
        volume: CTVolume,
        order: Iterable[int] | None = None,
        on_slice: Callable[[SliceAnalysis, int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StudyAnalysis:
        """Analyse the slices in ``order`` (default: all, top to bottom); see :meth:`iter_analyze`.

        ``on_slice(result, done, total)`` is called after each slice; ``should_cancel()`` is
        polled between network calls and, when true, the slices done so far are returned with
        ``cancelled=True``.
        """
        indices = list(range(volume.num_slices)) if order is None else [int(i) for i in order]
        result = StudyAnalysis(
            series_uid=volume.series_uid,
            num_slices=volume.num_slices,
            model_version=self.model.version,
            model_path=self.model.path,
            device=self.device,
        )
        cancelled = False

        def poll() -> bool:
            nonlocal cancelled
            cancelled = cancelled or bool(should_cancel is not None and should_cancel())
            return cancelled

        t0 = time.perf_counter()
        total = len(indices)
        done = 0
        for sa in self.iter_analyze(volume, indices, poll):
            result.slices[sa.index] = sa
            done += 1
            if on_slice is not None:
                on_slice(sa, done, total)
        result.cancelled = cancelled
        result.inference_s = time.perf_counter() - t0
        return result
