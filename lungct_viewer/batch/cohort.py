"""The cohort table, the per-study marker and the fingerprint that makes a batch resumable.

``OUT/cohort.csv`` and ``OUT/cohort.json`` hold one row per study (:data:`COLUMNS`):

========================  ================================================================
``study``                 the study's folder name under OUT (see :mod:`.discover`)
``status``                ``ok`` (read now), ``skipped`` (read by an earlier run with the
                          same model and options, a duplicate, a non-axial series, or not
                          reached because the batch was stopped) or ``failed``
``message``               why a study failed or was skipped, as one sentence (no traceback,
                          no folder path unless ``--include-identifiers``)
``patient_call``          ``malignant``, ``benign`` or ``no_findings``
``malignant_fraction``    malignant share of the votes of the lesions in the call
``voting_threshold``      the threshold the call was made at
``lesions``               findings: lesions that pass the second reading
``candidates_below``      candidates below the suspicion threshold (not findings)
``largest_lesion_mm``     long-axis diameter of the largest finding
``highest_suspicion``     the highest second-reading suspicion of any candidate (empty
                          when the model has no second reading)
``slices``                slices of the series read
``series_description``    as in ``report.json``
``study_uid``             StudyInstanceUID (as in ``report.json``)
``series_uid``            SeriesInstanceUID (as in ``report.json``)
``load_s`` ...            seconds: loading, network, candidates, and the whole study
                          (``total_s``: load to files in place, on its worker)
``device``                CPU or GPU
``model_version``         the model card's version
``source``                only with ``--include-identifiers``: the patient folder relative
                          to ROOT
========================  ================================================================

A study's folder holds ``batch.json`` (:data:`MARKER_NAME`), written last: the fingerprint
of the model files and the options, the files written and the study's row. A study counts as
done when the marker's fingerprint matches and its files are all there.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from .. import RESEARCH_NOTICE, __version__
from ..core.atomic import write_bytes_atomic, write_json_atomic
from ..core.reading import ReadOptions

MARKER_NAME = "batch.json"
COHORT_CSV = "cohort.csv"
COHORT_JSON = "cohort.json"
#: Hidden folder under OUT where studies are written before they are renamed into place.
STAGING = ".staging"

STATUS_OK, STATUS_SKIPPED, STATUS_FAILED = "ok", "skipped", "failed"

COLUMNS = (
    "study",
    "status",
    "message",
    "patient_call",
    "malignant_fraction",
    "voting_threshold",
    "lesions",
    "candidates_below",
    "largest_lesion_mm",
    "highest_suspicion",
    "slices",
    "series_description",
    "study_uid",
    "series_uid",
    "load_s",
    "inference_s",
    "lung_region_s",
    "candidates_s",
    "total_s",
    "device",
    "model_version",
)
IDENTIFIER_COLUMNS = ("source",)
#: Columns that change from run to run even when the results do not.
TIMING_COLUMNS = ("load_s", "inference_s", "lung_region_s", "candidates_s", "total_s")


def model_digest(model_path: str | os.PathLike[str]) -> str:
    """SHA-256 over the model file and, when present, its card and second-reading file."""
    from ..core.model import card_path_for
    from ..core.second_reading import second_reading_path_for

    path = Path(model_path)
    h = hashlib.sha256()
    for part in (path, card_path_for(path), second_reading_path_for(path)):
        h.update(part.name.encode() + b"\0")
        if part.is_file():
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def fingerprint(digest: str, options: ReadOptions, use_field_mask: bool) -> str:
    """What decides whether an earlier result can be kept: model files, options, software."""
    key = {
        "model": digest,
        "options": options.to_dict(),
        "use_field_mask": bool(use_field_mask),
        "software": __version__,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def columns(include_identifiers: bool) -> tuple[str, ...]:
    return COLUMNS + (IDENTIFIER_COLUMNS if include_identifiers else ())


def empty_row(study: str, status: str, message: str = "", **known: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS + IDENTIFIER_COLUMNS)
    row.update(study=study, status=status, message=message)
    row.update({k: v for k, v in known.items() if k in row})
    return row


def scrub(message: str, folder: str | os.PathLike[str]) -> str:
    """``message`` with the patient folder's path (and any path below it) replaced by
    "the study folder": folder names are often patient names."""
    text = str(message)
    for form in {str(folder), str(Path(folder).resolve())}:
        if form:
            text = re.sub(re.escape(form) + r"(?:/[^\s,;:()]*[^\s,;:().])?", "the study folder", text)
    return text


# ------------------------------------------------------------------------------- marker
def write_marker(
    folder: Path,
    *,
    fp: str,
    row: dict[str, Any],
    files: list[str],
    model: dict[str, Any],
    options: ReadOptions,
    use_field_mask: bool,
) -> Path:
    target = folder / MARKER_NAME
    write_json_atomic(
        target,
        {
            "notice": RESEARCH_NOTICE,
            "software": {"name": "LungCT Viewer", "version": __version__},
            "finished": _now(),
            "fingerprint": fp,
            "model": model,
            "options": {**options.to_dict(), "use_field_mask": use_field_mask},
            "files": sorted(files),
            "row": row,
        },
    )
    return target


def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(folder) / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def done_marker(folder: str | os.PathLike[str], fp: str) -> dict[str, Any] | None:
    """The marker of a finished study read with fingerprint ``fp`` (``None``: not done)."""
    marker = read_marker(folder)
    if marker is None or marker.get("fingerprint") != fp or not isinstance(marker.get("row"), dict):
        return None
    files = marker.get("files")
    if not isinstance(files, list) or not all((Path(folder) / str(n)).is_file() for n in files):
        return None
    return marker


# ------------------------------------------------------------------------------- tables
def write_cohort(
    out: str | os.PathLike[str], rows: list[dict[str, Any]], *, include_identifiers: bool, meta: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``cohort.csv`` and ``cohort.json`` into ``out`` atomically."""
    out = Path(out)
    cols = columns(include_identifiers)
    table = [{c: r.get(c) for c in cols} for r in rows]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in table:
        w.writerow({c: "" if v is None else v for c, v in r.items()})
    csv_path, json_path = out / COHORT_CSV, out / COHORT_JSON
    write_bytes_atomic(csv_path, buf.getvalue().encode("utf-8"))
    counts = {s: sum(r["status"] == s for r in table) for s in (STATUS_OK, STATUS_SKIPPED, STATUS_FAILED)}
    write_json_atomic(
        json_path,
        {
            "notice": RESEARCH_NOTICE,
            "software": {"name": "LungCT Viewer", "version": __version__},
            "created": _now(),
            **meta,
            "counts": counts,
            "columns": list(cols),
            "studies": table,
        },
    )
    return csv_path, json_path


def read_cohort_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
