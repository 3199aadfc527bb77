"""Writing annotated PNGs: collision-free names, atomic writes, no silent overwrites."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from .atomic import atomic_path
from .detection import SliceDetection
from .errors import AnalysisCancelled, ExportError
from .render import render_slice
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


def existing_outputs(out_dir: str | Path, volume: CTVolume, indices: Iterable[int]) -> list[Path]:
    """Files an export of ``indices`` into ``out_dir`` would replace."""
    out = Path(out_dir)
    return [p for i in indices if (p := out / slice_png_name(i, volume.sop_instance_uids[i])).exists()]


def export_annotated_slices(
    volume: CTVolume,
    detections: dict[int, SliceDetection],
    indices: Iterable[int],
    out_dir: str | Path,
    *,
    threshold: float,
    model_version: str,
    overwrite: bool = False,
    include_patient_name: bool = False,
    window: tuple[float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> list[Path]:
    """Render and write one PNG per slice in ``indices``; returns the written paths.

    Refuses (``ExportError``) before writing anything when a target exists and
    ``overwrite`` is false. Each file is written atomically. Cancelling stops between files
    (``AnalysisCancelled``); files already written stay.
    """
    indices = list(indices)
    out = Path(out_dir)
    clash = existing_outputs(out, volume, indices)
    if clash and not overwrite:
        raise ExportError(
            f"{len(clash)} file(s) already exist in {out} (for example {clash[0].name}); "
            "choose another folder or allow overwriting."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"The folder {out} could not be created: {exc.strerror}.") from exc
    kwargs = {} if window is None else {"window": window}
    written: list[Path] = []
    for n, i in enumerate(indices):
        if should_cancel is not None and should_cancel():
            raise AnalysisCancelled(f"Export cancelled after {n} of {len(indices)} slices.")
        img = render_slice(
            volume,
            i,
            detections.get(i),
            threshold=threshold,
            model_version=model_version,
            patient_name=volume.patient_name if include_patient_name else None,
            **kwargs,
        )
        target = out / slice_png_name(i, volume.sop_instance_uids[i])
        try:
            with atomic_path(target, suffix=".png") as tmp:
                img.save(tmp, format="PNG")
        except OSError as exc:
            raise ExportError(f"{target.name} could not be written: {exc.strerror or exc}.") from exc
        written.append(target)
        if progress is not None:
            progress(n + 1, len(indices))
    return written
