"""Exporting a reading: annotated PNGs and ``report.json``, staged, atomic, never overwriting
silently, never inside the DICOM folder. The viewer and ``analyze`` both call
:func:`export_reading`."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AnalysisCancelled, ExportError
from .render import render_slice
from .report import REPORT_NAME, write_report
from .session import ReadingSession
from .study import CTVolume

_UNSAFE = re.compile(r"[^0-9A-Za-z._-]")


def is_within(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` is ``folder`` or lies inside it (after resolving links)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def slice_png_name(index: int, sop_uid: str) -> str:
    """``slice_0042_<SOPInstanceUID>.png`` (1-based slice number + UID: never collides)."""
    return f"slice_{index + 1:04d}_{_UNSAFE.sub('_', sop_uid) or 'unknown'}.png"


def existing_outputs(out_dir: str | Path, volume: CTVolume, indices: Iterable[int], report: bool = False) -> list[Path]:
    """Files an export of ``indices`` (and the report) into ``out_dir`` would replace."""
    out = Path(out_dir)
    found = [p for i in indices if (p := out / slice_png_name(i, volume.sop_instance_uids[i])).exists()]
    if report and (out / REPORT_NAME).exists():
        found.append(out / REPORT_NAME)
    return found


@dataclass(frozen=True)
class ImageOptions:
    """How the exported PNGs look (the viewer passes what is on screen)."""

    window: tuple[float, float] | None = None
    heatmap_kind: str | None = None
    heatmap_opacity: float = 0.4
    show_roi: bool = True
    #: what is painted red: "lesions" (the findings' objects) or "votes" (the method's vote map)
    roi_source: str = "lesions"
    include_candidates: bool = False
    include_patient_name: bool = False
    #: draw the session's reference annotations (a reader's outlines), as the screen does
    show_references: bool = False


def render_png(session: ReadingSession, index: int, options: ImageOptions = ImageOptions()):
    """The annotated image of slice ``index`` as the PNG export draws it."""
    heat = None
    if options.heatmap_kind:
        values = session.heatmap(index, options.heatmap_kind)
        if values is not None:
            heat = (values, options.heatmap_kind)
    kwargs: dict[str, Any] = {} if options.window is None else {"window": options.window}
    vol = session.volume
    red = session.red_mask(index, options.roi_source, options.include_candidates)
    return render_slice(
        vol,
        index,
        red,
        session.marks(index, options.include_candidates),
        threshold=session.voting_threshold,
        model_version=session.card.version,
        heatmap=heat,
        heatmap_opacity=options.heatmap_opacity,
        show_roi=options.show_roi,
        patient_name=vol.patient_name if options.include_patient_name else None,
        reference_outline=session.reference_outline(index) if options.show_references else None,
        **kwargs,
    )


def export_reading(
    session: ReadingSession,
    out_dir: str | Path,
    indices: Iterable[int],
    *,
    report: dict[str, Any] | None = None,
    source_dir: str | Path | None = None,
    overwrite: bool = False,
    options: ImageOptions = ImageOptions(),
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> list[Path]:
    """Write one PNG per slice in ``indices`` (and ``report`` as ``report.json``) into
    ``out_dir``; returns the written paths.

    Everything is written into a hidden staging folder inside ``out_dir`` first and moved
    into place at the end, so a failure or a cancel (:class:`AnalysisCancelled`) leaves no
    partial export. Refuses (:class:`ExportError`) before writing anything when a target
    exists and ``overwrite`` is false, or when ``out_dir`` lies inside ``source_dir``.
    """
    indices = list(indices)
    out = Path(out_dir)
    vol = session.volume
    if source_dir is not None and Path(source_dir).exists() and is_within(out, source_dir):
        raise ExportError("The export folder must not be inside the DICOM folder; choose another folder.")
    clash = existing_outputs(out, vol, indices, report=report is not None)
    if clash and not overwrite:
        raise ExportError(
            f"{len(clash)} file(s) already exist in {out} (for example {clash[0].name}); "
            "choose another folder or allow overwriting."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".lungct-export-", dir=out))
    except OSError as exc:
        raise ExportError(f"The folder {out} could not be created: {exc.strerror or exc}.") from exc
    try:
        staged: list[Path] = []
        for n, i in enumerate(indices):
            if should_cancel is not None and should_cancel():
                raise AnalysisCancelled(f"Export cancelled after {n} of {len(indices)} slices; nothing was written.")
            target = stage / slice_png_name(i, vol.sop_instance_uids[i])
            try:
                render_png(session, i, options).save(target, format="PNG")
            except OSError as exc:
                raise ExportError(f"{target.name} could not be written: {exc.strerror or exc}.") from exc
            staged.append(target)
            if progress is not None:
                progress(n + 1, len(indices))
        if report is not None:
            staged.append(write_report(stage, report))
        written = []
        for p in staged:
            os.replace(p, out / p.name)
            written.append(out / p.name)
        return written
    finally:
        shutil.rmtree(stage, ignore_errors=True)
