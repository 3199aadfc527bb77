"""Coded concepts of the DICOM results: standard codes where one means what we report,
local codes (scheme ``99LUNGCT``) where none does.

Standard (SNOMED CT ``SCT``, DICOM ``DCM``, UCUM, LOINC ``LN``):

* segment category *Morphologically abnormal structure*; segment type *Nodule* for a lesion
  and *Neoplasm* for the unlabelled "suspicious region" (the method's ROI classes are benign
  and malignant tumour); anatomic region and finding site *Lung*;
* *Long axis* (mm) and *Volume* (mm3) with their UCUM units;
* the call's values *Benign* and *Malignant*; the algorithm family *Artificial Intelligence*;
* the procedure reported, *CT Chest* (LOINC 24627-2).

Local, because no standard concept says exactly this (a vote fraction is not a calibrated
probability, so DCM "Probability of cancer" would overstate it):

* ``CALL`` *Benign or malignant call* (the algorithm's classification, valued by the SCT
  codes above), ``MVF`` *Malignant vote fraction*, ``MVT`` *Malignant vote fraction
  threshold*, ``SUSP`` *Lesion suspicion score*, ``TEX`` *Lesion texture* valued ``SOLID``
  *Solid or part-solid* or ``GGO`` *Ground glass* (the texture of :mod:`..texture`: a solid
  component or none; "solid" here takes in part-solid lesions, which no single standard
  concept does).

The SR declares the local scheme in its Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

#: Designator of the project's local coding scheme ("99" prefix: a private scheme).
LOCAL_SCHEME = "99LUNGCT"
LOCAL_SCHEME_NAME = "LungCT Viewer local codes"
LOCAL_SCHEME_RESPONSIBLE = "LungCT Viewer project"

SEGMENT_CATEGORY = CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
LESION_TYPE = CodedConcept("27925004", "SCT", "Nodule")
REGION_TYPE = CodedConcept("108369006", "SCT", "Neoplasm")
LUNG = CodedConcept("39607008", "SCT", "Lung")

LONG_AXIS = CodedConcept("103339001", "SCT", "Long Axis")
SHORT_AXIS = CodedConcept("103340004", "SCT", "Short Axis")
VOLUME = CodedConcept("118565006", "SCT", "Volume")
BENIGN = CodedConcept("30807003", "SCT", "Benign")
MALIGNANT = CodedConcept("21594007", "SCT", "Malignant")

MILLIMETER = CodedConcept("mm", "UCUM", "millimeter")
CUBIC_MILLIMETER = CodedConcept("mm3", "UCUM", "cubic millimeter")
RATIO = CodedConcept("{ratio}", "UCUM", "ratio")
SCORE = CodedConcept("{score}", "UCUM", "score")

AI_FAMILY = codes.cid7162.ArtificialIntelligence
CT_CHEST = CodedConcept("24627-2", "LN", "CT Chest")

CALL = CodedConcept("CALL", LOCAL_SCHEME, "Benign or malignant call")
MALIGNANT_VOTE_FRACTION = CodedConcept("MVF", LOCAL_SCHEME, "Malignant vote fraction")
VOTE_THRESHOLD = CodedConcept("MVT", LOCAL_SCHEME, "Malignant vote fraction threshold")
SUSPICION_SCORE = CodedConcept("SUSP", LOCAL_SCHEME, "Lesion suspicion score")

LABEL_CODES = {"benign": BENIGN, "malignant": MALIGNANT}

TEXTURE = CodedConcept("TEX", LOCAL_SCHEME, "Lesion texture")
TEXTURE_CODES = {
    "solid": CodedConcept("SOLID", LOCAL_SCHEME, "Solid or part-solid"),
    "ground_glass": CodedConcept("GGO", LOCAL_SCHEME, "Ground glass"),
}
