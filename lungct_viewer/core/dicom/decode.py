"""Decoding slices to Hounsfield units, in parallel.

:func:`decode_slices` decodes the files of a series in a thread pool. Each slice is read in
one of two ways:

* **fast**: native little-endian 16-bit pixels are read straight from the offset the scan
  recorded in the file's :class:`~.headers.DicomHeader`, when the file has not changed since
  (same size and modification time), without parsing the header again;
* **full**: otherwise the file is read with pydicom and decoded by its pixel handlers
  (compressed transfer syntaxes included).

Stored values become HU with RescaleSlope / RescaleIntercept; pixels marked as padding
(PixelPaddingValue, PixelPaddingRangeLimit) become :data:`PADDING_HU`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .headers import (
    NATIVE_LITTLE_ENDIAN,
    DicomHeader,
    Skip,
    header_from_dataset,
    os_reason,
    read_dataset,
    stat_key,
    why_not_ct_slice,
)
from .parallel import CancelCallback, ProgressCallback, run_parallel

logger = logging.getLogger(__name__)

#: HU written into pixels that the scanner marked as padding (outside the reconstruction
#: circle): the air floor of a CT scale.
PADDING_HU = -1024


@dataclass
class DecodedSlice:
    """One decoded slice: its header and its pixels in HU, ``(rows, cols)`` int16."""

    header: DicomHeader
    hu: np.ndarray


def decode_slices(
    files: Sequence[str],
    scanned: Mapping[str, DicomHeader],
    progress: ProgressCallback | None,
    cancel: CancelCallback | None,
) -> list[DecodedSlice | Exception]:
    """Decode ``files`` in parallel; one :class:`DecodedSlice` or exception per file, in order.

    ``scanned`` maps a path to the header the scan read for it (enables the fast path). A
    :class:`~.headers.Skip` result says in plain words why a slice cannot be used.
    Raises :class:`~..errors.LoadCancelled` when ``cancel()`` returns True.
    """

    def decode(path: str) -> DecodedSlice:
        return decode_slice(path, scanned.get(path))

    return run_parallel(decode, files, progress, cancel, "Loading the series")


def decode_slice(path: str, scanned: DicomHeader | None = None) -> DecodedSlice:
    """Decode one file to HU (raises :class:`~.headers.Skip` with the reason when it cannot)."""
    arr = _read_native_pixels(scanned) if scanned is not None and scanned.path == path else None
    if arr is not None:
        h = scanned
    else:
        ds = read_dataset(path)
        h = header_from_dataset(ds, path)
        reason = why_not_ct_slice(h)
        if reason is not None:
            raise Skip(reason)
        try:
            arr = np.asarray(_pixels(ds, h))
        except MemoryError:
            raise Skip("is too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure
            raise Skip(_decode_reason(ds, exc)) from None
    if arr.ndim != 2:
        raise Skip("holds several frames or colour channels, not one CT slice")
    if arr.shape != (h.rows, h.cols):
        raise Skip("has pixel data that does not match its image size")
    try:
        hu = to_hu(arr, h)
    except Exception:  # noqa: BLE001
        raise Skip("has pixel values that could not be converted to HU") from None
    return DecodedSlice(header=h, hu=hu)


def to_hu(arr: np.ndarray, h: DicomHeader) -> np.ndarray:
    """Stored values -> HU (int16): Rescale Slope/Intercept, padding -> :data:`PADDING_HU`."""
    slope, intercept = h.slope, h.intercept
    hu = None
    if arr.dtype.kind in "iu" and slope == 1.0 and float(intercept).is_integer() and arr.size:
        # fast path (the common case): integer shift that cannot overflow int16
        lo, hi, ic = int(arr.min()), int(arr.max()), int(intercept)
        if -32768 <= lo + ic and hi + ic <= 32767 and -32768 <= lo and hi <= 32767:
            hu = arr.astype(np.int16)
            hu += np.int16(ic)
    if hu is None:
        hu = np.rint(arr.astype(np.float64) * slope + intercept)
        hu = np.clip(hu, -32768, 32767).astype(np.int16)

    pad, lim = h.padding, h.padding_limit
    if pad is not None and arr.dtype.kind in "iu":
        bits = h.bits_allocated or 16
        if arr.dtype.kind == "i":
            pad = _as_signed(pad, bits)
            lim = _as_signed(lim, bits) if lim is not None else None
        if lim is None:
            mask = arr == pad
        else:
            lo_, hi_ = min(pad, lim), max(pad, lim)
            mask = (arr >= lo_) & (arr <= hi_)
        if mask.any():
            hu[mask] = PADDING_HU
    return hu


def _as_signed(value: int, bits: int) -> int:
    if value >= 2 ** (bits - 1):
        value -= 2**bits
    return value


def _pixels(ds: Any, h: DicomHeader) -> np.ndarray:
    """Stored pixel values of one frame; a fast path for native little-endian 16-bit data."""
    if h.transfer_syntax in NATIVE_LITTLE_ENDIAN and h.bits_allocated == 16 and h.bits_stored == 16:
        raw = ds.PixelData if "PixelData" in ds else None
        if isinstance(raw, (bytes, bytearray)) and len(raw) >= 2 * h.rows * h.cols:
            arr = np.frombuffer(raw, dtype="<i2" if h.signed else "<u2", count=h.rows * h.cols)
            return arr.reshape(h.rows, h.cols)
    return ds.pixel_array


def _read_native_pixels(h: DicomHeader) -> np.ndarray | None:
    """Native 16-bit pixels read at the offset the scan recorded (no header parsing).

    None when the fast path does not apply (the file changed since the scan, or the data
    are not plain 16-bit words): the caller then reads the file with pydicom.
    """
    if (
        h.pixel_offset is None
        or h.bits_allocated != 16
        or h.bits_stored != 16
        or h.frames != 1
        or h.samples != 1
        or h.stat_key is None
        or stat_key(h.path) != h.stat_key
    ):
        return None
    need = 2 * h.rows * h.cols
    if h.pixel_length is None or h.pixel_length < need:
        return None
    try:
        with open(h.path, "rb") as fh:
            fh.seek(h.pixel_offset)
            buf = fh.read(need)
    except OSError as exc:
        raise Skip(f"could not be read ({os_reason(exc)})") from None
    if len(buf) < need:
        raise Skip("could not be decoded (the pixel data is incomplete or damaged)")
    arr = np.frombuffer(buf, dtype="<i2" if h.signed else "<u2")
    return arr.reshape(h.rows, h.cols)


def _decode_reason(ds: Any, exc: BaseException) -> str:
    try:
        ts = ds.file_meta.TransferSyntaxUID
        name = str(ts.name)
        compressed = bool(ts.is_compressed)
    except Exception:  # noqa: BLE001
        name, compressed = "", False
    low = name.lower()
    if "jpeg 2000" in low:
        hint = "JPEG 2000 decoder missing?"
    elif "jpeg-ls" in low or "jpeg ls" in low:
        hint = "JPEG-LS decoder missing?"
    elif "jpeg" in low:
        hint = "JPEG decoder missing?"
    elif compressed and name:
        hint = f"{name} compression: decoder missing or data damaged"
    else:
        hint = "the pixel data is incomplete or damaged"
    logger.debug("slice decode failed: %s", type(exc).__name__)
    return f"could not be decoded ({hint})"
