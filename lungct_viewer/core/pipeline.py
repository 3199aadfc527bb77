"""The analysis pipeline behind both the viewer and the headless ``analyze`` command.

``Analyzer.analyze`` turns a :class:`~.study.CTVolume` into a :class:`~.results.StudyAnalysis`
slice by slice: preprocess (the single path of :mod:`.preprocessing`), find the lung field,
run the exact dense classifier over the field's bounding box only, and report progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from . import constants as C
from .field import field_grid
from .model import MODEL_FILENAME, LoadedModel
from .patches import grid_shape
from .preprocessing import PreparedSlice, prepare_slice
from .results import SliceAnalysis, StudyAnalysis
from .study import CTVolume

RESOURCES_DIR = Path(__file__).resolve().parents[2] / "resources"


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
        results: list[SliceAnalysis] = []
        # union bounding box (in grid cells) of the in-field patches of this group
        boxes = [np.nonzero(f) for f in fields if f.any()]
        probs_list = []
        for prep, f in zip(preps, fields):
            gh, gw = f.shape
            probs = np.zeros((gh, gw, C.NUM_CLASSES), dtype=np.float32)
            probs[..., C.NOT_ROI] = 1.0
            probs_list.append(probs)
        if boxes:
            i0 = min(int(b[0].min()) for b in boxes)
            i1 = max(int(b[0].max()) for b in boxes) + 1
            j0 = min(int(b[1].min()) for b in boxes)
            j1 = max(int(b[1].max()) for b in boxes) + 1
            s, p = C.PATCH_STRIDE_PX, C.PATCH_SIZE_PX
            y0, x0 = i0 * s, j0 * s
            y1, x1 = (i1 - 1) * s + p, (j1 - 1) * s + p
            todo = [k for k, f in enumerate(fields) if f.any()]
            crops = np.stack([preps[k].image[y0:y1, x0:x1] for k in todo])
            sub = self._dense.predict_batch(crops)
            for k, out in zip(todo, sub):
                f = fields[k]
                region = probs_list[k][i0:i1, j0:j1]
                inside = f[i0:i1, j0:j1]
                region[inside] = out[inside]
        for idx, prep, f, probs in zip(indices, preps, fields, probs_list):
            results.append(
                SliceAnalysis(
                    index=int(idx),
                    probs=probs,
                    in_field=f,
                    native_shape=prep.native_shape,
                    native_per_model=prep.native_per_model,
                )
            )
        return results

    # -- public ------------------------------------------------------------------------
    def analyze_slice(self, volume: CTVolume, index: int) -> SliceAnalysis:
        return self._analyze_group(volume, [index])[0]

    def analyze(
        self,
        volume: CTVolume,
        order: Iterable[int] | None = None,
        on_slice: Callable[[SliceAnalysis, int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StudyAnalysis:
        """Analyse the slices in ``order`` (default: all, top to bottom).

        ``on_slice(result, done, total)`` is called after each slice; ``should_cancel()`` is
        polled between batches and, when true, the slices done so far are returned with
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
        t0 = time.perf_counter()
        total = len(indices)
        done = 0
        for start in range(0, total, self.batch_slices):
            if should_cancel is not None and should_cancel():
                result.cancelled = True
                break
            group = indices[start : start + self.batch_slices]
            for sa in self._analyze_group(volume, group):
                result.slices[sa.index] = sa
                done += 1
                if on_slice is not None:
                    on_slice(sa, done, total)
        result.inference_s = time.perf_counter() - t0
        return result
