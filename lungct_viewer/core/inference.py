"""Sliding-window classification of a model-space slice: a reference and an exact dense path.

Both paths take model-space network-input images (float32, see
:func:`.preprocessing.prepare_slice`) and give, per cell of the patch grid of :mod:`.patches`,
the network's three logits (pre-softmax outputs) or its softmax probabilities.

* :func:`classify_patches_reference` cuts every 50 x 50 patch and classifies it on its own.
* :class:`DenseClassifier` runs the convolutions once over whole images (slices, crops of
  slices, or *canvases* holding crops of many slices side by side) and evaluates the first
  dense layer only for the grid cells asked for. With unpadded convolutions the feature maps
  of a patch are exactly a window of the image's feature maps, so a cell's result depends on
  its own 50 x 50 pixels only, wherever the window lies in the image.

Alignment: after the first 2 x 2 pooling the total stride is 2 and the patch stride is 10,
so in units of the last convolution's output a cell ``(i, j)`` starts at ``(5 i, 5 j)``. The
second pooling is therefore taken at stride 1 (``m[y, x]`` = max over the 2 x 2 block at
``(y, x)``), which holds both pooling phases at once, and a cell's pooled 8 x 8 x 108 map is
``m[5 i + 2 u, 5 j + 2 v]`` for ``u, v`` in ``0..7``. Those 64 vectors are gathered for the
requested cells only and multiplied by the first dense layer's weights (one matrix product),
then by the output layer's. Results equal the reference up to float rounding (~1e-6).
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import constants as C
from .model import CONV_LAYER_NAMES, DENSE_HIDDEN_NAME, DENSE_OUT_NAME
from .patches import extract_patches, grid_shape

#: Units of the last convolution's output between neighbouring patches (patch stride / 2).
_STEP = C.PATCH_STRIDE_PX // 2
#: Side of the final (pooled) feature map of one patch: 8 for 50 px patches.
_FINAL = 8


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float32; ``-inf`` logits give probability 0."""
    z = np.asarray(logits, dtype=np.float32)
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, np.float32(0.0))
    e = np.exp(z - m)
    return (e / np.sum(e, axis=-1, keepdims=True)).astype(np.float32, copy=False)


