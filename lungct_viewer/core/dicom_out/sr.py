"""The Comprehensive 3D SR: a TID 1500 Measurement Report of the lesions.

Content tree (all measurements as given by the caller, none computed here):

* observation context: observer = device = the algorithm (Device Observer UID derived from
  name, version and model version; name; manufacturer; model name ``model <version>``);
* procedure reported: CT Chest;
* per lesion a TID 1411 volumetric measurement group: tracking identifier and UID (the SEG
  segment's), the referenced SEG segment as its location, finding type *Nodule* at the lung,
  the algorithm identification (name, version, ``model <version>``, ``voting threshold <t>``),
  long and short axis (mm), volume (mm3), malignant vote fraction and suspicion score
  (``{ratio}``, ``{score}``; the score only when there is one), and the benign/malignant call
  as a qualitative evaluation;
* for the suspicious region (lesions off) the same group with its volume only;
* a TID 1501 group ``Patient-level call``: the call, the malignant vote fraction over all
  findings and the threshold it was compared with.

The document is complete and unverified (no person has checked it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    ReferencedSegment,
    SourceImageForSegmentation,
    TrackingIdentifier,
    VolumetricROIMeasurementsAndQualitativeEvaluations,
)
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.uid import generate_uid

from ..errors import ExportError
from . import codes
from .inputs import SeriesResults
from .seg import MANUFACTURER, derived_object_attributes, tracking_ids
from .source import SourceSeries

logger = logging.getLogger(__name__)

SR_SERIES_NUMBER = 9102
PATIENT_CALL_ID = "Patient-level call"


def device_observer_uid(results: SeriesResults) -> str:
    """A UID for the algorithm as an observer: the same for the same name, version and model."""
    alg = results.algorithm
    return generate_uid(prefix=None, entropy_srcs=["lungct-viewer-device", alg.name, alg.version, alg.model_version])


def _algorithm_id(results: SeriesResults) -> AlgorithmIdentification:
    alg = results.algorithm
    return AlgorithmIdentification(
        name=alg.name,
        version=alg.version,
        parameters=[f"model {alg.model_version}", f"voting threshold {results.call.threshold:g}"],
        family=codes.AI_FAMILY,
    )


def _observation_context(results: SeriesResults) -> ObservationContext:
    alg = results.algorithm
    device = ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=device_observer_uid(results),
            name=alg.name,
            manufacturer_name=MANUFACTURER,
            model_name=f"model {alg.model_version}",
        ),
    )
    return ObservationContext(observer_device_context=device)


def _measurement(name, value: float, unit) -> Measurement:
    return Measurement(name=name, value=float(value), unit=unit)


def _referenced_segment(segmentation, number: int, mask, series: SourceSeries) -> ReferencedSegment:
    """The SEG segment with the source slices it was drawn on (the slices its mask touches)."""
    slices = mask.reshape(mask.shape[0], -1).any(axis=1).nonzero()[0]
    return ReferencedSegment(
        sop_class_uid=segmentation.SOPClassUID,
        sop_instance_uid=segmentation.SOPInstanceUID,
        segment_number=number,
        source_images=[
            SourceImageForSegmentation(str(series.datasets[i].SOPClassUID), str(series.datasets[i].SOPInstanceUID))
            for i in slices
        ],
    )


def _groups(results: SeriesResults, series: SourceSeries, segmentation, tracking_uids: Sequence[str]) -> list:
    alg_id = _algorithm_id(results)
    ids = tracking_ids(results)
    groups: list = []
    if results.region is not None:
        groups.append(
            VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(uid=tracking_uids[0], identifier=ids[0]),
                referenced_segment=_referenced_segment(segmentation, 1, results.region.mask, series),
                finding_type=codes.REGION_TYPE,
                finding_category=codes.SEGMENT_CATEGORY,
                finding_sites=[FindingSite(codes.LUNG)],
                algorithm_id=alg_id,
                measurements=[_measurement(codes.VOLUME, results.region.volume_mm3, codes.CUBIC_MILLIMETER)],
            )
        )
    for k, les in enumerate(results.lesions, start=1):
        measurements = [
            _measurement(codes.LONG_AXIS, les.long_axis_mm, codes.MILLIMETER),
            _measurement(codes.SHORT_AXIS, les.short_axis_mm, codes.MILLIMETER),
            _measurement(codes.VOLUME, les.volume_mm3, codes.CUBIC_MILLIMETER),
            _measurement(codes.MALIGNANT_VOTE_FRACTION, les.malignant_fraction, codes.RATIO),
        ]
        if les.suspicion is not None:
            measurements.append(_measurement(codes.SUSPICION_SCORE, les.suspicion, codes.SCORE))
        groups.append(
            VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(uid=tracking_uids[k - 1], identifier=ids[k - 1]),
                referenced_segment=_referenced_segment(segmentation, k, les.mask, series),
                finding_type=codes.LESION_TYPE,
                finding_category=codes.SEGMENT_CATEGORY,
                finding_sites=[FindingSite(codes.LUNG)],
                algorithm_id=alg_id,
                measurements=measurements,
                qualitative_evaluations=[QualitativeEvaluation(codes.CALL, codes.LABEL_CODES[les.label])]
                + (
                    [QualitativeEvaluation(codes.TEXTURE, codes.TEXTURE_CODES[les.texture])]
                    if les.texture is not None
                    else []
                ),
            )
        )
    call = results.call
    groups.append(
        MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(identifier=PATIENT_CALL_ID),
            algorithm_id=alg_id,
            measurements=[
                _measurement(codes.MALIGNANT_VOTE_FRACTION, call.malignant_fraction, codes.RATIO),
                _measurement(codes.VOTE_THRESHOLD, call.threshold, codes.RATIO),
            ],
            qualitative_evaluations=[QualitativeEvaluation(codes.CALL, codes.LABEL_CODES[call.label])],
        )
    )
    return groups


def build_measurement_report(
    results: SeriesResults,
    series: SourceSeries,
    segmentation,
    tracking_uids: Sequence[str],
    *,
    series_number: int = SR_SERIES_NUMBER,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Comprehensive3DSR:
    """Build the TID 1500 Comprehensive 3D SR of ``results`` (nothing is written).

    ``segmentation`` is the SEG built from the same ``results`` and ``tracking_uids`` its
    segments' tracking UIDs (in segment order).

    Raises
    ------
    ExportError
        highdicom rejects the content (the message says why).
    """
    alg = results.algorithm
    try:
        report = MeasurementReport(
            observation_context=_observation_context(results),
            procedure_reported=codes.CT_CHEST,
            imaging_measurements=_groups(results, series, segmentation, tracking_uids),
            title=dcm_codes.cid7021.ImagingMeasurementReport,
        )
        return Comprehensive3DSR(
            evidence=[*series.datasets, segmentation],
            content=report,
            **derived_object_attributes(alg, series_uid, series_number, sop_instance_uid),
            is_complete=True,
            is_final=False,
            is_verified=False,
            series_description=f"{alg.name} measurement report (research use only)"[:64],
            coding_schemes=[
                CodingSchemeIdentificationItem(
                    designator=codes.LOCAL_SCHEME,
                    name=codes.LOCAL_SCHEME_NAME,
                    responsible_organization=codes.LOCAL_SCHEME_RESPONSIBLE,
                )
            ],
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        logger.debug("highdicom rejected the measurement report", exc_info=True)
        raise ExportError(f"The DICOM measurement report could not be built: {exc}") from exc
