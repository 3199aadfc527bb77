"""A seeded, deterministic synthetic chest CT (for tests, training smoke runs and the demo).

:func:`phantom_volume` builds the volume in memory: a body ellipse of soft tissue with a
fat layer, air outside, a table, two lungs (about -850 HU, textured), vessels (thin bright
tubes crossing the slices), a vertebra and ribs (bone, ~700 HU), and nodules:

* **benign-like** (class 1): small (radius 4-7 px), round, smooth, sharp-edged, sometimes
  calcified (a bright core of several hundred HU);
* **malignant-like** (class 2): larger (radius 9-16 px), lobulated outline with spicules,
  soft-tissue HU with a blurred edge.

Nodules are spheres in 3-D (in mm), so they appear on a few neighbouring slices with a
smaller cross-section away from their centre. ``Phantom.labels`` is the per-pixel class
mask (0 background, 1 benign, 2 malignant) of the nodule bodies (spicules excluded).

The same arguments always give byte-identical pixel data. :func:`write_phantom_dicom`
writes a valid CT DICOM series (UIDs derived from the seed and the arguments) and
:func:`ensure_phantom_study` caches a 512 x 512 phantom study on disk: the demo study when
the real one cannot be built (see :mod:`.demo`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import constants as C
from .atomic import atomic_path, write_json_atomic
from .study import CTVolume
from .userdirs import default_cache_dir

#: HU of the phantom's tissues.
AIR_HU = -1000
FAT_HU = -100
SOFT_TISSUE_HU = 40
LUNG_HU = -850
VESSEL_HU = 40
BONE_HU = 700
BENIGN_HU = 60
CALCIFIED_HU = 600
MALIGNANT_HU = 35
TABLE_HU = 150
#: Lowest HU the phantom contains (so it round-trips through uint16 with intercept -1024).
MIN_HU = -1024

BENIGN_RADIUS_PX = (4.0, 7.0)
MALIGNANT_RADIUS_PX = (9.0, 16.0)
MIN_SIZE, MAX_SIZE = 96, 1024

DEMO_VERSION = "demo-v1"
DEMO_SEED = 2017
DEMO_SLICES = 40
DEMO_SIZE = 512

_SERIES_DESCRIPTION = "Synthetic phantom"
_PATIENT_NAME = "PHANTOM^DEMO"


@dataclass(frozen=True)
class Nodule:
    """One synthetic nodule: ``cls`` 1 (benign-like) or 2 (malignant-like).

    ``center`` is ``(slice, row, col)`` (slice may be fractional), ``radius_px`` the sphere
    radius in in-plane pixels.
    """

    cls: int
    center: tuple[float, float, float]
    radius_px: float
    calcified: bool = False

    def __post_init__(self) -> None:
        if self.cls not in (C.BENIGN, C.MALIGNANT):
            raise ValueError(f"nodule class must be {C.BENIGN} or {C.MALIGNANT}, got {self.cls!r}")
        if not (len(self.center) == 3 and all(math.isfinite(float(v)) for v in self.center)):
            raise ValueError(f"nodule centre must be (slice, row, col), got {self.center!r}")
        if not (math.isfinite(self.radius_px) and 1.0 <= self.radius_px <= 64.0):
            raise ValueError(f"nodule radius must be 1..64 px, got {self.radius_px!r}")

    @property
    def class_name(self) -> str:
        return C.CLASS_NAMES[self.cls]


@dataclass
class Phantom:
    """A synthetic study: the volume, its per-pixel class labels and the nodule list."""

    volume: CTVolume
    labels: np.ndarray  # (n, H, W) uint8: 0 background, 1 benign, 2 malignant
    nodules: tuple[Nodule, ...]
    seed: int
    lung_mask: np.ndarray = field(repr=False)  # (n, H, W) bool

    @property
    def hu(self) -> np.ndarray:
        return self.volume.hu


# ------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Layout:
    """Anatomy in pixel units for one image size."""

    size: int

    @property
    def c(self) -> float:
        return (self.size - 1) / 2.0

    def body(self) -> tuple[float, float, float, float]:  # centre row, col, semi-axes (ry, rx)
        s = self.size
        return 0.52 * s, self.c, 0.30 * s, 0.42 * s

    def lung(self, side: int, scale: float) -> tuple[float, float, float, float]:
        """side -1 = image left (patient right), +1 = image right (patient left)."""
        s = self.size
        return 0.48 * s, self.c + side * 0.185 * s, 0.215 * s * scale, 0.125 * s * scale

    def spine(self) -> tuple[float, float, float]:
        s = self.size
        return 0.73 * s, self.c, 0.045 * s


def _lung_scale(z: int, n: int) -> float:
    """Lungs are largest mid-volume and smaller at the apex and base."""
    if n <= 1:
        return 1.0
    t = z / (n - 1)
    return 0.8 + 0.2 * math.sin(math.pi * (0.15 + 0.7 * t))


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _validate(seed: int, n_slices: int, size: int, ps: float, ss: float) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(n_slices, (int, np.integer)) or not 1 <= n_slices <= 2000:
        raise ValueError(f"n_slices must be an integer 1..2000, got {n_slices!r}")
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    for name, v in (("pixel_spacing_mm", ps), ("slice_spacing_mm", ss)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}")


def default_nodules(seed: int, n_slices: int, size: int, pixel_spacing_mm: float = 0.7) -> tuple[Nodule, ...]:
    """One benign-like nodule in the image-left lung and one malignant-like in the other."""
    rng = np.random.default_rng([seed, 101])
    lay = _Layout(size)
    out = []
    for cls, side, zfrac, (rmin, rmax) in (
        (C.BENIGN, -1, 0.4, BENIGN_RADIUS_PX),
        (C.MALIGNANT, +1, 0.55, MALIGNANT_RADIUS_PX),
    ):
        z = int(round(zfrac * (n_slices - 1)))
        cy, cx, ry, rx = lay.lung(side, _lung_scale(z, n_slices))
        r = float(rng.uniform(rmin + 0.5, rmax - 1.5))
        r = min(r, 0.7 * rx)  # small images: keep the nodule inside the lung
        dy = float(rng.uniform(-0.25, 0.25)) * (ry - r)
        dx = float(rng.uniform(-0.2, 0.2)) * (rx - r)
        calcified = cls == C.BENIGN and bool(rng.random() < 0.5)
        out.append(Nodule(cls, (float(z), cy + dy, cx + dx), round(r, 2), calcified))
    return tuple(out)


# ------------------------------------------------------------------------------- vessels


def _vessel_samples(rng: np.random.Generator, lay: _Layout, n_slices: int, z_px_per_slice: float) -> np.ndarray:
    """Points along straight vessel segments: (N, 4) array of (z_px, row, col, radius)."""
    s = lay.size
    per_lung = max(8, int(round(40 * s / 512)))
    pts = []
    depth_px = max(1.0, (n_slices - 1) * z_px_per_slice)
    for side in (-1, 1):
        cy, cx, ry, rx = lay.lung(side, 1.0)
        hilum_x = cx - side * 0.55 * rx
        for _ in range(per_lung):
            start = np.array(
                [rng.uniform(0, depth_px), cy + rng.uniform(-0.3, 0.3) * ry, hilum_x + rng.uniform(-0.15, 0.15) * rx]
            )
            ang = rng.uniform(-math.pi / 2, math.pi / 2)
            d_in = np.array([math.sin(ang), side * math.cos(ang)])
            dz = rng.uniform(-1.0, 1.0)
            d = np.array([dz, d_in[0], d_in[1]])
            d /= np.linalg.norm(d)
            length = rng.uniform(0.5, 1.1) * ry
            r0 = rng.uniform(1.2, 2.2) * min(1.0, s / 384)
            t = np.arange(0.0, length, 0.5)
            p = start[None, :] + t[:, None] * d[None, :]
            rad = np.maximum(0.7, r0 * (1.0 - 0.5 * t / length))
            pts.append(np.column_stack([p, rad]))
    return np.concatenate(pts, axis=0)


def _draw_vessels(img: np.ndarray, samples: np.ndarray, z_px: float, half_px: float, allowed: np.ndarray) -> None:
    sel = samples[np.abs(samples[:, 0] - z_px) <= half_px]
    if sel.size == 0:
        return
    h, w = img.shape
    rows, cols, rad = sel[:, 1], sel[:, 2], sel[:, 3]
    hit = np.zeros((h, w), dtype=bool)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            ok = dy * dy + dx * dx <= rad * rad
            r = np.rint(rows[ok]).astype(np.intp) + dy
            c = np.rint(cols[ok]).astype(np.intp) + dx
            inb = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            hit[r[inb], c[inb]] = True
    hit &= allowed
    img[hit] = VESSEL_HU


# ------------------------------------------------------------------------------- nodules


@dataclass(frozen=True)
class _NoduleShape:
    """Per-nodule random shape parameters (drawn once, used on every slice)."""

    lobes: tuple[tuple[float, float, float], ...]  # (amplitude, frequency, phase)
    spicules: tuple[tuple[float, float], ...]  # (angle, relative length)
    calcium_frac: float


def _nodule_shape(rng: np.random.Generator, nod: Nodule) -> _NoduleShape:
    if nod.cls == C.MALIGNANT:
        lobes = tuple(
            (float(rng.uniform(0.08, 0.16)), float(k), float(rng.uniform(0, 2 * math.pi)))
            for k in (3, int(rng.integers(5, 8)))
        )
        n_sp = int(rng.integers(7, 12))
        spicules = tuple((float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.5, 1.0))) for _ in range(n_sp))
        return _NoduleShape(lobes, spicules, 0.0)
    return _NoduleShape((), (), float(rng.uniform(0.45, 0.7)) if nod.calcified else 0.0)


def _draw_nodule(
    img: np.ndarray,
    labels: np.ndarray,
    nod: Nodule,
    shape: _NoduleShape,
    z: int,
    z_px_per_slice: float,
) -> None:
    dz_px = (z - nod.center[0]) * z_px_per_slice
    r0 = nod.radius_px
    if abs(dz_px) >= r0:
        return
    rz = math.sqrt(r0 * r0 - dz_px * dz_px)
    if rz < 1.0:
        return
    h, w = img.shape
    cy, cx = nod.center[1], nod.center[2]
    reach = rz * (2.2 if shape.spicules else 1.2) + 3
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    rr = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    sub = img[y0:y1, x0:x1]
    lab = labels[y0:y1, x0:x1]
    if nod.cls == C.MALIGNANT:
        boundary = np.full_like(rr, rz)
        for amp, k, ph in shape.lobes:
            boundary *= 1.0 + amp * np.sin(k * theta + ph)
        inside = rr <= boundary
        # blurred edge: linear ramp over ~2 px outside the boundary
        edge = np.clip(1.0 - (rr - boundary) / 2.0, 0.0, 1.0)
        if rz > 0.45 * r0:
            for ang, rel in shape.spicules:
                # distance of each pixel from the ray at angle ``ang``
                ux, uy = math.cos(ang), math.sin(ang)
                along = dx * ux + dy * uy
                across = np.abs(-dx * uy + dy * ux)
                start = rz * 0.8
                end = rz * (1.0 + rel)
                on = (along > start) & (along < end) & (across <= 0.6 + 0.6 * (end - along) / (end - start))
                edge = np.where(on & (edge < 0.75), 0.75, edge)
        blend = edge
        sub[:] = sub * (1.0 - blend) + MALIGNANT_HU * blend
        lab[inside] = C.MALIGNANT
    else:
        inside = rr <= rz
        sub[inside] = BENIGN_HU
        if shape.calcium_frac > 0:
            core = rr <= rz * shape.calcium_frac
            sub[core] = CALCIFIED_HU
        lab[inside] = C.BENIGN


# ------------------------------------------------------------------------------- volume


def phantom_volume(
    seed: int = 0,
    n_slices: int = 16,
    size: int = 256,
    pixel_spacing_mm: float = 0.7,
    slice_spacing_mm: float = 2.5,
    nodules: Sequence[Nodule] | None = None,
) -> Phantom:
    """A synthetic chest CT in memory (deterministic for given arguments).

    Parameters
    ----------
    seed
        Seed of every random choice (anatomy texture, vessels, nodule shapes, noise).
    n_slices, size
        Number of axial slices and image side in pixels (96..1024).
    pixel_spacing_mm, slice_spacing_mm
        Geometry written into the volume (and DICOM). Nodules are spheres in mm, so the
        slice spacing sets how many slices a nodule spans.
    nodules
        The nodules to draw; by default :func:`default_nodules` (one benign-like, one
        malignant-like, in different lungs).
    """
    _validate(seed, n_slices, size, pixel_spacing_mm, slice_spacing_mm)
    seed, n_slices, size = int(seed), int(n_slices), int(size)
    ps, ss = float(pixel_spacing_mm), float(slice_spacing_mm)
    nods = tuple(nodules) if nodules is not None else default_nodules(seed, n_slices, size, ps)
    for nod in nods:
        if not isinstance(nod, Nodule):
            raise TypeError(f"nodules must be Nodule objects, got {type(nod).__name__}")

    lay = _Layout(size)
    z_px_per_slice = ss / ps
    rng = np.random.default_rng([seed, 1])
    vessels = _vessel_samples(rng, lay, n_slices, z_px_per_slice)
    shapes = [_nodule_shape(np.random.default_rng([seed, 2, i]), n) for i, n in enumerate(nods)]
    n_ribs = 7
    rib_angles = np.linspace(0.1 * math.pi, 0.75 * math.pi, n_ribs)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    by, bx, bry, brx = lay.body()
    body = _ellipse(yy, xx, by, bx, bry, brx)
    fat_t = 0.035 * size
    inner = _ellipse(yy, xx, by, bx, bry - fat_t, brx - fat_t)
    sy, sx, sr = lay.spine()
    spine = _ellipse(yy, xx, sy, sx, sr, sr * 1.1)
    spinous = _ellipse(yy, xx, sy + 1.6 * sr, sx, 0.8 * sr, 0.3 * sr)
    table = (yy >= by + bry + 0.03 * size) & (yy <= by + bry + 0.045 * size) & (np.abs(xx - bx) <= 0.4 * size)
    # low-frequency lung texture, shared by all slices but shifted per slice
    tex_rng = np.random.default_rng([seed, 3])
    coarse = tex_rng.normal(0.0, 1.0, size=(n_slices, max(4, size // 16), max(4, size // 16)))

    from scipy import ndimage

    hu = np.empty((n_slices, size, size), dtype=np.int16)
    labels = np.zeros((n_slices, size, size), dtype=np.uint8)
    lungs = np.zeros((n_slices, size, size), dtype=bool)
    for z in range(n_slices):
        img = np.full((size, size), float(AIR_HU))
        img[table] = TABLE_HU
        img[body] = FAT_HU
        img[inner] = SOFT_TISSUE_HU
        scale = _lung_scale(z, n_slices)
        lung = np.zeros((size, size), dtype=bool)
        for side in (-1, 1):
            lung |= _ellipse(yy, xx, *lay.lung(side, scale))
        lungs[z] = lung
        texture = ndimage.zoom(coarse[z], size / coarse.shape[1], order=1)[:size, :size]
        img[lung] = LUNG_HU + 25.0 * texture[lung]
        _draw_vessels(img, vessels, z * z_px_per_slice, 0.5 * z_px_per_slice, lung)
        # bone: vertebra, spinous process, ribs in the chest wall (visible on most slices)
        img[spine | spinous] = BONE_HU
        for i, a in enumerate(rib_angles):
            if (z + i) % 4 == 0:
                continue
            for side in (-1, 1):
                ly, lx, lry, lrx = lay.lung(side, 1.0)
                gap = 0.03 * size
                rib = _ellipse(
                    yy,
                    xx,
                    ly - (lry + gap) * math.cos(a),
                    lx + side * (lrx + gap) * math.sin(a),
                    0.012 * size + 1,
                    0.02 * size + 1,
                )
                img[rib & ~lung] = BONE_HU
        img = ndimage.gaussian_filter(img, 0.6)
        for nod, shp in zip(nods, shapes, strict=True):
            _draw_nodule(img, labels[z], nod, shp, z, z_px_per_slice)
        noise = np.random.default_rng([seed, 4, z]).normal(0.0, 12.0, size=(size, size))
        img += noise
        hu[z] = np.clip(np.rint(img), MIN_HU, 3071).astype(np.int16)

    uids = _uids(seed, n_slices, size, ps, ss, nods)
    half = (size - 1) / 2.0 * ps
    pos = np.stack([np.full(n_slices, -half), np.full(n_slices, -half), -ss * np.arange(n_slices)], axis=1)
    vol = CTVolume(
        hu=hu,
        pixel_spacing_mm=(ps, ps),
        image_positions_mm=pos,
        orientation=np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        sop_instance_uids=uids["sop"],
        series_uid=uids["series"],
        description=_SERIES_DESCRIPTION,
        patient_name=_PATIENT_NAME,
        patient_id=f"PHANTOM-{seed}",
        study_uid=uids["study"],
    )
    return Phantom(volume=vol, labels=labels, nodules=nods, seed=seed, lung_mask=lungs)


def _uids(seed: int, n: int, size: int, ps: float, ss: float, nods: Sequence[Nodule]) -> dict:
    key = json.dumps(
        {"seed": seed, "n": n, "size": size, "ps": ps, "ss": ss, "nodules": [asdict(x) for x in nods]},
        sort_keys=True,
    )

    def uid(*parts: object) -> str:
        # a "2.25" UID from a 128-bit hash (as for a UUID), so it is stable across runs
        text = "|".join(["lungct-phantom", key, *map(str, parts)])
        return "2.25." + str(int(hashlib.sha256(text.encode()).hexdigest()[:32], 16))

    return {
        "study": uid("study"),
        "series": uid("series"),
        "frame": uid("frame"),
        "sop": tuple(uid("sop", i) for i in range(n)),
    }


# ------------------------------------------------------------------------------- DICOM


def write_phantom_dicom(
    phantom: Phantom,
    out_dir: str | os.PathLike[str],
    masks_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the phantom as a CT DICOM series (one file per slice) into ``out_dir``.

    Files are ``0001.dcm``, ``0002.dcm``, ... (slice index + 1), explicit VR little endian,
    CT Image Storage, stored as uint16 with RescaleIntercept -1024. Each file is written
    atomically. When ``masks_path`` is given, the label masks go there as ``.npz``
    (``labels``, ``sop_instance_uids``, ``nodules`` as JSON) -- never into ``out_dir``.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian

    out = Path(out_dir)
    if masks_path is not None:
        mp = Path(masks_path).resolve()
        if mp.parent == out.resolve():
            raise ValueError("masks_path must not be inside the series folder (keep DICOM apart)")
    out.mkdir(parents=True, exist_ok=True)
    vol = phantom.volume
    n, rows, cols = vol.shape
    uids = _uids(
        phantom.seed,
        n,
        rows,
        vol.pixel_spacing_mm[0],
        float(vol.slice_spacing_mm or 1.0),
        phantom.nodules,
    )
    ss = float(vol.slice_spacing_mm or 1.0)
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = vol.sop_instance_uids[i]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = vol.sop_instance_uids[i]
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20170101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = ""
        ds.Modality = "CT"
        ds.Manufacturer = "LungCT Viewer synthetic phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Synthetic chest CT"
        ds.SeriesDescription = vol.description or _SERIES_DESCRIPTION
        ds.PatientName = vol.patient_name or _PATIENT_NAME
        ds.PatientID = vol.patient_id or f"PHANTOM-{phantom.seed}"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = _ds(ss)
        ds.SpacingBetweenSlices = _ds(ss)
        ds.KVP = "120"
        ds.ConvolutionKernel = "SYNTHETIC"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = vol.study_uid or uids["study"]
        ds.SeriesInstanceUID = vol.series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [_ds(v) for v in vol.image_positions_mm[i]]
        ds.ImageOrientationPatient = [_ds(v) for v in vol.orientation]
        ds.FrameOfReferenceUID = uids["frame"]
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(float(vol.image_positions_mm[i][2]))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [_ds(vol.pixel_spacing_mm[0]), _ds(vol.pixel_spacing_mm[1])]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.WindowCenter = "-600"
        ds.WindowWidth = "1500"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        stored = np.clip(vol.hu[i].astype(np.int32) + 1024, 0, 65535).astype("<u2")
        ds.PixelData = stored.tobytes()
        target = out / f"{i + 1:04d}.dcm"
        with atomic_path(target, suffix=".dcm.tmp") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    if masks_path is not None:
        write_masks(phantom, masks_path)
    return out


def _ds(v: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    s = f"{float(v):.6f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s[:16]


def write_masks(phantom: Phantom, path: str | os.PathLike[str]) -> Path:
    """Save labels, SOPInstanceUIDs and nodule descriptions as ``.npz`` (atomically, no pickle)."""
    path = Path(path)
    nodules = json.dumps([asdict(n) for n in phantom.nodules])
    with atomic_path(path, suffix=".npz.tmp") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                labels=phantom.labels,
                sop_instance_uids=np.array(phantom.volume.sop_instance_uids),
                nodules=np.array(nodules),
            )
    return path


def read_masks(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[str, ...], tuple[Nodule, ...]]:
    """Read what :func:`write_masks` wrote: ``(labels, sop_instance_uids, nodules)``."""
    with np.load(path, allow_pickle=False) as z:
        labels = z["labels"]
        uids = tuple(str(u) for u in z["sop_instance_uids"])
        nods = tuple(
            Nodule(d["cls"], tuple(d["center"]), d["radius_px"], d["calcified"]) for d in json.loads(str(z["nodules"]))
        )
    return labels, uids, nods


# ------------------------------------------------------------------------------- demo study


def demo_phantom() -> Phantom:
    """The phantom demo study (512 x 512, 40 slices)."""
    return phantom_volume(seed=DEMO_SEED, n_slices=DEMO_SLICES, size=DEMO_SIZE)


def ensure_demo_study(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The demo study's folder: :func:`lungct_viewer.core.demo.ensure_demo_study`.

    A real CT slab when the shared data are present (or it is cached), else the phantom.
    """
    from .demo import ensure_demo_study as ensure

    return ensure(cache_dir)


