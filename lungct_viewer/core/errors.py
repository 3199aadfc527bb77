"""One family of errors whose messages are written for the person at the screen."""

from __future__ import annotations


class LungCTError(Exception):
    """Base class: ``str(error)`` is a complete sentence a radiologist understands."""


class StudyLoadError(LungCTError):
    """A folder or file could not be read as a CT study."""


class ReferenceLoadError(StudyLoadError):
    """A reference annotation file (DICOM SEG, RT structure set, LIDC reading XML) could not
    be read onto the series on screen: unreadable, of another kind, or of another series."""


class ModelLoadError(LungCTError):
    """The model file is missing, corrupt or does not have the expected shape."""


class AnalysisCancelled(LungCTError):
    """The user cancelled an analysis; results for the slices already done are kept."""


class LoadCancelled(StudyLoadError, AnalysisCancelled):
    """The user cancelled scanning a folder or loading a series (nothing is returned).

    Both a :class:`StudyLoadError` and an :class:`AnalysisCancelled`, so code that catches
    either family handles it.
    """


class ExportError(LungCTError):
    """An export could not be written."""


class DataError(LungCTError):
    """Training data is missing, inconsistent or unreadable (the message names the file)."""
