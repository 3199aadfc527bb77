"""Sliding-window classification of a model-space slice: a reference and an exact dense path.

Both functions take a model-space network-input image ``(h, w)`` float32 (see
:func:`.preprocessing.prepare_slice`) and return ``(gh, gw, 3)`` float32 softmax
probabilities on the patch grid of :mod:`.patches`.

* :func:`classify_patches_reference` cuts every 50 x 50 patch and classifies it on its own.
* :class:`DenseClassifier` runs the convolutions once over the whole image and evaluates the
  first dense layer as an 8 x 8 convolution. With unpadded convolutions the feature maps of a
  patch are exactly a window of the slice's feature maps. The total stride before the second
  pooling is 2 and the patch stride is 10, so in pooled units patches advance by 5: patches at
  even grid indices sit on pooling phase 0 and those at odd indices on phase 1. The second
  pooling is therefore done once per phase (2 x 2 combinations) and the dense layer read at
  stride 5 (offset 0 for phase 0, offset 2 for phase 1). Results equal the reference up to
  float rounding (~1e-7).
"""

from __future__ import annotations

import numpy as np

from . import constants as C
from .model import CONV_LAYER_NAMES, DENSE_HIDDEN_NAME, DENSE_OUT_NAME
from .patches import extract_patches, grid_shape

#: Pooled-map units between neighbouring patches (patch stride / total stride 2 after pool1).
_STEP = C.PATCH_STRIDE_PX // 2
#: Size of the final feature map of one patch (8 for 50 px patches and valid convolutions).
_FINAL = 8


def classify_patches_reference(keras_model, image: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Classify every patch independently (the ground truth the dense path must match)."""
    gh, gw = grid_shape(*image.shape)
    if gh == 0:
        return np.zeros((0, 0, C.NUM_CLASSES), dtype=np.float32)
    patches = extract_patches(np.asarray(image, dtype=np.float32))[..., None]
    out = np.empty((len(patches), C.NUM_CLASSES), dtype=np.float32)
    for s in range(0, len(patches), batch_size):
        out[s : s + batch_size] = np.asarray(keras_model(patches[s : s + batch_size], training=False))
    return out.reshape(gh, gw, C.NUM_CLASSES)


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
