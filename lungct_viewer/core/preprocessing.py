"""The one preprocessing path from HU to network input, shared by training and inference.

Two steps, always in this order:

1. :func:`resample_to_model_spacing` -- in-plane resampling (bilinear) of a native slice so
   that one model pixel is :data:`~.constants.MODEL_PIXEL_SPACING_MM` mm. A 50-pixel patch
   therefore always spans 35 x 35 mm, whatever the scanner's field of view. Model pixel
   ``(i, j)`` samples native pixel ``(i * fy, j * fx)`` where ``(fy, fx)`` =
   ``MODEL_PIXEL_SPACING_MM / pixel_spacing_mm`` (native pixels per model pixel).
2. :func:`hu_to_network_input` -- HU clipped to [INPUT_HU_MIN, INPUT_HU_MAX] and scaled
   linearly to [0, 1] (float32).

:func:`prepare_slice` does both and returns the geometry needed to map results back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import constants as C


def hu_to_network_input(hu: np.ndarray) -> np.ndarray:
    """Map HU to the network's input range: clip to [-1000, 400] HU, scale to [0, 1] float32."""
    x = np.asarray(hu, dtype=np.float32)
    x = (x - np.float32(C.INPUT_HU_MIN)) * np.float32(1.0 / (C.INPUT_HU_MAX - C.INPUT_HU_MIN))
    return np.clip(x, 0.0, 1.0, out=x)


def native_per_model_px(pixel_spacing_mm: tuple[float, float]) -> tuple[float, float]:
    """Native pixels per model pixel ``(fy, fx)``; exactly 1.0 when within tolerance."""
    out = []
    for sp in pixel_spacing_mm:
        sp = float(sp)
        if not np.isfinite(sp) or sp <= 0:
            raise ValueError(f"pixel spacing must be a positive number of mm, got {sp!r}")
        f = C.MODEL_PIXEL_SPACING_MM / sp
        out.append(1.0 if abs(f - 1.0) <= C.RESAMPLE_TOLERANCE else f)
    return out[0], out[1]


def model_shape(native_shape: tuple[int, int], factors: tuple[float, float]) -> tuple[int, int]:
    """Shape of the model-space image for a native ``(rows, cols)`` image."""
    return tuple(int(np.floor((n - 1) / f + 1e-9)) + 1 for n, f in zip(native_shape, factors))  # type: ignore[return-value]


def resample_to_model_spacing(image: np.ndarray, pixel_spacing_mm: tuple[float, float], order: int = 1) -> np.ndarray:
    """Resample a 2-D native image to model spacing (bilinear for ``order=1``, nearest for 0).

    Returns the input unchanged (as float32 for ``order=1``) when no resampling is needed.
    """
    fy, fx = native_per_model_px(pixel_spacing_mm)
    img = np.asarray(image)
    if order == 1:
        img = img.astype(np.float32, copy=False)
    if fy == 1.0 and fx == 1.0:
        return img
    h, w = model_shape(img.shape, (fy, fx))
    ys = np.arange(h) * fy
    xs = np.arange(w) * fx
    if order == 0:
        yi = np.clip(np.rint(ys).astype(np.intp), 0, img.shape[0] - 1)
        xi = np.clip(np.rint(xs).astype(np.intp), 0, img.shape[1] - 1)
        return img[np.ix_(yi, xi)]
    # separable bilinear interpolation
    y0 = np.clip(np.floor(ys).astype(np.intp), 0, img.shape[0] - 1)
    y1 = np.clip(y0 + 1, 0, img.shape[0] - 1)
    wy = (ys - y0).astype(np.float32)[:, None]
    x0 = np.clip(np.floor(xs).astype(np.intp), 0, img.shape[1] - 1)
    x1 = np.clip(x0 + 1, 0, img.shape[1] - 1)
    wx = (xs - x0).astype(np.float32)[None, :]
    rows = img[y0] * (1 - wy) + img[y1] * wy
    return (rows[:, x0] * (1 - wx) + rows[:, x1] * wx).astype(np.float32)


@dataclass(frozen=True)
class PreparedSlice:
    """A slice ready for the network, with the geometry to map results back to native pixels."""

    image: np.ndarray  # (h, w) float32 network input in [0, 1], model space
    hu_model: np.ndarray  # (h, w) float32 HU, model space (for field masks)
    native_shape: tuple[int, int]
    native_per_model: tuple[float, float]  # (fy, fx)

    def model_to_native_mask(self, mask: np.ndarray) -> np.ndarray:
        """Nearest-neighbour map of a model-space ``(h, w)`` array onto the native grid."""
        return model_to_native(mask, self.native_shape, self.native_per_model)


def model_to_native(
    arr: np.ndarray, native_shape: tuple[int, int], native_per_model: tuple[float, float]
) -> np.ndarray:
    """Nearest-neighbour map of a model-space ``(h, w, ...)`` array onto a native grid."""
    fy, fx = native_per_model
    if fy == 1.0 and fx == 1.0 and arr.shape[:2] == tuple(native_shape):
        return arr
    yi = np.clip(np.rint(np.arange(native_shape[0]) / fy).astype(np.intp), 0, arr.shape[0] - 1)
    xi = np.clip(np.rint(np.arange(native_shape[1]) / fx).astype(np.intp), 0, arr.shape[1] - 1)
    return arr[yi][:, xi]


def prepare_slice(hu: np.ndarray, pixel_spacing_mm: tuple[float, float]) -> PreparedSlice:
    """Native HU slice -> model-space network input (the single preprocessing entry point)."""
    hu = np.asarray(hu)
    if hu.ndim != 2:
        raise ValueError(f"a slice must be 2-D, got shape {hu.shape}")
    factors = native_per_model_px(pixel_spacing_mm)
    hu_model = resample_to_model_spacing(hu, pixel_spacing_mm, order=1)
    return PreparedSlice(
        image=hu_to_network_input(hu_model),
        hu_model=hu_model,
        native_shape=(int(hu.shape[0]), int(hu.shape[1])),
        native_per_model=factors,
    )
