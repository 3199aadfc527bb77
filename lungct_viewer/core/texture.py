"""A lesion's texture: with a solid component, or pure ground glass (Qt-free).

Lung-RADS (v2022) and the Fleischner Society guidelines (2017) manage a nodule by its solid
component. A pure ground-glass (non-solid) nodule is Lung-RADS 2 below 30 mm and 3 above it,
never "suspicious" (4); the suspicious categories need a solid nodule or a solid component.
The patient call follows them: a ground-glass lesion is shown, measured and listed, but does
not vote in the call (:mod:`.voting`). Focal ground-glass opacities are also what an
infection leaves (organising pneumonia, COVID-19), which is where the call must not say
"malignant".

**Solid component** (:func:`solid_core_mm`): the lesion's voxels at soft-tissue attenuation
(above :data:`SOLID_HU`); its size is the diameter of the largest ball that fits inside it
(3-D, mm), so that a vessel crossing a ground-glass nodule (a thin tube) does not count as a
solid component while the centre of a solid nodule of 6 mm does.

The two limits were chosen on the 795 LIDC nodule crops, whose readers rated texture (1-2
non-solid, 3 part-solid, 4-5 solid), not on the whole studies: with a solid core of at least
:data:`SOLID_CORE_MIN_MM`, 0.3 % of the solid nodules of 6 mm or more read as ground glass and
75 % of the non-solid ones do (segmented as the pipeline segments them: 2.4 % and 46 %).

Texture is judged on lesions of :data:`TEXTURE_MIN_DIAMETER_MM` or more on slices up to
:data:`TEXTURE_MAX_SLICE_MM` apart (the slice thickness the ACR asks of a lung-screening CT),
and on thicker slices on lesions as many slice spacings across as that (12 mm on 5 mm slices,
19.2 mm on 8 mm slices): partial volume lowers the density of a solid nodule towards ground
glass when it spans few slices (a quarter of the solid crops of 3-6 mm hold no 2.5 mm core on
thin slices). On the crops averaged to thicker slices the rule holds as on thin ones: of the
solid nodules at least that large, 0-1 % read as ground glass on 4, 5 and 8 mm slices, and
half or more of the non-solid ones do. Elsewhere the texture is not assessed and the lesion
votes by its size alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from scipy import ndimage

#: HU above which a voxel is at soft-tissue attenuation (a solid component).
SOLID_HU = -300.0
#: A lesion whose solid component holds no ball of this diameter (mm) is ground glass.
SOLID_CORE_MIN_MM = 2.5
#: Texture is assessed on lesions at least this large (mean diameter, mm; below it partial
#: volume thins a solid core) on slices at most this far apart (mm); on thicker slices the
#: least diameter grows with the slice spacing (:func:`texture_min_diameter_mm`).
TEXTURE_MIN_DIAMETER_MM = 6.0
TEXTURE_MAX_SLICE_MM = 2.5


class Texture(StrEnum):
    """A lesion's texture; the value is what report.json shows."""

    SOLID = "solid"  # solid or part-solid: has a solid component
    GROUND_GLASS = "ground_glass"
    NOT_ASSESSED = "not_assessed"  # slices too thick or the lesion too small to tell

    @property
    def display(self) -> str:
        return {
            Texture.SOLID: "solid / part-solid",
            Texture.GROUND_GLASS: "ground glass",
            Texture.NOT_ASSESSED: "not assessed",
        }[self]


def solid_core_mm(obj: np.ndarray, hu: np.ndarray, spacing: Sequence[float]) -> float:
    """Diameter (mm) of the largest ball inside the voxels of ``obj`` above :data:`SOLID_HU`
    (``obj`` and ``hu`` on one grid, ``spacing`` its ``(slice, row, col)`` mm); 0 when none."""
    solid = obj & (hu > SOLID_HU)
    if not solid.any():
        return 0.0
    return 2.0 * float(ndimage.distance_transform_edt(solid, sampling=spacing).max())


def texture_min_diameter_mm(slice_spacing_mm: float | None) -> float:
    """The least mean diameter (mm) whose texture is assessed on slices ``slice_spacing_mm``
    apart (None: a single slice, taken as thin): :data:`TEXTURE_MIN_DIAMETER_MM`, as many
    slice spacings across as it is on :data:`TEXTURE_MAX_SLICE_MM` slices on thicker ones."""
    thick = 1.0 if slice_spacing_mm is None else max(1.0, float(slice_spacing_mm) / TEXTURE_MAX_SLICE_MM)
    return TEXTURE_MIN_DIAMETER_MM * thick


def texture_of(core_mm: float | None, slice_spacing_mm: float | None, diameter_mm: float | None = None) -> Texture:
    """The texture of a lesion of mean diameter ``diameter_mm`` with a solid core of
    ``core_mm`` (None: not measured) on a series whose slices lie ``slice_spacing_mm`` apart
    (None: a single slice, taken as thin). A lesion whose size was not measured is assessed
    on slices up to :data:`TEXTURE_MAX_SLICE_MM` apart only."""
    if core_mm is None:
        return Texture.NOT_ASSESSED
    if diameter_mm is None:
        if slice_spacing_mm is not None and slice_spacing_mm > TEXTURE_MAX_SLICE_MM + 1e-6:
            return Texture.NOT_ASSESSED
    elif diameter_mm < texture_min_diameter_mm(slice_spacing_mm) - 1e-6:
        return Texture.NOT_ASSESSED
    return Texture.SOLID if core_mm >= SOLID_CORE_MIN_MM else Texture.GROUND_GLASS
