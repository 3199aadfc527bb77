"""Reading one study of a batch, on whichever process runs it (this one or a Dask worker).

:func:`run_study` calls :func:`~lungct_viewer.core.reading.read_study` (the pipeline of
``analyze``) into a staging folder ``OUT/.staging/<id>.<run>``, writes the marker last and
renames the folder to ``OUT/<id>``: a study folder is either complete or absent, whatever
stops the process. It never raises for a bad study: the returned row says what went wrong.

Each process loads the model once (:func:`shared_analyzer`, a per-process cache keyed by
the model file's path and digest), not once per study.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import LungCTError, ModelLoadError
from ..core.reading import ReadOptions, read_study
from . import cohort as K
from .discover import StudySpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyTask:
    """Everything a worker needs to read one study (plain, picklable data)."""

    spec: StudySpec
    out: str  # OUT, absolute
    run_id: str
    model_path: str | None  # None: the model shipped with the worker's installation
    model_digest: str
    model_version: str
    options: ReadOptions
    use_field_mask: bool
    fingerprint: str


# ------------------------------------------------------------------ per-process model
_lock = threading.Lock()
_models: dict[tuple[str, str], Any] = {}
_analyzers: dict[tuple[str, str, bool, int], Any] = {}
#: How many times this process loaded a model (the tests check it is once per worker).
model_loads = 0


def shared_analyzer(model_path: str | None, digest: str, use_field_mask: bool):
    """This process's :class:`~lungct_viewer.core.pipeline.Analyzer` for the model (loaded
    on first use; one analyzer per thread, as an analyzer is not thread-safe).

    Raises :class:`~lungct_viewer.core.errors.ModelLoadError` when the file is missing or is
    not the one the batch was started with (its digest differs).
    """
    global model_loads
    from ..core.model import load_model
    from ..core.pipeline import Analyzer, default_model_path

    path = Path(model_path) if model_path else default_model_path()
    key = (str(path), digest)
    with _lock:
        model = _models.get(key)
        if model is None:
            if not path.is_file():
                raise ModelLoadError(f"No model file was found at {path} on the machine reading this study.")
            if K.model_digest(path) != digest:
                raise ModelLoadError(
                    f"The model file {path.name} on the machine reading this study is not the one the batch "
                    "was started with; give every worker the same model."
                )
            model = load_model(path)
            _models.clear()  # one model per process: a new one replaces the old
            _analyzers.clear()
            _models[key] = model
            model_loads += 1
        akey = (*key, bool(use_field_mask), threading.get_ident())
        analyzer = _analyzers.get(akey)
        if analyzer is None:
            analyzer = _analyzers[akey] = Analyzer(model, use_field_mask=use_field_mask)
    return analyzer


def loads_in_this_process() -> int:
    """How many models this process has loaded (for ``client.run`` in tests and checks)."""
    return model_loads


# ------------------------------------------------------------------------- one study
def base_row(spec: StudySpec, include_identifiers: bool) -> dict[str, Any]:
    extra = {"source": spec.source} if include_identifiers else {}
    return K.empty_row(
        spec.id,
        K.STATUS_FAILED,
        study_uid=spec.study_uid,
        series_uid=spec.series_uid,
        series_description=spec.description,
        **extra,
    )


def run_study(task: StudyTask) -> dict[str, Any]:
    """Read one study into ``OUT/<id>``; returns its cohort row (never raises for a bad study).

    ``KeyboardInterrupt`` and ``SystemExit`` still propagate, after the staging folder has
    been removed.
    """
    t0 = time.perf_counter()
    spec, ids = task.spec, task.options.include_identifiers
    row = base_row(spec, ids)
    row["model_version"] = task.model_version
    out = Path(task.out)
    stage = out / K.STAGING / f"{spec.id}.{task.run_id}"
    try:
        shutil.rmtree(stage, ignore_errors=True)
        reading = read_study(
            spec.folder,
            stage,
            lambda: shared_analyzer(task.model_path, task.model_digest, task.use_field_mask),
            task.options,
            series_uid=spec.series_uid,
        )
        row.update(reading.summary())
        row["series_description"] = reading.session.volume.description
        row["status"] = K.STATUS_OK
        if reading.dicom_error is not None:
            row["message"] = f"No DICOM Segmentation or report was written: {reading.dicom_error}"
        row["total_s"] = round(time.perf_counter() - t0, 3)
        K.write_marker(
            stage,
            fp=task.fingerprint,
            row=row,
            files=[p.name for p in reading.written],
            model={"version": reading.session.card.version, "sha256": task.model_digest},
            options=task.options,
            use_field_mask=task.use_field_mask,
        )
        publish(stage, out / spec.id, task.fingerprint)
    except LungCTError as exc:
        _fail(row, str(exc), spec, ids)
    except MemoryError:
        _fail(row, "There was not enough memory to read this study.", spec, ids)
    except Exception as exc:  # noqa: BLE001 - one bad study never stops the batch
        log.debug("unexpected error while reading a study", exc_info=True)
        _fail(
            row,
            f"The study could not be read because of an unexpected problem ({type(exc).__name__}); "
            "run again with LUNGCT_LOG=DEBUG for the details.",
            spec,
            ids,
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if row["status"] == K.STATUS_FAILED:
        row["total_s"] = round(time.perf_counter() - t0, 3)
    return row


def _fail(row: dict[str, Any], message: str, spec: StudySpec, include_identifiers: bool) -> None:
    row["status"] = K.STATUS_FAILED
    row["message"] = message if include_identifiers else K.scrub(message, spec.folder)


def publish(stage: Path, target: Path, fp: str) -> None:
    """Rename the finished ``stage`` to ``target``; an older result there is replaced, a
    result with the same fingerprint (written meanwhile by another process) is kept."""
    if target.exists():
        if K.done_marker(target, fp) is not None:
            shutil.rmtree(stage, ignore_errors=True)
            return
        old = stage.with_name(stage.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(stage, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(stage, target)
