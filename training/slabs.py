"""Thick-slab reconstructions of thin-slice series: more thick-slice scans from the same patients.

Many chest CTs are read as 5-8 mm slices (older scanners, PET/CT, planning CT, archives that
keep only the thick reconstruction). On thick slices a vessel that runs obliquely moves by more
than its width from one slice to the next, so its cross-sections no longer join in 3-D and look
like small isolated nodules: the second reading needs thick-slice scans to be fitted and
scored on, and the shared data holds one (Lung_Dx-A0001, 5 mm).

A scanner's thick reconstruction of an acquisition is close to the mean of the thin slices it
covers (a box-shaped slice sensitivity profile). :func:`thick_slab` makes one: consecutive
groups of ``k`` thin slices averaged in HU, at ``k`` times the spacing, placed at the group's
mean position. Such a series is *derived*: it comes from the patient, scanner and kernel of
its source, so leave-one-study-out keeps it with its source study.

Ground truth moves with it (:func:`slab_truth`): a nodule's box on a slab is the union of its
boxes on the thin slices the slab covers; other marks move to the slab holding their slice.
"""

from __future__ import annotations

import numpy as np

from lungct_viewer.core.study import CTVolume

from .ground_truth import Box, StudyTruth, TruthNodule

#: Slice spacings (mm) of the derived series made of each thin-slice series.
SLAB_TARGETS_MM = (5.0, 7.5)
#: A series is thin enough to derive a slab of ``t`` mm when ``t / spacing`` rounds to at
#: least this many slices per slab.
MIN_SLICES_PER_SLAB = 2


def slab_factors(slice_spacing_mm: float | None, targets_mm=SLAB_TARGETS_MM) -> list[int]:
    """Slices per slab for each target spacing a series of ``slice_spacing_mm`` can make (no
    repeats, in increasing order)."""
    if not slice_spacing_mm or slice_spacing_mm <= 0:
        return []
    ks = {int(round(t / slice_spacing_mm)) for t in targets_mm}
    return sorted(k for k in ks if k >= MIN_SLICES_PER_SLAB)


def slab_suffix(k: int) -> str:
    return f".slab{k}"


def thick_slab(volume: CTVolume, k: int) -> CTVolume:
    """``volume`` as slabs of ``k`` consecutive slices (HU averaged; trailing slices that do
    not fill a slab are dropped). UIDs get a ``.slab<k>`` suffix: the series is derived and
    never written anywhere as DICOM."""
    if k < 2:
        raise ValueError("a slab holds at least two slices")
    n = volume.num_slices // k * k
    if n == 0:
        raise ValueError(f"the series has fewer than {k} slices")
    rows, cols = volume.hu.shape[1:]
    hu = volume.hu[:n].astype(np.float32).reshape(-1, k, rows, cols).mean(axis=1)
    pos = volume.image_positions_mm[:n].reshape(-1, k, 3).mean(axis=1)
    sfx = slab_suffix(k)
    return CTVolume(
        hu=np.rint(hu).astype(np.int16),
        pixel_spacing_mm=volume.pixel_spacing_mm,
        image_positions_mm=pos,
        orientation=volume.orientation,
        sop_instance_uids=tuple(u + sfx for u in volume.sop_instance_uids[:n:k]),
        series_uid=volume.series_uid + sfx,
        description=f"{volume.description} ({k} slices per slab)".strip(),
        study_uid=volume.study_uid,
        frame_of_reference_uid=volume.frame_of_reference_uid,
    )


def _union(a: Box | None, b: Box) -> Box:
    return b if a is None else (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def slab_truth(truth: StudyTruth, k: int, n_slabs: int) -> StudyTruth:
    """``truth`` of a thin series moved to its slabs of ``k`` slices (see module docstring)."""
    nodules = []
    for nod in truth.nodules:
        boxes: dict[int, Box] = {}
        for z, b in nod.boxes.items():
            if z // k < n_slabs:
                boxes[z // k] = _union(boxes.get(z // k), b)
        if boxes:
            nodules.append(TruthNodule(nod.id, nod.label, nod.readers, boxes, nod.source))
    marks = [(z // k, r, c) for z, r, c in truth.other_marks if z // k < n_slabs]
    return StudyTruth(nodules, marks, truth.annotation)