def classify_patches_reference(
    keras_model,
    image: np.ndarray,
    batch_size: int = 512,
    *,
    logits: bool = False,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """Classify patches independently (the ground truth the dense path must match).

    Returns ``(gh, gw, 3)`` float32: softmax probabilities from the Keras model, or with
    ``logits=True`` the output layer's pre-softmax values (the hidden layer's output from
    Keras, times the output layer's weights). ``where`` (``(gh, gw)`` bool) restricts the
    work to those cells; the others are NaN.
    """
    gh, gw = grid_shape(*image.shape)
    out = np.full((gh, gw, C.NUM_CLASSES), np.nan, dtype=np.float32)
    if gh == 0:
        return out
    patches = extract_patches(np.asarray(image, dtype=np.float32))[..., None]
    sel = np.arange(gh * gw) if where is None else np.flatnonzero(np.asarray(where, bool).ravel())
    if logits:
        import keras

        hidden = keras.Model(keras_model.input, keras_model.get_layer(DENSE_HIDDEN_NAME).output)
        fc2 = keras_model.get_layer(DENSE_OUT_NAME)
        k2, b2 = fc2.kernel.numpy(), fc2.bias.numpy()

        def run(x):
            return np.asarray(hidden(x, training=False)) @ k2 + b2
    else:

        def run(x):
            return np.asarray(keras_model(x, training=False))

    flat = out.reshape(gh * gw, C.NUM_CLASSES)
    for s in range(0, len(sel), batch_size):
        idx = sel[s : s + batch_size]
        flat[idx] = run(patches[idx])
    return out


class DenseClassifier:
    """Exact fully convolutional evaluation of the patch CNN over whole images.

    Parameters
    ----------
    keras_model:
        The method's CNN (weights are copied; the model is not called).
    jit_compile:
        Compile the network call with XLA. Each new input shape is compiled once, so this
        pays off only where shapes repeat (see :mod:`.pipeline`'s GPU plan).
    device:
        TensorFlow device for the network call (``"/CPU:0"``, ``"/GPU:0"``); ``None`` lets
        TensorFlow choose (a GPU when there is one).
    """

    def __init__(self, keras_model, jit_compile: bool = False, device: str | None = None):
        import tensorflow as tf

        self._tf = tf
        self.jit_compile = bool(jit_compile)
        self.device = device
        fc1 = keras_model.get_layer(DENSE_HIDDEN_NAME)
        fc2 = keras_model.get_layer(DENSE_OUT_NAME)
        k1 = fc1.kernel.numpy()
        self._depth = C.CONV_FILTERS[-1]
        if k1.shape[0] != _FINAL * _FINAL * self._depth:
            raise ValueError(f"unexpected first dense layer shape {k1.shape}")
        with contextlib.ExitStack() as stack:
            if device is not None:  # keep the weights where the network runs
                stack.enter_context(tf.device(device))
            self._conv_w = [
                (tf.constant(layer.kernel.numpy()), tf.constant(layer.bias.numpy()))
                for layer in (keras_model.get_layer(n) for n in CONV_LAYER_NAMES)
            ]
            self._fc1_k = tf.constant(k1)
            self._fc1_b = tf.constant(fc1.bias.numpy())
            self._fc2_k = tf.constant(fc2.kernel.numpy())
            self._fc2_b = tf.constant(fc2.bias.numpy())
            # rows and columns 2 u (u = 0..7) of a cell's pooled vectors, relative to its first
            self._uv = tf.constant(2 * np.arange(_FINAL, dtype=np.int32))
        self._fn = tf.function(
            self._logits_graph,
            input_signature=[
                tf.TensorSpec([None, None, None, 1], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ],
            reduce_retracing=True,
            jit_compile=self.jit_compile,
        )

    # -- the network -------------------------------------------------------------------
    def _logits_graph(self, x, base):
        """``x`` (b, h, w, 1) images; ``base`` (n,) flat index of each requested cell's first
        pooled vector in the ``(b, hm, wm)`` stride-1 pooled map -> (n, 3) logits."""
        tf = self._tf

        def conv(t, wb):
            return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(t, wb[0], 1, "VALID"), wb[1]))

        x = conv(x, self._conv_w[0])
        x = conv(x, self._conv_w[1])
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        for wb in self._conv_w[2:]:
            x = conv(x, wb)
        m = tf.nn.max_pool2d(x, 2, 1, "VALID")
        wm = tf.shape(m)[2]
        flat = tf.reshape(m, [-1, self._depth])
        offs = tf.reshape(self._uv[:, None] * wm + self._uv[None, :], [-1])  # (64,) row-major u, v
        g = tf.gather(flat, base[:, None] + offs[None, :])  # (n, 64, depth)
        g = tf.reshape(g, [-1, _FINAL * _FINAL * self._depth])
        h = tf.nn.relu(tf.nn.bias_add(tf.matmul(g, self._fc1_k), self._fc1_b))
        return tf.nn.bias_add(tf.matmul(h, self._fc2_k), self._fc2_b)

    @staticmethod
    def pooled_shape(h: int, w: int) -> tuple[int, int]:
        """Shape of the stride-1 pooled map of an ``(h, w)`` image."""
        return (h - 4) // 2 - 7, (w - 4) // 2 - 7

    def logits_at(self, images: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Logits of chosen grid cells of equal-sized images.

        ``images`` is ``(b, h, w)`` float32; ``cells`` is ``(n, 3)`` integer ``(image, i, j)``:
        grid cell ``(i, j)`` of image ``image``, i.e. its window ``rows 10 i .. 10 i + 49, cols
        10 j .. 10 j + 49``, which must lie inside the image. Returns ``(n, 3)`` float32.
        """
        images = np.asarray(images, dtype=np.float32)
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 3)
        b, h, w = images.shape
        gh, gw = grid_shape(h, w)
        if len(cells) == 0:
            return np.zeros((0, C.NUM_CLASSES), dtype=np.float32)
        k, i, j = cells[:, 0], cells[:, 1], cells[:, 2]
        if k.min() < 0 or k.max() >= b or i.min() < 0 or i.max() >= gh or j.min() < 0 or j.max() >= gw:
            raise ValueError("a requested cell's window lies outside the images")
        hm, wm = self.pooled_shape(h, w)
        base = (k * hm + _STEP * i) * wm + _STEP * j
        if base.max() + (2 * (_FINAL - 1)) * (wm + 1) >= b * hm * wm or b * hm * wm >= 2**31:
            raise ValueError("images too large for one network call")
        x, base = images[..., None], base.astype(np.int32)
        if self.device is None:
            out = self._fn(x, base)
        else:
            with self._tf.device(self.device):
                out = self._fn(x, base)
        return np.asarray(out, dtype=np.float32)

    def warm_up(self) -> None:
        """Build the network call once (on one blank patch), so that the first real call does
        not pay for it (about 0.2 s on a 2-core CPU)."""
        self.logits_at(np.zeros((1, C.PATCH_SIZE_PX, C.PATCH_SIZE_PX), np.float32), np.zeros((1, 3), np.int64))

    def logits_batch(self, images: np.ndarray) -> np.ndarray:
        """``(b, h, w)`` images of equal size -> ``(b, gh, gw, 3)`` logits of every cell."""
        images = np.asarray(images, dtype=np.float32)
        b, h, w = images.shape
        gh, gw = grid_shape(h, w)
        if gh == 0:
            return np.zeros((b, 0, 0, C.NUM_CLASSES), dtype=np.float32)
        kk, ii, jj = np.meshgrid(np.arange(b), np.arange(gh), np.arange(gw), indexing="ij")
        cells = np.stack([kk.ravel(), ii.ravel(), jj.ravel()], axis=1)
        return self.logits_at(images, cells).reshape(b, gh, gw, C.NUM_CLASSES)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """``(b, h, w)`` images of equal size -> ``(b, gh, gw, 3)`` probabilities (softmax of
        :meth:`logits_batch`)."""
        return softmax(self.logits_batch(images))

    def logits(self, image: np.ndarray) -> np.ndarray:
        """One model-space image ``(h, w)`` -> ``(gh, gw, 3)`` logits."""
        return self.logits_batch(np.asarray(image)[None])[0]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """One model-space image ``(h, w)`` -> ``(gh, gw, 3)`` probabilities."""
        return self.predict_batch(np.asarray(image)[None])[0]
