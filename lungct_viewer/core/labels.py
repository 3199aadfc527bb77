"""One label vocabulary and one colour table, shared by the screen, the PNGs and the legends."""

from __future__ import annotations

from enum import StrEnum


class Label(StrEnum):
    """What a patch, a lesion or a patient is called. The value is what JSON stores."""

    NOT_ROI = "not_roi"
    BENIGN = "benign"
    MALIGNANT = "malignant"
    NO_FINDINGS = "no_findings"

    @property
    def display(self) -> str:
        """Capitalised word for lists and image labels."""
        return _DISPLAY[self]

    @property
    def call(self) -> str:
        """The patient-level call as the diagnosis panel and the report summary print it."""
        return _CALL[self]


_DISPLAY = {
    Label.NOT_ROI: "Not ROI",
    Label.BENIGN: "Benign",
    Label.MALIGNANT: "Malignant",
    Label.NO_FINDINGS: "No findings",
}
_CALL = {
    Label.NOT_ROI: "NOT ROI",
    Label.BENIGN: "BENIGN",
    Label.MALIGNANT: "MALIGNANT",
    Label.NO_FINDINGS: "NO SUSPICIOUS FINDINGS",
}

#: RGB colours (0-255). ROI is the method's red vote-map overlay; lesion outlines and their
#: text take the colour of their call (muted, :func:`left_out_rgb`, when the finding does not
#: vote in the patient call); candidates below the suspicion threshold are grey.
ROI_RGB = (255, 0, 0)
ROI_ALPHA = 0.40
LABEL_RGB = {
    Label.MALIGNANT: (255, 64, 64),
    Label.BENIGN: (64, 200, 255),
    Label.NO_FINDINGS: (120, 220, 120),
    Label.NOT_ROI: (200, 200, 200),
}
CANDIDATE_RGB = (170, 170, 170)


def left_out_rgb(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The colour of a call that does not vote in the patient call (ground glass, too small):
    halfway between the call's colour and the candidates' grey."""
    return tuple((a + b) // 2 for a, b in zip(rgb, CANDIDATE_RGB))  # type: ignore[return-value]


#: Reference annotations (a reader's outlines: DICOM SEG, RTSTRUCT, LIDC XML) are drawn as
#: opaque one-pixel outlines in this green, which no other overlay, call or heatmap uses.
REFERENCE_RGB = (40, 255, 140)
#: The heatmap colour map (black -> red -> yellow -> white), as stops in [0, 1].
HEAT_STOPS = ((0.0, (0, 0, 0)), (0.35, (180, 0, 0)), (0.7, (255, 200, 0)), (1.0, (255, 255, 255)))


def heat_lut(n: int = 256):
    """``(n, 3)`` uint8 lookup table of the heatmap colour map."""
    import numpy as np

    x = np.linspace(0.0, 1.0, n)
    pos = np.array([s[0] for s in HEAT_STOPS])
    cols = np.array([s[1] for s in HEAT_STOPS], dtype=np.float64)
    return np.stack([np.interp(x, pos, cols[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def heat_colours(values):
    """Colours of a heatmap in [0, 1] as the screen and the PNGs draw it: ``(rgb, covered)``,
    ``(H, W, 3)`` uint8 from :func:`heat_lut` and the ``(H, W)`` bool pixels that an analysed
    patch covers (``values > 0``; the others keep the image's own grey)."""
    import numpy as np

    values = np.asarray(values)
    index = np.clip(np.rint(values * 255.0), 0, 255).astype(np.intp)
    return heat_lut()[index], values > 0.0
