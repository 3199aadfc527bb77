"""The demo study a new user sees first: a slab of a real chest CT around its tumour (Qt-free).

:func:`ensure_demo_study` returns a folder of DICOM files in the user's cache folder:

* **LIDC-IDRI-0001, 24 slices** (2.5 mm apart, 60 mm of chest) centred on the patient's
  malignant nodule (about 23 mm, at z = -116 mm; ``lidc-nodules/nodules.csv``), built once
  from the shared data (``$LUNGCT_DATA_DIR`` or ``../shared/data`` beside the repository).
  The slices are copied with their headers and UIDs; only the pixel data's encoding changes,
  to a lossless compression (JPEG 2000 lossless, else RLE lossless, else uncompressed), and
  the decoded pixels are checked to equal the source's before anything is kept. An empty
  SeriesDescription is filled in to say what the slab is. The source files are only read.
  LIDC-IDRI is licensed CC BY 3.0 (:data:`ATTRIBUTION`).
* the **synthetic phantom** (:func:`~.phantom.ensure_phantom_study`) when the real data are
  absent and no slab was built before: say so on screen (:func:`demo_study_note`).

Every file is written in a temporary folder that is renamed into place when complete, with a
marker listing the files and their sizes; an incomplete or damaged cache is rebuilt.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import write_json_atomic
from .errors import StudyLoadError
from .phantom import DEMO_VERSION as PHANTOM_DEMO_VERSION
from .phantom import ensure_phantom_study
from .study import SeriesInfo
from .userdirs import default_cache_dir, default_data_dir

logger = logging.getLogger(__name__)

#: Name of the cached real demo study (changes when its content would).
DEMO_NAME = "lidc-idri-0001-slab-v1"
#: Where the source study lies below the data folder, and its series.
SOURCE_STUDY = Path("lidc-idri") / "LIDC-IDRI-0001"
SOURCE_SERIES_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
#: Centre of the nodule along the body axis (``coordZ`` of nodules.csv, mm).
NODULE_CENTRE_Z_MM = -115.87
#: Slices in the slab (2.5 mm apart in the source).
SLAB_SLICES = 24
#: Transfer syntaxes tried in turn; the first whose encoder is available and round-trips wins.
LOSSLESS_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5")  # JPEG 2000 lossless, RLE lossless
#: Series description written when the source has none.
SLAB_DESCRIPTION = "LIDC-IDRI-0001 demo slab"
ATTRIBUTION = (
    "LIDC-IDRI (CC BY 3.0): Armato SG III et al. (2015), Data From LIDC-IDRI, The Cancer Imaging "
    "Archive, doi:10.7937/K9/TCIA.2015.LO9QL9SX; Armato SG III et al., Medical Physics 38:915-931, 2011."
)

_MARKER_SUFFIX = ".complete.json"


def ensure_demo_study(
    cache_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The demo study's folder: the real LIDC-IDRI-0001 slab, or the phantom (see module doc).

    Parameters
    ----------
    cache_dir
        Where demo studies are kept (default :func:`~.userdirs.default_cache_dir`).
    data_dir
        The shared real-data folder (default :func:`~.userdirs.default_data_dir`).
    """
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = base / DEMO_NAME
    if _complete(folder):
        return folder
    source = Path(data_dir) if data_dir is not None else default_data_dir()
    source = source / SOURCE_STUDY
    if source.is_dir():
        try:
            return build_slab(source, base)
        except Exception as exc:  # noqa: BLE001 - the demo is optional: fall back, say why in the log
            logger.warning(
                "the real demo study could not be built (%s: %s); using the synthetic phantom",
                type(exc).__name__,
                exc,
            )
    return ensure_phantom_study(base)


