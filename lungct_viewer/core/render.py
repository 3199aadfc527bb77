"""Annotated slice images (Pillow, Qt-free): the PNGs both the viewer and ``analyze`` export.

Layout: a header bar, the slice at its native pixel size, a footer bar. Inside the image
only the ROI pixels (red, semi-transparent), the optional heatmap, the optional reference
outlines (opaque, in the reference colour), the lesion boxes and their labels are drawn;
every other pixel is the windowed grey value, untouched. Colours and
texts come from :mod:`.labels` and :class:`~.session.Mark`, exactly as on screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import RESEARCH_NOTICE
from . import constants as C
from .labels import (
    CANDIDATE_RGB,
    LABEL_RGB,
    REFERENCE_RGB,
    ROI_ALPHA,
    ROI_RGB,
    Label,
    heat_colours,
    heat_lut,
    left_out_rgb,
)
from .session import Mark
from .study import CTVolume

HEADER_PX = 40
FOOTER_PX = 40
#: Pixels between a lesion's cross-section and the box drawn around it.
BOX_PAD_PX = 3


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


def mark_rgb(mark: Mark) -> tuple[int, int, int]:
    """A mark's colour: its call's, muted when the finding does not vote in the patient call,
    grey for a candidate below the suspicion threshold."""
    if mark.label is None:
        return CANDIDATE_RGB
    return LABEL_RGB[mark.label] if mark.in_call else left_out_rgb(LABEL_RGB[mark.label])


def mark_box(mark: Mark, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The drawn box ``(x0, y0, x1, y1)`` (inclusive) around a mark, padded, inside the image."""
    x0, y0, x1, y1 = mark.finding.bbox_px
    h, w = shape
    return (max(x0 - BOX_PAD_PX, 0), max(y0 - BOX_PAD_PX, 0), min(x1 + BOX_PAD_PX, w) - 1, min(y1 + BOX_PAD_PX, h) - 1)


def render_slice(
    volume: CTVolume,
    index: int,
    roi_mask: np.ndarray | None,
    marks: Sequence[Mark],
    *,
    threshold: float,
    model_version: str,
    window: tuple[float, float] = C.WINDOW_PRESETS["Lung"],
    heatmap: tuple[np.ndarray, str] | None = None,
    heatmap_opacity: float = 0.4,
    show_roi: bool = True,
    patient_name: str | None = None,
    reference_outline: np.ndarray | None = None,
) -> Image.Image:
    """The annotated RGB image of slice ``index`` (see module docstring).

    ``heatmap`` is ``(values (H, W) in [0, 1], kind)``; ``patient_name`` is drawn only when
    given (never by default); ``reference_outline`` (``(H, W)`` bool) is painted in the
    reference colour and named in the legend when given.
    """
    grey = window_to_uint8(volume.hu[index], window)
    h, w = grey.shape
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if heatmap is not None:
        col, cov = heat_colours(heatmap[0])
        col = col.astype(np.float32)
        a = heatmap_opacity
        rgb[cov] = rgb[cov] * (1 - a) + col[cov] * a
    if show_roi and roi_mask is not None and roi_mask.any():
        rgb[roi_mask] = rgb[roi_mask] * (1 - ROI_ALPHA) + np.array(ROI_RGB, np.float32) * ROI_ALPHA
    if reference_outline is not None:
        rgb[reference_outline] = np.array(REFERENCE_RGB, np.float32)
    canvas = Image.new("RGB", (max(w, 420), h + HEADER_PX + FOOTER_PX), (0, 0, 0))
    canvas.paste(Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB"), (0, HEADER_PX))
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
    for mark in marks:
        colour = mark_rgb(mark)
        x0, y0, x1, y1 = mark_box(mark, (h, w))
        draw.rectangle((x0, y0 + HEADER_PX, x1, y1 + HEADER_PX), outline=colour, width=1)
        ty = y0 + HEADER_PX - 14 if y0 - 14 >= 0 else y1 + HEADER_PX + 2
        draw.text((x0, ty), mark.text, fill=colour, font=small)
    fy = HEADER_PX + h + 4
    draw.rectangle((6, fy + 2, 16, fy + 12), fill=ROI_RGB)
    draw.text((20, fy), "ROI", fill=(255, 255, 255), font=small)
    x = 90
    swatches = [(LABEL_RGB[lab], lab.display.lower()) for lab in (Label.MALIGNANT, Label.BENIGN)]
    if reference_outline is not None:
        swatches.append((REFERENCE_RGB, "reference"))
    for colour, word in swatches:
        draw.rectangle((x, fy + 2, x + 10, fy + 12), outline=colour)
        draw.text((x + 14, fy), word, fill=(255, 255, 255), font=small)
        x += 14 + int(draw.textlength(word, font=small)) + 12
    if heatmap is not None:
        bar = heat_lut(80)[None].repeat(8, axis=0)
        canvas.paste(Image.fromarray(bar, "RGB"), (x, fy + 3))
        draw.text((x + 84, fy), f"P({heatmap[1]}) 0-1", fill=(255, 255, 255), font=small)
    draw.text((6, fy + 18), RESEARCH_NOTICE.replace("\u2014", "-"), fill=(255, 210, 0), font=small)
    return canvas


def image_region(canvas: Image.Image, native_shape: tuple[int, int]) -> np.ndarray:
    """The slice pixels of a rendered canvas, ``(H, W, 3)`` uint8 (for checks and tests)."""
    h, w = native_shape
    return np.asarray(canvas)[HEADER_PX : HEADER_PX + h, :w]
