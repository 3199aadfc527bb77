"""Whole studies for whole-study evaluation and for fitting the second reading.

A :class:`StudySpec` names a study folder and, for Lung-PET-CT-Dx, its VOC annotation folder.
:func:`discover_studies` finds the shared collections in a data folder laid out as
``lidc-idri/<patient>/`` (reading XML inside), ``lung-pet-ct-dx/<Lung_Dx-ID>/`` with
``lung-pet-ct-dx/Annotation/<ID>/``, and ``covid-ct-md/<case>/`` (no annotation).

:func:`analysed_series` loads every CT series of a study and runs the network on it once per
model version, caching the per-slice probabilities under ``cache_dir`` (the cache key holds
the model file's size and time, the series UID and the analyser settings), and with
``slabs_mm`` adds thick-slab reconstructions of the thin-slice series (:mod:`training.slabs`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungct_viewer.core.errors import DataError
from lungct_viewer.core.results import SliceAnalysis, StudyAnalysis
from lungct_viewer.core.study import CTVolume

from .ground_truth import StudyTruth, study_truth


@dataclass(frozen=True)
class StudySpec:
    """One whole study: a name, its folder, its VOC annotation folder if any, a group."""

    name: str
    folder: Path
    annotation_dir: Path | None = None
    collection: str = ""


def discover_studies(data_dir: str | os.PathLike[str]) -> list[StudySpec]:
    """The whole studies of the shared data layout (see module docstring), sorted by name."""
    root = Path(data_dir)
    specs: list[StudySpec] = []
    for p in sorted((root / "lidc-idri").glob("LIDC-IDRI-*")):
        if p.is_dir():
            specs.append(StudySpec(p.name, p, None, "LIDC-IDRI"))
    dx = root / "lung-pet-ct-dx"
    for p in sorted(dx.glob("Lung_Dx-*")):
        ann = dx / "Annotation" / p.name.split("-", 1)[1]
        if p.is_dir():
            specs.append(StudySpec(p.name, p, ann if ann.is_dir() else None, "Lung-PET-CT-Dx"))
    for p in sorted((root / "covid-ct-md").glob("*")):
        if p.is_dir():
            specs.append(StudySpec(p.name, p, None, "COVID-CT-MD"))
    if not specs:
        raise DataError(
            f"No whole studies were found in {root} (expected lidc-idri/, lung-pet-ct-dx/ or covid-ct-md/)."
        )
    return specs


@dataclass
class AnalysedSeries:
    """One series of a study with the network's output and its ground truth."""

    spec: StudySpec
    volume: CTVolume
    analysis: StudyAnalysis
    truth: StudyTruth
    #: thin slices per slab of a derived thick-slab series (:mod:`training.slabs`); 1: as acquired
    slab: int = 1

    @property
    def derived(self) -> bool:
        return self.slab > 1

    @property
    def key(self) -> str:
        uid = self.volume.series_uid
        if self.derived:
            from .slabs import slab_suffix

            uid = uid.removesuffix(slab_suffix(self.slab))
            return f"{self.spec.name}/{uid[-8:]}/slab{self.slab}"
        return f"{self.spec.name}/{uid[-8:]}"


def _cache_file(cache_dir: Path, model_path: Path, series_uid: str, use_field_mask: bool) -> Path:
    st = model_path.stat()
    h = hashlib.sha1(f"{model_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{use_field_mask}".encode()).hexdigest()[:12]
    return cache_dir / h / f"{series_uid}.npz"


class _Network:
    """The network's per-slice output for volumes, cached under ``cache_dir`` (see module
    docstring); the analyser is built on first use."""

    def __init__(self, model, cache_dir: Path | None, use_field_mask: bool, log) -> None:
        self.model, self.cache_dir, self.use_field_mask, self.log = model, cache_dir, use_field_mask, log
        self._analyzer = None

    def analyse(self, vol: CTVolume, name: str) -> StudyAnalysis:
        from lungct_viewer.core.pipeline import Analyzer

        model = self.model
        cached = (
            _cache_file(self.cache_dir, Path(model.path), vol.series_uid, self.use_field_mask)
            if self.cache_dir
            else None
        )
        if cached is not None and cached.is_file():
            with np.load(cached) as z:
                probs, in_field, npm, t = (
                    z["probs"],
                    z["in_field"],
                    tuple(z["native_per_model"]),
                    float(z["inference_s"]),
                )
            slices = {i: SliceAnalysis(i, probs[i], in_field[i], vol.hu.shape[1:], npm) for i in range(vol.num_slices)}
            return StudyAnalysis(
                series_uid=vol.series_uid,
                num_slices=vol.num_slices,
                slices=slices,
                model_version=model.version,
                model_path=model.path,
                inference_s=t,
            )
        if self._analyzer is None:
            self._analyzer = Analyzer(model, use_field_mask=self.use_field_mask)
        analysis = self._analyzer.analyze(vol)
        self.log(f"  {name} {vol.series_uid[-8:]}: network on {vol.num_slices} slices in {analysis.inference_s:.1f} s")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            sl = [analysis.slices[i] for i in range(vol.num_slices)]
            tmp = cached.with_suffix(".tmp.npz")
            np.savez_compressed(
                tmp,
                probs=np.stack([s.probs for s in sl]),
                in_field=np.stack([s.in_field for s in sl]),
                native_per_model=np.array(sl[0].native_per_model),
                inference_s=analysis.inference_s,
            )
            os.replace(tmp, cached)
        return analysis


def analysed_series(
    spec: StudySpec,
    model,
    cache_dir: Path | None = None,
    use_field_mask: bool = True,
    log=print,
    slabs_mm: tuple[float, ...] = (),
) -> Iterator[AnalysedSeries]:
    """Every axial CT series of ``spec`` with the network's output (cached) and its truth;
    with ``slabs_mm``, each series is followed by its thick-slab reconstructions at those
    spacings (:mod:`training.slabs`; ``AnalysedSeries.slab`` > 1)."""
    from lungct_viewer.core.dicom import load_series, scan_folder

    from .slabs import slab_factors, slab_truth, thick_slab

    scan = scan_folder(spec.folder)
    network = _Network(model, cache_dir, use_field_mask, log)
    for info in sorted(scan.series, key=lambda s: s.uid):
        if info.modality != "CT" or not info.is_axial or info.num_slices < 10:
            continue
        vol = load_series(info)
        truth = study_truth(spec.folder, vol, spec.annotation_dir)
        yield AnalysedSeries(spec, vol, network.analyse(vol, spec.name), truth)
        for k in slab_factors(vol.slice_spacing_mm, slabs_mm) if slabs_mm else []:
            thick = thick_slab(vol, k)
            yield AnalysedSeries(
                spec, thick, network.analyse(thick, spec.name), slab_truth(truth, k, thick.num_slices), slab=k
            )