def is_synthetic(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` is the phantom demo study (not a patient)."""
    return Path(folder).name == PHANTOM_DEMO_VERSION


def demo_study_note(folder: str | os.PathLike[str]) -> str:
    """One sentence for the screen saying what the demo study in ``folder`` is."""
    if is_synthetic(folder):
        return (
            "Demo study: a synthetic phantom, not a patient. The model was trained on real CT, so its "
            "findings here only show how the viewer works."
        )
    return (
        f"Demo study: {SLAB_SLICES} slices of LIDC-IDRI-0001 around its malignant nodule "
        "(public LIDC-IDRI collection, CC BY 3.0)."
    )


def build_slab(source: Path, cache_dir: Path) -> Path:
    """Build the real demo study from the LIDC-IDRI-0001 folder ``source`` into ``cache_dir``.

    Raises
    ------
    StudyLoadError
        The source folder does not hold the expected series.
    """
    from .dicom import scan_folder, select_series

    files = _slab_files(select_series(scan_folder(source), SOURCE_SERIES_UID))
    cache_dir.mkdir(parents=True, exist_ok=True)
    folder = cache_dir / DEMO_NAME
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEMO_NAME}.", dir=cache_dir))
    try:
        syntaxes = set()
        for i, path in enumerate(files):
            data, uid = _encode_slice(path)
            (tmp / f"{i + 1:04d}.dcm").write_bytes(data)
            syntaxes.add(uid)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        names = sorted(p.name for p in folder.iterdir())
        write_json_atomic(
            folder.with_name(folder.name + _MARKER_SUFFIX),
            {
                "name": DEMO_NAME,
                "source": f"{SOURCE_STUDY.as_posix()} series {SOURCE_SERIES_UID}",
                "transfer_syntaxes": sorted(syntaxes),
                "attribution": ATTRIBUTION,
                "files": names,
                "sizes": [(folder / n).stat().st_size for n in names],
            },
        )
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built the demo study: %d slices", len(files))
    return folder


def _slab_files(info: SeriesInfo) -> list[str]:
    """The :data:`SLAB_SLICES` files of ``info`` (ordered head to feet) nearest the nodule."""
    import pydicom

    z = []
    for path in info.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["ImagePositionPatient"])
        z.append(float(ds.ImagePositionPatient[2]))
    if len(z) < SLAB_SLICES:
        raise StudyLoadError(f"The demo source series has {len(z)} slices, fewer than {SLAB_SLICES}.")
    centre = int(np.argmin(np.abs(np.asarray(z) - NODULE_CENTRE_Z_MM)))
    start = min(max(centre - SLAB_SLICES // 2, 0), len(z) - SLAB_SLICES)
    return list(info.files[start : start + SLAB_SLICES])


def _encode_slice(path: str, syntaxes: Sequence[str] = LOSSLESS_SYNTAXES) -> tuple[bytes, str]:
    """The file at ``path`` as DICOM bytes with losslessly compressed pixels, and the syntax used.

    The first of ``syntaxes`` whose encoder is available and whose output decodes to exactly
    the source's stored values wins; the file stays uncompressed when none does.
    """
    import pydicom

    def read():
        ds = pydicom.dcmread(path)
        if not str(ds.get("SeriesDescription", "") or "").strip():
            ds.SeriesDescription = SLAB_DESCRIPTION
        return ds

    def serialise(ds) -> bytes:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()

    original = read()
    pixels = original.pixel_array
    for uid in syntaxes:
        ds = read()
        try:
            ds.compress(uid, generate_instance_uid=False)  # lossless: the same instance
            data = serialise(ds)
            decoded = pydicom.dcmread(io.BytesIO(data)).pixel_array
        except Exception as exc:  # noqa: BLE001 - encoder missing or failing: try the next one
            logger.debug("lossless encoding %s unavailable: %s", uid, type(exc).__name__)
            continue
        if decoded.dtype == pixels.dtype and np.array_equal(decoded, pixels):
            return data, uid
        logger.debug("encoding %s did not round-trip; not used", uid)
    return serialise(original), str(original.file_meta.TransferSyntaxUID)


def _complete(folder: Path) -> bool:
    marker = folder.with_name(folder.name + _MARKER_SUFFIX)
    if not (folder.is_dir() and marker.is_file()):
        return False
    try:
        info = json.loads(marker.read_text())
        names = sorted(p.name for p in folder.iterdir())
        sizes = [(folder / n).stat().st_size for n in names]
    except (OSError, ValueError):
        return False
    return info.get("name") == DEMO_NAME and info.get("files") == names and info.get("sizes") == sizes
