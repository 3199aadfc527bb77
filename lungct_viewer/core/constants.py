"""The method's constants, in one place.

Coordinate conventions used throughout the project:

* Images are numpy arrays indexed ``[row, col]`` (``y``, ``x``); pixel ``(0, 0)`` is the
  top-left pixel as the DICOM ``PixelData`` stores it.
* "Native" pixels are the slice's own pixels; "model" pixels are the slice resampled to
  :data:`MODEL_PIXEL_SPACING_MM` (see :mod:`lungct_viewer.core.preprocessing`).
* Patch grids are indexed ``[grid_row, grid_col]``; grid cell ``(i, j)`` is the model-space
  window ``rows 10*i .. 10*i+49, cols 10*j .. 10*j+49``.
"""

from __future__ import annotations

#: Side of a square sliding-window patch, in model pixels.
PATCH_SIZE_PX = 50
#: Sliding-window stride, in model pixels.
PATCH_STRIDE_PX = 10

#: Class indices of the network's softmax output.
NOT_ROI = 0
BENIGN = 1
MALIGNANT = 2
CLASS_NAMES = ("not_roi", "benign", "malignant")
CLASS_LABELS = ("Not ROI", "Benign", "Malignant")
NUM_CLASSES = 3

#: Every slice is resampled in-plane to this pixel spacing (mm per pixel) before patching,
#: so that a 50-pixel patch always covers 35 x 35 mm whatever the scanner's field of view.
MODEL_PIXEL_SPACING_MM = 0.7
#: Resampling is skipped when the native spacing is within this relative tolerance.
RESAMPLE_TOLERANCE = 0.02

#: HU range mapped linearly onto the network input range [0, 1]; values outside are clipped.
INPUT_HU_MIN = -1000.0
INPUT_HU_MAX = 400.0

#: Network architecture (the method's CNN, with unpadded 3x3 convolutions).
CONV_FILTERS = (54, 54, 108, 108, 108)
CONV_KERNEL = 3
DENSE_UNITS = 432
DROPOUT_CONV = 0.3
DROPOUT_DENSE = 0.5

#: Training hyper-parameters of the method.
LEARNING_RATE = 5e-4
BATCH_SIZE = 400

#: Patch labelling rule (training and evaluation): a patch is an ROI patch when its central
#: ``ROI_CORE_PX`` x ``ROI_CORE_PX`` window holds at least ``ROI_MIN_CORE_PIXELS`` mask pixels;
#: it is a Not-ROI patch when the whole 50 x 50 window holds no mask pixel; otherwise it is
#: ambiguous and left out of training.
ROI_CORE_PX = 30
ROI_MIN_CORE_PIXELS = 8

#: Detection defaults (see :mod:`lungct_viewer.core.detection`).
DEFAULT_MIN_ROI_PROBABILITY = 0.5
DEFAULT_MIN_VOTES = 4
#: Candidates grow from local maxima of the ROI score with P(benign) + P(malignant) at least
#: this (see :mod:`lungct_viewer.core.candidates`); a fixed floor, so that moving the
#: sensitivity slider above it only filters candidates and never re-segments.
CANDIDATE_MIN_ROI_PROBABILITY = 0.88
#: Lesions smaller than this (mm across) are reported but do not enter the patient call.
DEFAULT_CALL_MIN_DIAMETER_MM = 6.0
#: Patient-level voting threshold: malignant fraction >= threshold => malignant.
DEFAULT_VOTING_THRESHOLD = 0.5

#: Display window presets (width, level) in HU, as OHIF names them.
WINDOW_PRESETS = {
    "Lung": (1500.0, -600.0),
    "Soft tissue": (400.0, 40.0),
    "Bone": (2500.0, 480.0),
}
