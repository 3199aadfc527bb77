"""The analysis pipeline behind both the viewer and the headless ``analyze`` command.

``Analyzer.analyze`` turns a :class:`~.study.CTVolume` into a :class:`~.results.StudyAnalysis`
slice by slice: preprocess (the single path of :mod:`.preprocessing`), find the lung field,
run the exact dense classifier over the field's bounding box only, and report progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .. import resources
from . import constants as C
from .field import field_grid
from .model import MODEL_FILENAME, LoadedModel
from .patches import grid_shape
from .preprocessing import PreparedSlice, prepare_slice
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


def _bbox(f: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(f)
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def _union_box(boxes: Sequence[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), max(b[1] for b in boxes),
            min(b[2] for b in boxes), max(b[3] for b in boxes))


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
    best_cost, best = 0.9 * _box_cost(box), None
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
    into the two lungs, then their narrower tips) wherever tighter boxes cost at least 10%
    less, counting the 4 cells of context each box needs."""
    box = _shrink(f, (0, f.shape[0], 0, f.shape[1]))
    return [] if box is None else _split(f, box, max_depth)


class Analyzer:
    """Runs the CNN over slices. Not thread-safe: use one per worker thread.

    Parameters
    ----------
    model:
        The loaded CNN.
    use_field_mask:
        Skip patches outside the lung field (exact inside it). ``False`` analyses every patch.
    batch_slices:
        Slices per network call; ``None`` picks 8 on a GPU and 1 on a CPU (batching helps a
        GPU; on a CPU, per-slice crops to the lung field do less work).
    """

    def __init__(self, model: LoadedModel, use_field_mask: bool = True, batch_slices: int | None = None):
        from .inference import DenseClassifier

        self.model = model
        self.use_field_mask = use_field_mask
        self.device = "GPU" if gpu_available() else "CPU"
        self.batch_slices = batch_slices or (8 if self.device == "GPU" else 1)
        self._dense = DenseClassifier(model.keras_model)

    # -- one batch ---------------------------------------------------------------------
    def _field(self, prep: PreparedSlice) -> np.ndarray:
        gh, gw = grid_shape(*prep.image.shape)
        if not self.use_field_mask:
            return np.ones((gh, gw), dtype=bool)
        return field_grid(prep.hu_model)

    def _analyze_group(self, volume: CTVolume, indices: Sequence[int]) -> list[SliceAnalysis]:
        preps = [prepare_slice(volume.hu[i], volume.pixel_spacing_mm) for i in indices]
        fields = [self._field(p) for p in preps]
        probs_list = []
        for f in fields:
            probs = np.zeros((*f.shape, C.NUM_CLASSES), dtype=np.float32)
            probs[..., C.NOT_ROI] = 1.0
            probs_list.append(probs)
        if len(indices) == 1:
            # one slice: one network call per field region (the two lungs separately)
            boxes = field_boxes(fields[0])
            for box in boxes:
                self._run_box([preps[0]], [fields[0]], [probs_list[0]], box)
        else:
            todo = [k for k, f in enumerate(fields) if f.any()]
            if todo:
                union = _union_box([b for k in todo for b in [_bbox(fields[k])]])
                self._run_box([preps[k] for k in todo], [fields[k] for k in todo],
                              [probs_list[k] for k in todo], union)
        return [
            SliceAnalysis(
                index=int(idx),
                probs=probs,
                in_field=f,
                native_shape=prep.native_shape,
                native_per_model=prep.native_per_model,
            )
            for idx, prep, f, probs in zip(indices, preps, fields, probs_list, strict=True)
        ]

    def _run_box(self, preps, fields, probs_list, box: tuple[int, int, int, int]) -> None:
        """Run the dense classifier over grid box ``(i0, i1, j0, j1)`` (end-exclusive) of
        each prepared slice; copy the in-field results into ``probs_list``."""
        i0, i1, j0, j1 = box
        s, p = C.PATCH_STRIDE_PX, C.PATCH_SIZE_PX
        y0, x0 = i0 * s, j0 * s
        y1, x1 = (i1 - 1) * s + p, (j1 - 1) * s + p
        crops = np.stack([prep.image[y0:y1, x0:x1] for prep in preps])
        sub = self._dense.predict_batch(crops)
        for f, probs, out in zip(fields, probs_list, sub, strict=True):
            inside = f[i0:i1, j0:j1]
            probs[i0:i1, j0:j1][inside] = out[inside]

    # -- public ------------------------------------------------------------------------
    def analyze_slice(self, volume: CTVolume, index: int) -> SliceAnalysis:
        return self._analyze_group(volume, [index])[0]

    def iter_slices(self, volume: CTVolume, order: Iterable[int] | None = None) -> Iterator[SliceAnalysis]:
        """Analyse the slices in ``order`` (default: all, top to bottom), yielding each
        slice's result as soon as its batch is done. Stop iterating to stop the analysis
        (the viewer's worker does so between slices when the user cancels)."""
        indices = list(range(volume.num_slices)) if order is None else [int(i) for i in order]
        for start in range(0, len(indices), self.batch_slices):
            yield from self._analyze_group(volume, indices[start : start + self.batch_slices])

    def analyze(
        self,
        volume: CTVolume,
        order: Iterable[int] | None = None,
        on_slice: Callable[[SliceAnalysis, int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StudyAnalysis:
        """Analyse the slices in ``order`` (default: all, top to bottom).

        ``on_slice(result, done, total)`` is called after each slice; ``should_cancel()`` is
        polled before the first and after each slice and, when true, the slices done so far
        are returned with ``cancelled=True``.
        """
        indices = list(range(volume.num_slices)) if order is None else [int(i) for i in order]
        result = StudyAnalysis(
            series_uid=volume.series_uid,
            num_slices=volume.num_slices,
            model_version=self.model.version,
            model_path=self.model.path,
            device=self.device,
        )
        t0 = time.perf_counter()
        total = len(indices)
        done = 0
        if should_cancel is not None and should_cancel():
            result.cancelled = total > 0
            indices = []
        for sa in self.iter_slices(volume, indices):
            result.slices[sa.index] = sa
            done += 1
            if on_slice is not None:
                on_slice(sa, done, total)
            if should_cancel is not None and done < total and should_cancel():
                result.cancelled = True
                break
        result.inference_s = time.perf_counter() - t0
        return result
