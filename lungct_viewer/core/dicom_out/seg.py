"""The binary DICOM Segmentation: one segment per lesion, or one "suspicious region".

Frames are the source slices that hold a segment (empty frames are left out); each frame's
position, orientation and pixel spacing are those of its source slice, and it refers to that
slice (Derivation Image Sequence). Segments carry a label (``Lesion 3 (malignant)``), coded
category and type (see :mod:`.codes`), the lung as anatomic region, a tracking identifier and
UID (the SR's measurement group uses the same ones) and the algorithm's identification
(name, version, model version and voting threshold as parameters).
"""

from __future__ import annotations

import logging

import highdicom as hd
import numpy as np

from ..errors import ExportError
from . import codes
from .inputs import SeriesResults
from .source import SourceSeries, check_masks

logger = logging.getLogger(__name__)

#: Series numbers of the derived objects (chosen far above a scanner's usual numbers).
SEG_SERIES_NUMBER = 9101
MANUFACTURER = "LungCT Viewer project"
#: The program has no serial number; the attribute is mandatory in the Enhanced equipment
#: module, so a fixed value stands in.
DEVICE_SERIAL_NUMBER = "0"
_COLOURS = {"malignant": (230, 30, 30), "benign": (255, 190, 0), "region": (230, 30, 30)}


def derived_object_attributes(alg, series_uid: str | None, series_number: int, sop_instance_uid: str | None) -> dict:
    """The identity and equipment arguments (highdicom keywords) shared by the SEG and the SR:
    new UIDs unless given, the algorithm as the device, its and the model's versions."""
    return {
        "series_instance_uid": series_uid or hd.UID(),
        "series_number": series_number,
        "sop_instance_uid": sop_instance_uid or hd.UID(),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": alg.name,
        "software_versions": [alg.version, f"model {alg.model_version}"],
    }


def segment_labels(results: SeriesResults) -> list[str]:
    """The segment labels, in segment order (segment ``k`` is ``labels[k - 1]``)."""
    if results.region is not None:
        return ["Suspicious region"]
    return [f"Lesion {les.id} ({les.label})" for les in results.lesions]


def tracking_ids(results: SeriesResults) -> list[str]:
    """Tracking identifiers shared by the SEG's segments and the SR's measurement groups."""
    if results.region is not None:
        return ["Suspicious region"]
    return [f"Lesion {les.id}" for les in results.lesions]


def algorithm_identification(results: SeriesResults) -> hd.AlgorithmIdentificationSequence:
    alg = results.algorithm
    return hd.AlgorithmIdentificationSequence(
        name=alg.name,
        family=codes.AI_FAMILY,
        version=alg.version,
        parameters={
            "model_version": alg.model_version,
            "voting_threshold": f"{results.call.threshold:g}",
        },
    )


def _pixel_array(results: SeriesResults, shape: tuple[int, int, int]) -> np.ndarray:
    """A label map (segment number per voxel) when the masks do not overlap, else the
    masks stacked along a last axis (one channel per segment)."""
    masks = [m for _, m in results.masks]
    if len(masks) == 1:
        return masks[0].astype(np.uint8)
    count = np.zeros(shape, dtype=np.uint16)
    for m in masks:
        count += m
    if int(count.max()) <= 1:
        dtype = np.uint8 if len(masks) < 256 else np.uint16
        labels = np.zeros(shape, dtype=dtype)
        for k, m in enumerate(masks, start=1):
            labels[m] = k
        return labels
    logger.debug("lesion masks overlap; writing stacked segments")
    return np.stack(masks, axis=-1).astype(np.uint8)


def build_segmentation(
    results: SeriesResults,
    series: SourceSeries,
    *,
    series_number: int = SEG_SERIES_NUMBER,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    tracking_uids: list[str] | None = None,
) -> hd.seg.Segmentation:
    """Build the binary Segmentation of ``results`` on ``series`` (nothing is written).

    ``tracking_uids`` (one per segment) are generated when not given; the SR must use the
    same ones (:func:`~lungct_viewer.core.dicom_out.write_dicom_results` sees to that).

    Raises
    ------
    ExportError
        A mask is not on the series' grid, or highdicom rejects the input (the message says
        why).
    """
    check_masks(series, results.masks)
    labels = segment_labels(results)
    ids = tracking_ids(results)
    if tracking_uids is None:
        tracking_uids = [hd.UID() for _ in labels]
    if len(tracking_uids) != len(labels):
        raise ExportError("One tracking UID per segment is needed for the DICOM export.")
    alg_id = algorithm_identification(results)
    if results.region is not None:
        kinds = [("region", codes.REGION_TYPE)]
    else:
        kinds = [(les.label, codes.LESION_TYPE) for les in results.lesions]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=label,
            segmented_property_category=codes.SEGMENT_CATEGORY,
            segmented_property_type=prop_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=alg_id,
            tracking_uid=tuid,
            tracking_id=tid,
            anatomic_regions=[codes.LUNG],
            display_color=hd.color.CIELabColor.from_rgb(*_COLOURS[kind]),
        )
        for k, (label, (kind, prop_type), tuid, tid) in enumerate(zip(labels, kinds, tracking_uids, ids), start=1)
    ]
    alg = results.algorithm
    try:
        seg = hd.seg.Segmentation(
            source_images=list(series.datasets),
            pixel_array=_pixel_array(results, series.shape),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            **derived_object_attributes(alg, series_uid, series_number, sop_instance_uid),
            device_serial_number=DEVICE_SERIAL_NUMBER,
            content_label="LUNGCT_LESIONS" if results.region is None else "LUNGCT_REGION",
            content_description=(
                f"{alg.name} lesions (research use only)"
                if results.region is None
                else f"{alg.name} suspicious region (research use only)"
            ),
            series_description=f"{alg.name} segmentation (research use only)"[:64],
            omit_empty_frames=True,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        logger.debug("highdicom rejected the segmentation", exc_info=True)
        raise ExportError(f"The DICOM Segmentation could not be built: {exc}") from exc
    return seg
