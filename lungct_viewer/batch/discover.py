"""Finding the CT studies of a cohort folder, reading DICOM headers only.

How a study is identified
-------------------------
* **Patient folders.** Each folder ``depth`` levels below ROOT (default 1: each folder
  directly inside ROOT, as TCIA and most PACS exports lay a cohort out) is one patient's
  folder, searched recursively like ``analyze PATIENT_DIR``. ``depth=0`` makes ROOT itself
  the only patient folder. Hidden folders (``.name``) are not patient folders, and files
  lying above the patient folders are not read (they are counted).
* **Studies.** By default a patient folder gives one study: the series ``analyze`` would read
  there (the axial CT series with the most slices). With ``each_series`` it gives one study
  per axial CT series (both reconstructions of a scan, baseline and follow-up, ...); other
  series are listed as skipped.
* **Names.** A study's output folder is ``OUT/<id>/`` with ``id`` the first 16 hex digits of
  the SHA-256 of its StudyInstanceUID and SeriesInstanceUID. Folder names are often the
  patient's name or ID, so they take no part in it (a hash of a name could be reversed by
  trying names): the id says nothing about the patient, never collides in practice, and stays
  the same when the cohort folder is moved or renamed, so a rerun finds its results and two
  runs (two models, two thresholds) can be joined on it. The same series found in two patient
  folders (a copied study) has one id and is read once. A patient folder in which no CT
  series can be found has no id of its own: its row is named ``folder-<n>``, ``n`` being its
  position among the patient folders sorted by path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.dicom import scan_folder
from ..core.errors import LungCTError, StudyLoadError

#: What marks a study's output folder name (16 hex digits: 64 bits of SHA-256).
ID_HEX_DIGITS = 16


def study_id(study_uid: str, series_uid: str) -> str:
    """The output folder name of a series: a short hash of its DICOM UIDs (see module doc)."""
    text = f"lungct-batch\n{study_uid}\n{series_uid}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_HEX_DIGITS]


@dataclass(frozen=True)
class StudySpec:
    """One study to read: the patient folder and the series in it."""

    id: str
    folder: str  # absolute path of the patient folder
    source: str  # the patient folder relative to ROOT (POSIX separators; "." for ROOT)
    study_uid: str
    series_uid: str
    description: str = ""
    series_number: int | None = None
    num_slices: int = 0


@dataclass(frozen=True)
class Unread:
    """A patient folder or series that is not read, and why (a sentence for the reader).

    ``failed`` is True for a folder that should have held a study (no CT found, unreadable),
    False for what is left out on purpose (a duplicate, a non-axial series).
    """

    id: str
    folder: str
    source: str
    message: str
    failed: bool
    study_uid: str = ""
    series_uid: str = ""
    description: str = ""


@dataclass
class Discovery:
    """The studies under ROOT, in the order of their folders' paths."""

    root: str
    studies: list[StudySpec] = field(default_factory=list)
    unread: list[Unread] = field(default_factory=list)
    #: Files lying above the patient folders (not read).
    stray_files: int = 0
    patient_folders: int = 0

    def entries(self) -> list[StudySpec | Unread]:
        """Studies and unread entries together, ordered by folder, then series."""
        return sorted([*self.studies, *self.unread], key=_order)


def _order(e: StudySpec | Unread) -> tuple:
    number = getattr(e, "series_number", None)
    return (e.source, number is None, number or 0, e.series_uid, e.id)


def patient_folders(root: str | os.PathLike[str], depth: int = 1) -> tuple[list[Path], int]:
    """The folders ``depth`` levels below ``root`` (sorted by path) and how many files lie
    above them."""
    if depth < 0:
        raise ValueError("depth must be 0 or more")
    level = [Path(root)]
    stray = 0
    for _ in range(depth):
        below: list[Path] = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue
                try:
                    if e.is_dir():
                        below.append(Path(e.path))
                    elif e.is_file():
                        stray += 1
                except OSError:
                    continue
        level = below
    return level, stray


def discover_studies(
    root: str | os.PathLike[str],
    *,
    each_series: bool = False,
    depth: int = 1,
    on_folder: Callable[[int, int], None] | None = None,
) -> Discovery:
    """Find the studies under ``root`` (see the module docstring for the rules).

    ``on_folder(done, total)`` is called after each patient folder is scanned. Nothing here
    raises for a bad patient folder: it becomes an :class:`Unread` entry with the reason.
    """
    root_path = Path(root).resolve()
    folders, stray = patient_folders(root_path, depth)
    found = Discovery(root=str(root_path), stray_files=stray, patient_folders=len(folders))
    seen: dict[str, StudySpec] = {}
    for k, folder in enumerate(folders):
        source = folder.relative_to(root_path).as_posix()
        try:
            scan = scan_folder(folder)
            chosen = [s for s in scan.series if s.is_axial] if each_series else [scan.default_series()]
            if not chosen:
                raise StudyLoadError(f"No axial CT series was found in {folder}.")
        except LungCTError as exc:
            found.unread.append(Unread(f"folder-{k + 1:04d}", str(folder), source, str(exc), failed=True))
        else:
            if each_series:
                for info in scan.series:
                    if not info.is_axial:
                        found.unread.append(
                            Unread(
                                study_id(info.study_uid, info.uid),
                                str(folder),
                                source,
                                "This series is not axial (a reformat); only axial series are read.",
                                failed=False,
                                study_uid=info.study_uid,
                                series_uid=info.uid,
                                description=info.description,
                            )
                        )
            for info in chosen:
                spec = StudySpec(
                    study_id(info.study_uid, info.uid),
                    str(folder),
                    source,
                    info.study_uid,
                    info.uid,
                    info.description,
                    info.series_number,
                    info.num_slices,
                )
                first = seen.get(spec.id)
                if first is not None:
                    found.unread.append(
                        Unread(
                            spec.id,
                            spec.folder,
                            spec.source,
                            f"The same series is also in another patient folder (study {spec.id}); it is read once.",
                            failed=False,
                            study_uid=spec.study_uid,
                            series_uid=spec.series_uid,
                            description=spec.description,
                        )
                    )
                    continue
                seen[spec.id] = spec
                found.studies.append(spec)
        if on_folder is not None:
            on_folder(k + 1, len(folders))
    return found
