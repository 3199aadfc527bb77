"""One study's reading, behind the viewer, ``analyze``, the batch and the evaluation (Qt-free).

The reading flows one way::

    study -> per-slice patch probabilities (network, once)
          -> ROI votes and the method's vote map, class heatmaps
          -> localised 3-D candidates (once per analysis) -> suspicion (second reading)
          -> lesions at the current settings -> patient call -> report / PNG export

:class:`ReadingSession` owns that chain and its parameters. Changing a parameter recomputes
only what depends on it and never re-runs the network; listeners registered with
:meth:`ReadingSession.subscribe` hear what changed (``"analysis"``, ``"candidates"``,
``"params"``, ``"threshold"``, ``"references"``), as a Qt view listens to a plain model.

Beside the reading, a session holds the reference annotations shown with it (a reader's
outlines, :mod:`.references`) and says which lesions overlap them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from . import constants as C
from .candidates import Candidate, ObjectCache, build_candidates, find_seeds, logit
from .detection import DetectionParams, class_heatmap, roi_mask
from .labels import Label
from .lesions import Lesion, SliceFinding, read_lesion, reading_order
from .lung import LungRegion, lung_region
from .model import ModelCard
from .references import Overlaps, Reference, outline_mask, reference_overlaps
from .results import SliceAnalysis, StudyAnalysis
from .second_reading import SecondReading
from .study import CTVolume
from .texture import Texture
from .voting import Diagnosis, call_exclusion, diagnose

Listener = Callable[[str], None]
_CACHE_SLICES = 48


@dataclass(frozen=True)
class Mark:
    """What is drawn for one lesion on one slice: its box, colour class and text."""

    lesion_id: int
    finding: SliceFinding
    label: Label | None  # None: a candidate below the suspicion threshold
    text: str
    #: False for a finding that does not vote in the patient call (:func:`.voting.call_exclusion`)
    in_call: bool = True


@dataclass
class CandidateSet:
    """Candidates of an analysis, their suspicion, and how long they took (s)."""

    candidates: list[Candidate]
    suspicion: np.ndarray | None
    seconds: float
    floor: float = C.CANDIDATE_MIN_ROI_PROBABILITY
    slices: frozenset[int] = field(default_factory=frozenset)


def find_candidates(
    volume: CTVolume,
    analysis: StudyAnalysis,
    second_reading: SecondReading | None,
    lung: LungRegion,
    floor: float = C.CANDIDATE_MIN_ROI_PROBABILITY,
    cache: ObjectCache | None = None,
) -> CandidateSet:
    """Candidates of every analysed slice and their suspicion (the costly step after the
    network: a second or two per study on two cores, less what ``cache`` already holds)."""
    t0 = time.perf_counter()
    seeds = [s for i in sorted(analysis.slices) for s in find_seeds(analysis.slices[i], logit(floor))]
    cands = build_candidates(seeds, volume.hu, lung, volume.voxel_spacing_mm, cache)
    suspicion = second_reading.score(cands) if second_reading is not None else None
    return CandidateSet(cands, suspicion, time.perf_counter() - t0, floor, frozenset(analysis.slices))


class CandidatePreparation:
    """Feeds :meth:`ReadingSession.prepare_candidates`, on a thread of its own, the slices the
    network delivers (:meth:`deliver`, from any thread) until the network is done
    (:meth:`finish`): what ``analyze`` and the viewer both run beside the network."""

    def __init__(self, session: ReadingSession) -> None:
        self._session = session
        self._slices: queue.SimpleQueue[SliceAnalysis] = queue.SimpleQueue()
        self._done = threading.Event()

    def deliver(self, sa: SliceAnalysis) -> None:
        self._slices.put(sa)

    def finish(self) -> None:
        self._done.set()

    def run(self, cancelled: Callable[[], bool] = lambda: False) -> int:
        """Prepare the delivered slices until :meth:`finish` or ``cancelled()``; returns how
        many were prepared."""

        def stop() -> bool:
            return self._done.is_set() or cancelled()

        def slices() -> Iterator[SliceAnalysis]:
            while not stop():
                try:
                    yield self._slices.get(timeout=0.1)
                except queue.Empty:
                    continue

        return self._session.prepare_candidates(slices(), stop)


class ReadingSession:
    """The reading of one series (see module docstring).

    Parameters
    ----------
    volume:
        The loaded series.
    card:
        The model card (version, operating point).
    second_reading:
        The second reading, or ``None`` (every candidate is then a lesion).
    """

    def __init__(
        self,
        volume: CTVolume,
        card: ModelCard,
        second_reading: SecondReading | None = None,
        *,
        params: DetectionParams | None = None,
        voting_threshold: float | None = None,
    ) -> None:
        self.volume = volume
        self.card = card
        self.second_reading = second_reading
        self.analysis = StudyAnalysis(
            series_uid=volume.series_uid, num_slices=volume.num_slices, model_version=card.version
        )
        self.default_params = DetectionParams.from_operating_point(
            card.operating_point, second_reading, volume.slice_spacing_mm
        )
        self.default_voting_threshold = float(card.operating_point.get("voting_threshold", C.DEFAULT_VOTING_THRESHOLD))
        self._params = params or self.default_params
        self._threshold = self.default_voting_threshold if voting_threshold is None else float(voting_threshold)
        self._listeners: list[Listener] = []
        self._lung: LungRegion | None = None
        self._lung_lock = threading.Lock()
        #: seconds the lung region took (None: not computed yet)
        self.lung_s: float | None = None
        #: cores and objects found so far in this series (:meth:`prepare_candidates`)
        self._objects = ObjectCache()
        self._candidates: CandidateSet | None = None
        self._lesions: list[Lesion] | None = None
        self._roi_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._heat_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._references: tuple[Reference, ...] = ()
        self._overlaps: tuple[list[Lesion], Overlaps] | None = None
        self.load_s = 0.0

    # -------------------------------------------------------------------------- events
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(what)`` after each change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, what: str) -> None:
        for fn in list(self._listeners):
            fn(what)

    # -------------------------------------------------------------------------- inputs
    def add_slice(self, sa: SliceAnalysis) -> None:
        """One more analysed slice (as the network delivers it)."""
        self.analysis.slices[sa.index] = sa
        self._drop_slice_caches(sa.index)
        self._emit("analysis")

    def set_analysis(self, analysis: StudyAnalysis) -> None:
        """Adopt a whole (possibly partial) analysis; candidates are found again on demand."""
        if analysis.num_slices != self.volume.num_slices:
            raise ValueError("the analysis belongs to another series")
        self.analysis = analysis
        self._roi_cache.clear()
        self._heat_cache.clear()
        self._candidates = None
        self._lesions = None
        self._emit("analysis")

    @property
    def params(self) -> DetectionParams:
        return self._params

    def set_params(self, params: DetectionParams) -> None:
        if params == self._params:
            return
        old, self._params = self._params, params
        if (old.min_roi_probability, old.min_votes) != (params.min_roi_probability, params.min_votes):
            self._roi_cache.clear()
        self._lesions = None
        self._emit("params")

    def update_params(self, **changes) -> None:
        """Change some detection parameters (raises ``ValueError`` for invalid values)."""
        self.set_params(self._params.with_(**changes))

    @property
    def voting_threshold(self) -> float:
        return self._threshold

    def set_voting_threshold(self, threshold: float) -> None:
        threshold = float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("the voting threshold must be between 0 and 1")
        if threshold != self._threshold:
            self._threshold = threshold
            self._emit("threshold")

    def set_second_reading(self, reading: SecondReading | None) -> None:
        """Use another second reading: candidates are re-scored (not found again) and the
        suspicion threshold moves to its operating point."""
        self.second_reading = reading
        fresh = DetectionParams.from_operating_point(self.card.operating_point, reading, self.volume.slice_spacing_mm)
        changes = {"suspicion_threshold": fresh.suspicion_threshold, "max_lesions": fresh.max_lesions}
        self.default_params = self.default_params.with_(**changes)
        if self._candidates is not None:
            cs = self._candidates
            cs.suspicion = reading.score(cs.candidates) if reading is not None else None
        self._lesions = None
        self.set_params(self._params.with_(**changes))
        self._emit("candidates")

    def finish_analysis(self, *, inference_s: float, device: str, cancelled: bool, model_path: str = "") -> None:
        """Record how a run of the network went (its slices came through :meth:`add_slice`):
        the time adds up over resumed runs; ``cancelled`` holds while slices are missing."""
        a = self.analysis
        a.inference_s += float(inference_s)
        a.device = device
        a.cancelled = bool(cancelled) and not a.complete
        if model_path:
            a.model_path = model_path

    def analysis_order(self, current: int) -> list[int]:
        """The slices still to analyse: ``current`` first, then alternately below and above
        it (a resumed analysis skips the slices already done)."""
        from .pipeline import slice_order_from

        done = self.analysis.slices
        return [i for i in slice_order_from(current, self.volume.num_slices) if i not in done]

    def snapshot(self) -> ReadingSession:
        """A copy of the reading for another thread (an export, a report): the same study,
        results, candidates and settings, with its own caches and no listeners; later
        changes to either do not reach the other."""
        copy = ReadingSession(
            self.volume, self.card, self.second_reading, params=self._params, voting_threshold=self._threshold
        )
        copy.default_params = self.default_params
        copy.default_voting_threshold = self.default_voting_threshold
        copy.analysis = replace(self.analysis, slices=dict(self.analysis.slices))
        copy._lung, copy.lung_s, copy._objects = self._lung, self.lung_s, self._objects
        if self._candidates is not None:
            copy._candidates = replace(self._candidates)
        copy._references = self._references
        copy.load_s = self.load_s
        return copy

    def reset_to_model_defaults(self) -> None:
        """The model's operating point for every detection control and the voting threshold."""
        self.set_params(self.default_params)
        self.set_voting_threshold(self.default_voting_threshold)

    # ------------------------------------------------------------------ per-slice layers
    def _drop_slice_caches(self, index: int) -> None:
        for cache in (self._roi_cache, self._heat_cache):
            for key in [k for k in cache if k[0] == index]:
                del cache[key]
        self._lesions = None
        if self._candidates is not None and index not in self._candidates.slices:
            self._candidates = None

    @staticmethod
    def _cached(cache: OrderedDict, key: tuple, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = make()
        cache[key] = value
        while len(cache) > _CACHE_SLICES:
            cache.popitem(last=False)
        return value

    def lesion_mask(self, index: int, include_candidates: bool = False) -> np.ndarray | None:
        """Native ``(H, W)`` bool: the objects of the findings (and candidates when asked) on
        slice ``index`` (``None`` before the candidates are found)."""
        if not self.candidates_ready:
            return None
        mask = np.zeros(self.volume.hu.shape[1:], dtype=bool)
        for les in self.lesions():
            if not les.passes and not include_candidates:
                continue
            sm = les.candidate.slice_mask(index)
            if sm is not None:
                m, r0, c0 = sm
                mask[r0 : r0 + m.shape[0], c0 : c0 + m.shape[1]] |= m
        return mask

    def red_mask(self, index: int, source: str = "lesions", include_candidates: bool = False) -> np.ndarray | None:
        """What is painted red on slice ``index``, on screen and in the PNGs: the findings'
        objects (``source`` "lesions"; the candidates' too when asked) or the method's vote
        map ("votes", :meth:`roi_mask`)."""
        if source == "votes":
            return self.roi_mask(index)
        if source == "lesions":
            return self.lesion_mask(index, include_candidates)
        raise ValueError(f"the red overlay shows 'lesions' or 'votes', not {source!r}")

    def roi_mask(self, index: int) -> np.ndarray | None:
        """Native ``(H, W)`` bool vote-map ROI of a slice (``None`` before it is analysed)."""
        sa = self.analysis.slices.get(index)
        if sa is None:
            return None
        p = self._params
        return self._cached(self._roi_cache, (index, p.min_roi_probability, p.min_votes), lambda: roi_mask(sa, p))

    def heatmap(self, index: int, kind: str) -> np.ndarray | None:
        """Native ``(H, W)`` class heatmap of a slice (``None`` before it is analysed)."""
        sa = self.analysis.slices.get(index)
        if sa is None:
            return None
        return self._cached(self._heat_cache, (index, kind), lambda: class_heatmap(sa, kind))

    # ----------------------------------------------------------------------- candidates
    @property
    def lung(self) -> LungRegion:
        """The series' lung region (:mod:`.lung`), computed once. It depends on the HU alone,
        so it may be computed on another thread while the network runs (the first caller
        computes it, a concurrent one waits for it)."""
        with self._lung_lock:
            if self._lung is None:
                t0 = time.perf_counter()
                self._lung = lung_region(self.volume.hu, self.volume.voxel_spacing_mm)
                self.lung_s = time.perf_counter() - t0
            return self._lung

    @property
    def lung_ready(self) -> bool:
        return self._lung is not None

    @property
    def candidates_ready(self) -> bool:
        return self._candidates is not None

    def compute_candidates(self) -> CandidateSet:
        """Find the candidates of the current analysis (pure: safe on a worker thread; hand
        the result to :meth:`set_candidates` on the session's own thread). It reads a copy
        of the analysed slices taken when it starts."""
        analysis = replace(self.analysis, slices=dict(self.analysis.slices))
        return find_candidates(self.volume, analysis, self.second_reading, self.lung, cache=self._objects)

    def prepare_candidates(self, slices: Iterable[SliceAnalysis], should_stop: Callable[[], bool]) -> int:
        """Compute the lung region, then find the objects under the seeds of ``slices`` as
        they come (an iterator that may block until the network delivers the next slice),
        until it ends or ``should_stop()``: on a worker while the network runs, so that
        :meth:`compute_candidates` afterwards only assembles them. The candidates are the
        same either way. Returns the number of slices prepared."""
        lung = self.lung
        floor = logit(C.CANDIDATE_MIN_ROI_PROBABILITY)
        hu, spacing = self.volume.hu, self.volume.voxel_spacing_mm
        done = 0
        for sa in slices:
            if should_stop():
                break
            self._objects.prepare(find_seeds(sa, floor), hu, lung, spacing, should_stop)
            done += 1
        return done

    def set_candidates(self, cs: CandidateSet) -> None:
        if cs.slices != frozenset(self.analysis.slices):
            return  # computed for an older state of the analysis
        self._candidates = cs
        self._lesions = None
        self._emit("candidates")

    def ensure_candidates(self) -> CandidateSet:
        if self._candidates is None:
            self.set_candidates(self.compute_candidates())
        assert self._candidates is not None
        return self._candidates

    # -------------------------------------------------------------------------- lesions
    def lesions(self) -> list[Lesion]:
        """Every candidate as a lesion at the current settings: the findings (``passes``) in
        reading order numbered from 1, then the candidates below the suspicion threshold in
        reading order. Candidates whose strongest seed is below the detection sensitivity are
        left out. ``lesion.candidate.id`` stays the same whatever the settings."""
        if self._lesions is None:
            cs = self.ensure_candidates()
            p = self._params
            floor = logit(p.min_roi_probability)
            out = []
            for k, cand in enumerate(cs.candidates):
                if cand.max_roi_logit < floor:
                    continue
                s = None if cs.suspicion is None else float(cs.suspicion[k])
                out.append(
                    read_lesion(
                        cand,
                        self.volume,
                        self.analysis,
                        min_roi_probability=p.min_roi_probability,
                        suspicion=s,
                        suspicion_threshold=p.suspicion_threshold,
                        lesion_id=0,
                    )
                )
            out = _cap(out, p.max_lesions)
            # findings first (L1, L2, ... top to bottom), then the candidates below the threshold
            ordered = reading_order([les for les in out if les.passes]) + reading_order(
                [les for les in out if not les.passes]
            )
            self._lesions = [_renumber(les, i + 1) for i, les in enumerate(ordered)]
        return self._lesions

    def findings(self) -> list[Lesion]:
        """The lesions that pass the second reading, in reading order."""
        return [les for les in self.lesions() if les.passes]

    def diagnosis(self) -> Diagnosis:
        return diagnose(self.lesions(), self._threshold, self._params.call_min_diameter_mm)

    def marks(self, index: int, include_candidates: bool = False) -> list[Mark]:
        """What to draw on slice ``index``: passing lesions (and candidates when asked)."""
        if not self.candidates_ready:
            return []
        out = []
        for les in self.lesions():
            if not les.passes and not include_candidates:
                continue
            for f in les.findings:
                if f.slice_index == index:
                    out.append(
                        Mark(
                            les.id,
                            f,
                            les.label(self._threshold) if les.passes else None,
                            lesion_text(les, self._threshold),
                            in_call=call_exclusion(les, self._params.call_min_diameter_mm) is None,
                        )
                    )
        return out

    def slice_label(self, index: int) -> Label | None:
        """The worst call among passing lesions on slice ``index`` (``None``: none there)."""
        labels = [m.label for m in self.marks(index) if m.label is not None]
        if not labels:
            return None
        return Label.MALIGNANT if Label.MALIGNANT in labels else Label.BENIGN

    def largest_finding(self) -> Lesion | None:
        """The passing lesion with the largest diameter (``None``: no finding)."""
        return max(self.findings(), key=lambda les: (les.diameter_mm, -les.id), default=None)

    def slices_with_findings(self) -> list[int]:
        return sorted({f.slice_index for les in self.findings() for f in les.findings})

    def next_finding(self, current: int | None, step: int) -> Lesion | None:
        """The next (``step`` 1) or previous (-1) passing lesion after lesion number
        ``current`` (``None``: start at the first or last)."""
        found = self.findings()
        if not found:
            return None
        ids = [les.id for les in found]
        if current not in ids:
            return found[0] if step > 0 else found[-1]
        return found[(ids.index(current) + step) % len(found)]

    # ----------------------------------------------------------------------- references
    @property
    def references(self) -> tuple[Reference, ...]:
        """The reference annotations shown with this reading, in the order they came."""
        return self._references

    def add_references(self, references: Sequence[Reference]) -> None:
        """Show ``references`` too; those read from the same files before are replaced."""
        for ref in references:
            if not isinstance(ref, Reference):
                raise TypeError(f"references must be Reference objects, not {type(ref).__name__}")
        files = {ref.path for ref in references}
        self._references = tuple(r for r in self._references if r.path not in files) + tuple(references)
        self._overlaps = None
        self._emit("references")

    def clear_references(self) -> None:
        if self._references:
            self._references = ()
            self._overlaps = None
            self._emit("references")

    def reference_overlaps(self) -> Overlaps | None:
        """Which lesions (findings and candidates, by their current numbers) share voxels
        with which references (:class:`~.references.Overlaps`); None before the candidates
        are found."""
        if not self.candidates_ready:
            return None
        lesions = self.lesions()
        if self._overlaps is None or self._overlaps[0] is not lesions:
            self._overlaps = (lesions, reference_overlaps(lesions, self._references))
        return self._overlaps[1]

    def reference_outline(self, index: int) -> np.ndarray | None:
        """Native ``(H, W)`` bool: the outlines of the references on slice ``index`` (what
        the screen and, on request, the PNGs draw); None when there is no reference."""
        if not self._references:
            return None
        return outline_mask(self._references, index, self.volume.hu.shape[1:])


def _cap(lesions: list[Lesion], max_lesions: int | None) -> list[Lesion]:
    """At most ``max_lesions`` passing lesions, the most suspicious; the rest stop passing."""
    from dataclasses import replace

    passing = [les for les in lesions if les.passes]
    if max_lesions is None or len(passing) <= max_lesions:
        return lesions
    ranked = sorted(passing, key=lambda les: -(les.suspicion if les.suspicion is not None else 1.0))
    drop = {id(les) for les in ranked[max_lesions:]}
    return [replace(les, passes=False) if id(les) in drop else les for les in lesions]


def _renumber(les: Lesion, new_id: int) -> Lesion:
    from dataclasses import replace

    return replace(les, id=new_id, findings=tuple(replace(f, lesion_id=new_id) for f in les.findings))


def lesion_name(les: Lesion) -> str:
    """``L2`` for a lesion that passes the second reading (a finding), ``C7`` for a
    candidate below the suspicion threshold."""
    return f"{'L' if les.passes else 'C'}{les.id}"


def lesion_text(les: Lesion, threshold: float) -> str:
    """``L2 Malignant 0.81`` for a passing lesion (the probability of its own label; ``GG``
    after it for ground glass, which does not vote in the patient call), ``C7 0.12``
    (suspicion) for a candidate below the threshold."""
    if not les.passes:
        return f"{lesion_name(les)} {les.suspicion:.2f}" if les.suspicion is not None else lesion_name(les)
    lab = les.label(threshold)
    glass = " GG" if les.texture is Texture.GROUND_GLASS else ""
    return f"{lesion_name(les)} {lab.display} {les.probability(threshold):.2f}{glass}"


def lesions_table(
    lesions: Sequence[Lesion],
    threshold: float,
    overlaps: Overlaps | None = None,
    call_min_diameter_mm: float = C.DEFAULT_CALL_MIN_DIAMETER_MM,
) -> list[dict]:
    """Rows for a findings list: number, slices (1-based), size (mean diameter and the long and
    short axis it averages), call, probability, suspicion, texture (:mod:`.texture`), why a
    finding does not vote in the patient call (``not_in_call``, :func:`.voting.call_exclusion`),
    where to show the lesion (its central slice and the centre ``(row, col)`` there), and the
    indices of the references it overlaps (``references``, empty without ``overlaps``)."""
    hits = overlaps.by_lesion if overlaps is not None else {}
    return [
        {
            "id": les.id,
            "slices": (les.slices[0] + 1, les.slices[1] + 1),
            "central_slice": les.central.slice_index,
            "centre_px": les.central.centroid_px,
            "diameter_mm": les.diameter_mm,
            "axes_mm": (les.long_axis_mm, les.short_axis_mm),
            "label": les.label(threshold) if les.passes else None,
            "probability": les.probability(threshold),
            "suspicion": les.suspicion,
            "passes": les.passes,
            "texture": les.texture,
            "not_in_call": call_exclusion(les, call_min_diameter_mm),
            "references": tuple(hits.get(les.id, ())),
        }
        for les in lesions
    ]
