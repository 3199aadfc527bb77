"""The inference path as it was before the lung field was packed into shared network calls.

Kept only so that ``bench_inference.py`` can compare the previous and the current path in one
run on the same machine. Copied unchanged from the core at commit 6499f15 (lung field with
whole-slice morphology; per-box dense calls, one slice per call on a CPU; the first dense
layer evaluated as an 8 x 8 convolution at every cell of each box); not used by the
application and not maintained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage

from lungct_viewer.core import constants as C
from lungct_viewer.core.model import CONV_LAYER_NAMES, DENSE_HIDDEN_NAME, DENSE_OUT_NAME, LoadedModel
from lungct_viewer.core.patches import grid_shape
from lungct_viewer.core.preprocessing import PreparedSlice, prepare_slice
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.study import CTVolume

BODY_HU = -500.0
LUNG_HU = -400.0
MIN_LUNG_AREA_PX = 150  # ~75 mm^2 at 0.7 mm/px
LUNG_MARGIN_PX = 4


def lung_mask(hu_model: np.ndarray) -> np.ndarray:
    """Boolean lung mask of a model-space HU slice (see module docstring)."""
    body = hu_model > BODY_HU
    lab, n = ndimage.label(body)
    if n == 0:
        return np.zeros(hu_model.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)))
    lungs = body & (hu_model < LUNG_HU)
    lab, n = ndimage.label(lungs)
    if n == 0:
        return lungs
    sizes = np.bincount(lab.ravel())
    keep = sizes >= MIN_LUNG_AREA_PX
    keep[0] = False
    return keep[lab]


def field_grid(hu_model: np.ndarray) -> np.ndarray:
    """``(gh, gw)`` bool: patches whose central core touches the (dilated) lung field."""
    gh, gw = grid_shape(*hu_model.shape)
    if gh == 0:
        return np.zeros((0, 0), dtype=bool)
    lungs = lung_mask(hu_model)
    if not lungs.any():
        return np.zeros((gh, gw), dtype=bool)
    lungs = ndimage.binary_dilation(lungs, iterations=LUNG_MARGIN_PX)
    ii = np.zeros((lungs.shape[0] + 1, lungs.shape[1] + 1), dtype=np.int32)
    ii[1:, 1:] = np.cumsum(np.cumsum(lungs, axis=0, dtype=np.int32), axis=1)
    a = (C.PATCH_SIZE_PX - C.ROI_CORE_PX) // 2
    y0 = np.arange(gh) * C.PATCH_STRIDE_PX + a
    x0 = np.arange(gw) * C.PATCH_STRIDE_PX + a
    Y, X = np.meshgrid(y0, x0, indexing="ij")
    s = C.ROI_CORE_PX
    core = ii[Y + s, X + s] - ii[Y, X + s] - ii[Y + s, X] + ii[Y, X]
    return core > 0


#: Pooled-map units between neighbouring patches (patch stride / total stride 2 after pool1).
_STEP = C.PATCH_STRIDE_PX // 2
#: Size of the final feature map of one patch (8 for 50 px patches and valid convolutions).
_FINAL = 8


class DenseClassifier:
    """Exact fully convolutional evaluation of the patch CNN over whole (cropped) slices."""

    def __init__(self, keras_model):
        import tensorflow as tf

        self._tf = tf
        convs = [keras_model.get_layer(n) for n in CONV_LAYER_NAMES]
        self._conv_w = [(tf.constant(layer.kernel.numpy()), tf.constant(layer.bias.numpy())) for layer in convs]
        fc1 = keras_model.get_layer(DENSE_HIDDEN_NAME)
        fc2 = keras_model.get_layer(DENSE_OUT_NAME)
        k1 = fc1.kernel.numpy()
        depth = C.CONV_FILTERS[-1]
        if k1.shape[0] != _FINAL * _FINAL * depth:
            raise ValueError(f"unexpected first dense layer shape {k1.shape}")
        self._fc1_k = tf.constant(k1.reshape(_FINAL, _FINAL, depth, -1))
        self._fc1_b = tf.constant(fc1.bias.numpy())
        self._fc2_k = tf.constant(fc2.kernel.numpy())
        self._fc2_b = tf.constant(fc2.bias.numpy())
        self._fn = tf.function(
            self._phases,
            input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)],
            reduce_retracing=True,
        )

    def _phases(self, x):
        tf = self._tf

        def conv(t, wb):
            return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(t, wb[0], 1, "VALID"), wb[1]))

        x = conv(x, self._conv_w[0])
        x = conv(x, self._conv_w[1])
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        for wb in self._conv_w[2:]:
            x = conv(x, wb)
        outs = []
        for pr in (0, 1):
            for pc in (0, 1):
                p = tf.nn.max_pool2d(x[:, pr:, pc:, :], 2, 2, "VALID")
                off_r, off_c = 2 * pr, 2 * pc
                p = p[:, off_r:, off_c:, :]
                h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(p, self._fc1_k, _STEP, "VALID"), self._fc1_b))
                logits = tf.tensordot(h, self._fc2_k, axes=[[3], [0]]) + self._fc2_b
                outs.append(tf.nn.softmax(logits, axis=-1))
        return outs

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """``(b, h, w)`` model-space images of equal size -> ``(b, gh, gw, 3)`` probabilities."""
        images = np.asarray(images, dtype=np.float32)
        b, h, w = images.shape
        gh, gw = grid_shape(h, w)
        if gh == 0:
            return np.zeros((b, 0, 0, C.NUM_CLASSES), dtype=np.float32)
        # crop to exactly the pixels the grid covers; a grid of one row or column is padded
        # to two (valid convolutions keep the extra patch from touching the real one) so that
        # both pooling phases are non-empty
        hh = C.PATCH_SIZE_PX + C.PATCH_STRIDE_PX * (max(gh, 2) - 1)
        ww = C.PATCH_SIZE_PX + C.PATCH_STRIDE_PX * (max(gw, 2) - 1)
        x = np.zeros((b, hh, ww, 1), dtype=np.float32)
        ch, cw = min(h, hh), min(w, ww)
        x[:, :ch, :cw, 0] = images[:, :ch, :cw]
        phases = [np.asarray(t) for t in self._fn(x)]
        out = np.empty((b, gh, gw, C.NUM_CLASSES), dtype=np.float32)
        k = 0
        for pr in (0, 1):
            for pc in (0, 1):
                nr = len(range(pr, gh, 2))
                nc = len(range(pc, gw, 2))
                ph = phases[k]
                k += 1
                if nr == 0 or nc == 0:
                    continue
                if ph.shape[1] < nr or ph.shape[2] < nc:
                    raise AssertionError("dense phase map smaller than the patch grid")
                out[:, pr::2, pc::2, :] = ph[:, :nr, :nc, :]
        return out

    def predict(self, image: np.ndarray) -> np.ndarray:
        """One model-space image ``(h, w)`` -> ``(gh, gw, 3)`` probabilities."""
        return self.predict_batch(np.asarray(image)[None])[0]


def gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _bbox(f: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(f)
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def _union_box(boxes: Sequence[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes))


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
                self._run_box([preps[k] for k in todo], [fields[k] for k in todo], [probs_list[k] for k in todo], union)
        return [
            SliceAnalysis(
                index=int(idx),
                probs=probs,
                in_field=f,
                native_shape=prep.native_shape,
                native_per_model=prep.native_per_model,
            )
            for idx, prep, f, probs in zip(indices, preps, fields, probs_list)
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
        for f, probs, out in zip(fields, probs_list, sub):
            inside = f[i0:i1, j0:j1]
            probs[i0:i1, j0:j1][inside] = out[inside]

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
