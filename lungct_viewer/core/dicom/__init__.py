"""Reading CT studies from a folder of DICOM files (Qt-free).

Three steps, each usable alone:

* :func:`scan_folder` walks a folder and reads **headers only** (:mod:`.headers`,
  :mod:`.scan`): the CT series found, each as a :class:`~..study.SeriesInfo`, and the files
  skipped with a reason in plain words.
* :func:`load_series` decodes one series in parallel (:mod:`.decode`) and stacks it head to
  feet into a :class:`~..study.CTVolume` in HU (:mod:`.assemble`), reporting whatever it had
  to repair or leave out in the volume's warnings.
* :func:`load_study` does both, picking the series with :func:`select_series`.

Errors: every failure raises :class:`~..errors.StudyLoadError` (or a subclass) whose message
is a complete sentence for the person at the screen; pydicom, numpy and OS exceptions never
escape. Cancelling (the ``cancel`` callable returns True) a scan or a load raises
:class:`LoadCancelled`, which is both a :class:`~..errors.StudyLoadError` and an
:class:`~..errors.AnalysisCancelled`.

The source folder is only ever read. Log messages carry counts and timings, never patient
identifiers or file names. There is no module-level state: the headers a scan reads travel
in its :class:`~..study.SeriesInfo` objects to :func:`load_series`.
"""

from __future__ import annotations

from ..errors import LoadCancelled
from .assemble import load_series, load_study
from .scan import scan_folder, select_series

__all__ = ["LoadCancelled", "load_series", "load_study", "scan_folder", "select_series"]
