"""Cohort batch: every CT study under a folder read with the pipeline of ``analyze``, in this
process or on Dask workers, resumable, with one row per study in ``OUT/cohort.csv``.

* :func:`discover_studies` (:mod:`.discover`): which studies there are and how they are named.
* :func:`run_batch` (:mod:`.runner`): read them (skipping those already read with the same
  model and options) and write the cohort table.
* :func:`run_study` (:mod:`.worker`): one study on a worker, staged and renamed into place.
* :mod:`.cohort`: the table's columns, the per-study marker and the fingerprint.

Qt-free; Dask and TensorFlow are imported only when needed.
"""

from __future__ import annotations

from .cohort import COHORT_CSV, COHORT_JSON, COLUMNS, MARKER_NAME, TIMING_COLUMNS, fingerprint, model_digest
from .discover import Discovery, StudySpec, Unread, discover_studies, study_id
from .runner import BatchError, BatchResult, run_batch
from .worker import StudyTask, run_study

__all__ = [
    "COHORT_CSV",
    "COHORT_JSON",
    "COLUMNS",
    "MARKER_NAME",
    "TIMING_COLUMNS",
    "BatchError",
    "BatchResult",
    "Discovery",
    "StudySpec",
    "StudyTask",
    "Unread",
    "discover_studies",
    "fingerprint",
    "model_digest",
    "run_batch",
    "run_study",
    "study_id",
]
