"""Annotated slice images (Pillow, Qt-free): the PNGs both the viewer and ``analyze`` export.

Layout: a header bar, the slice at its native pixel size, a footer bar. Inside the image
only ROI pixels (red, semi-transparent), finding outlines and their labels are drawn; every
other pixel is the windowed grey value, untouched.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import RESEARCH_NOTICE
from . import constants as C
from .detection import SliceDetection
from .study import CTVolume

ROI_RGB = (255, 0, 0)
ROI_ALPHA = 0.45
MALIGNANT_RGB = (255, 64, 64)
BENIGN_RGB = (64, 200, 255)
HEADER_PX = 40
FOOTER_PX = 40


@lru_cache(maxsize=4)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def window_to_uint8(hu: np.ndarray, window: tuple[float, float], invert: bool = False) -> np.ndarray:
    """Grey values 0..255 for HU under a ``(width, level)`` window."""
    width, level = float(window[0]), float(window[1])
    lo = level - width / 2.0
    g = np.clip((np.asarray(hu, dtype=np.float32) - lo) * (255.0 / max(width, 1.0)), 0, 255)
    g = np.rint(g).astype(np.uint8)
    return 255 - g if invert else g


def heat_rgb(value: np.ndarray) -> np.ndarray:
    """A perceptually ordered colour map (dark blue -> cyan -> yellow -> red) for [0, 1]."""
    stops = np.array([[0, 0, 96], [0, 160, 255], [255, 230, 0], [255, 0, 0]], dtype=np.float32)
    x = np.clip(np.asarray(value, dtype=np.float32), 0, 1) * (len(stops) - 1)
    i = np.minimum(x.astype(np.int32), len(stops) - 2)
    t = (x - i)[..., None]
    return (stops[i] * (1 - t) + stops[i + 1] * t).astype(np.uint8)


def render_slice(
    volume: CTVolume,
    index: int,
    detection: SliceDetection | None,
    *,
    threshold: float,
    model_version: str,
    window: tuple[float, float] = C.WINDOW_PRESETS["Lung"],
    heatmap: tuple[np.ndarray, str] | None = None,
    heatmap_opacity: float = 0.4,
    show_roi: bool = True,
    patient_name: str | None = None,
) -> Image.Image:
    """The annotated RGB image of slice ``index`` (see module docstring for the layout).

    ``heatmap`` is ``(values (H, W) in [0, 1], kind)``; ``patient_name`` is drawn only when
    given (never by default).
    """
    grey = window_to_uint8(volume.hu[index], window)
    h, w = grey.shape
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if heatmap is not None:
        values, _kind = heatmap
        cov = values > 0.0
        col = heat_rgb(values).astype(np.float32)
        a = heatmap_opacity
        rgb[cov] = rgb[cov] * (1 - a) + col[cov] * a
    if show_roi and detection is not None and detection.roi_mask.any():
        m = detection.roi_mask
        rgb[m] = rgb[m] * (1 - ROI_ALPHA) + np.array(ROI_RGB, np.float32) * ROI_ALPHA
    img_arr = np.rint(rgb).astype(np.uint8)
    canvas = Image.new("RGB", (max(w, 360), h + HEADER_PX + FOOTER_PX), (0, 0, 0))
    canvas.paste(Image.fromarray(img_arr, "RGB"), (0, HEADER_PX))
    draw = ImageDraw.Draw(canvas)
    font, small = _font(14), _font(12)
    z = float(volume.slice_positions_mm[index])
    head = f"Slice {index + 1}/{volume.num_slices}   position {z:.1f} mm"
    if patient_name:
        head += f"   {patient_name}"
    draw.text((6, 4), head, fill=(255, 255, 255), font=font)
    draw.text(
        (6, 22),
        f"voting threshold {threshold:.2f}   W{window[0]:.0f}/L{window[1]:.0f}   model {model_version}",
        fill=(200, 200, 200),
        font=small,
    )
    findings = detection.findings if detection is not None else []
    for k, f in enumerate(findings, start=1):
        x0, y0, x1, y1 = f.bbox_px
        colour = MALIGNANT_RGB if f.label(threshold) == "malignant" else BENIGN_RGB
        pad = 3
        box = (max(x0 - pad, 0), max(y0 - pad, 0) + HEADER_PX, min(x1 + pad, w) - 1, min(y1 + pad, h) - 1 + HEADER_PX)
        draw.rectangle(box, outline=colour, width=1)
        text = f"F{k} {f.label(threshold).capitalize()} {max(f.p_malignant, f.p_benign):.2f}"
        ty = box[1] - 14 if box[1] - 14 >= HEADER_PX else box[3] + 2
        draw.text((box[0], ty), text, fill=colour, font=small)
    # footer: legend and notice
    fy = HEADER_PX + h + 4
    draw.rectangle((6, fy + 2, 16, fy + 12), fill=ROI_RGB)
    draw.text((20, fy), "ROI", fill=(255, 255, 255), font=small)
    draw.rectangle((60, fy + 2, 70, fy + 12), outline=MALIGNANT_RGB)
    draw.text((74, fy), "malignant", fill=(255, 255, 255), font=small)
    draw.rectangle((150, fy + 2, 160, fy + 12), outline=BENIGN_RGB)
    draw.text((164, fy), "benign", fill=(255, 255, 255), font=small)
    if heatmap is not None:
        kind = heatmap[1]
        bar = heat_rgb(np.linspace(0, 1, 80))[None].repeat(8, axis=0)
        canvas.paste(Image.fromarray(bar, "RGB"), (230, fy + 3))
        draw.text((314, fy), f"P({kind}) 0-1", fill=(255, 255, 255), font=small)
    draw.text((6, fy + 18), RESEARCH_NOTICE.replace("\u2014", "-"), fill=(255, 210, 0), font=small)
    return canvas


def image_region(canvas: Image.Image, native_shape: tuple[int, int]) -> np.ndarray:
    """The slice pixels of a rendered canvas, ``(H, W, 3)`` uint8 (for checks and tests)."""
    h, w = native_shape
    return np.asarray(canvas)[HEADER_PX : HEADER_PX + h, :w]