def ensure_phantom_study(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the phantom demo study once into ``cache_dir`` (default: the user's cache folder).

    Returns the folder holding the DICOM series. Its label masks are in
    ``<folder>-masks.npz`` beside it. An incomplete or damaged cache is rewritten.
    """
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = base / DEMO_VERSION
    marker = base / f"{DEMO_VERSION}.complete.json"
    masks = base / f"{DEMO_VERSION}-masks.npz"
    if _demo_complete(folder, marker, masks):
        return folder
    base.mkdir(parents=True, exist_ok=True)
    phantom = demo_phantom()
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEMO_VERSION}.", dir=base))
    try:
        write_phantom_dicom(phantom, tmp)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            # another process finished first
            if _demo_files_ok(folder):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        write_masks(phantom, masks)
        files = sorted(p.name for p in folder.iterdir())
        write_json_atomic(
            marker,
            {
                "version": DEMO_VERSION,
                "seed": DEMO_SEED,
                "files": files,
                "sizes": [(folder / f).stat().st_size for f in files],
            },
        )
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _demo_files_ok(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    names = sorted(p.name for p in folder.iterdir())
    return names == [f"{i + 1:04d}.dcm" for i in range(DEMO_SLICES)]


def _demo_complete(folder: Path, marker: Path, masks: Path) -> bool:
    if not (marker.is_file() and masks.is_file() and _demo_files_ok(folder)):
        return False
    try:
        info = json.loads(marker.read_text())
        files = sorted(p.name for p in folder.iterdir())
        sizes = [(folder / f).stat().st_size for f in files]
    except (OSError, ValueError):
        return False
    return info.get("files") == files and info.get("sizes") == sizes
