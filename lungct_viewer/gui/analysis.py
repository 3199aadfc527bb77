"""The network in the background: the model loads when the application starts, the analysis
streams each slice's result into the :class:`~lungct_viewer.core.session.ReadingSession`, and
the candidates are found off the GUI thread when it ends. Beside the network, a second worker
computes the lung region and the objects under each delivered slice's seeds
(:meth:`~lungct_viewer.core.session.ReadingSession.prepare_candidates`), so that little is
left to do once the network is done.

TensorFlow and the model code are imported on worker threads only, so the window is on screen
before TensorFlow has finished importing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6 import QtCore
from PySide6.QtCore import Signal

from lungct_viewer.core.errors import AnalysisCancelled, LungCTError, ModelLoadError
from lungct_viewer.core.model import ModelCard, read_model_card
from lungct_viewer.core.session import CandidatePreparation, ReadingSession

from .workers import Worker, WorkerControl, WorkerPool

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    from lungct_viewer.resources import MODEL_DIR

    from ..core.model import MODEL_FILENAME

    return MODEL_DIR / MODEL_FILENAME


@dataclass(frozen=True)
class ReadyModel:
    """What the model worker hands over: the loaded model and its analyzer."""

    loaded: Any  # LoadedModel
    analyzer: Any  # pipeline.Analyzer


class ModelLoader(QtCore.QObject):
    """Loads the model (and builds its analyzer) once, on a worker; the card and the second
    reading are read from their JSON files at once, without Keras."""

    ready = Signal()
    failed = Signal(object)  # the exception

    def __init__(self, pool: WorkerPool, model_path: str | None, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = pool
        self.path = Path(model_path) if model_path else default_model_path()
        self.loaded: Any = None  # LoadedModel
        self.analyzer: Any = None  # pipeline.Analyzer
        self.error: BaseException | None = None
        self._worker: Worker | None = None
        self._card: ModelCard | None = None
        self._second: tuple[Any] | None = None

    @property
    def is_ready(self) -> bool:
        return self.analyzer is not None

    @property
    def is_loading(self) -> bool:
        return self._worker is not None

    def start_on_first(self, *signals: QtCore.SignalInstance) -> None:
        """Start loading when the first of ``signals`` fires (later ones do nothing).

        Importing TensorFlow holds the Python interpreter for seconds; the window uses this to
        read a study's first slice before it (``MainWindow.open_at_start``)."""
        pending = [True]

        def once(*_args) -> None:
            if pending[0]:
                pending[0] = False
                self.start()

        for signal in signals:
            signal.connect(once)

    def start(self) -> None:
        """Start loading (once; again after a failure)."""
        if self.is_ready or self.is_loading:
            return
        path = self.path
        self.error = None

        def load(control: WorkerControl):
            from lungct_viewer.core.model import load_model
            from lungct_viewer.core.pipeline import Analyzer

            loaded = load_model(path)
            analyzer = Analyzer(loaded)
            analyzer.warm_up()  # the network call is ready before the first slice
            return ReadyModel(loaded, analyzer)

        def connect(w: Worker) -> None:
            w.returned.connect(self._on_loaded)
            w.errored.connect(self._on_failed)
            w.cancelled.connect(self._on_failed)

        self._worker = self._pool.start("model", load, connect)

    def _on_loaded(self, result: ReadyModel) -> None:
        self._worker = None
        self.loaded, self.analyzer = result.loaded, result.analyzer
        self._card = self.loaded.card
        self._second = (self.loaded.second_reading,)
        log.info("model %s loaded", self.loaded.version)
        self.ready.emit()

    def _on_failed(self, exc: BaseException) -> None:
        self._worker = None
        self.error = exc
        self.failed.emit(exc)

    def card(self) -> ModelCard:
        """The model card (a placeholder when none can be read)."""
        if self._card is None:
            try:
                self._card = read_model_card(self.path)
            except ModelLoadError as exc:
                log.warning("%s", exc)
                self._card = ModelCard(version="unknown", notes=[str(exc)])
        return self._card

    def second_reading(self):
        """The second reading beside the model, or ``None`` (none, or unreadable: logged)."""
        if self._second is None:
            from lungct_viewer.core.second_reading import load_second_reading

            try:
                self._second = (load_second_reading(self.path),)
            except ModelLoadError as exc:
                log.warning("%s", exc)
                self._second = (None,)
        return self._second[0]


class AnalysisController(QtCore.QObject):
    """Runs the network over a session's missing slices, then finds its candidates.

    ``finished`` carries the session's :class:`~lungct_viewer.core.results.StudyAnalysis`
    once the candidates are set (also after a cancel with partial results), or ``None`` when
    the analysis could not run; ``failed`` carries the error to show.
    """

    started = Signal(int)  # slices to analyse
    progressed = Signal(int, int)
    waitingForModel = Signal()
    finished = Signal(object)
    failed = Signal(object)

    def __init__(self, pool: WorkerPool, model: ModelLoader, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = pool
        self._model = model
        self._session: ReadingSession | None = None
        self._order: list[int] = []
        self._worker: Worker | None = None
        self._candidates: Worker | None = None
        self._waiting = False
        self._restart: tuple[ReadingSession, int] | None = None
        model.ready.connect(self._on_model_ready)
        model.failed.connect(self._on_model_failed)

    def is_running(self) -> bool:
        """True from :meth:`start` until the candidates are set (or it failed)."""
        return self._waiting or self._worker is not None or self._candidates is not None

    def start(self, session: ReadingSession, current: int) -> None:
        """Analyse the slices of ``session`` not yet analysed, ``current`` first."""
        if self.is_running():
            if self._session is session:
                return
            self._restart = (session, current)  # after the running one has stopped
            self.cancel()
            return
        self._session = session
        self._order = session.analysis_order(current)
        if not self._order:
            if session.candidates_ready:  # nothing left to do
                self._end(session.analysis)
            else:
                self._find_candidates()
            return
        if not self._model.is_ready:
            self._waiting = True
            self.waitingForModel.emit()
            self._model.start()
            return
        self._run()

    def find_candidates(self, session: ReadingSession) -> None:
        """Only find the candidates of ``session``'s analysis as it stands (on a worker)."""
        if self.is_running():
            raise RuntimeError("an analysis is running")
        self._session = session
        self._find_candidates()

    def cancel(self) -> None:
        """Stop after the current slice; the slices done so far are kept and read."""
        if self._waiting:
            self._waiting = False
            self._end(self._session.analysis if self._session is not None else None)
        if self._worker is not None:
            self._worker.cancel()

    def stop_for(self, session: ReadingSession) -> None:
        """Stop working on ``session`` (another study is being opened)."""
        if self._session is session and self.is_running():
            self.cancel()

    # -- the network -------------------------------------------------------------------
    def _on_model_ready(self) -> None:
        if self._waiting:
            self._waiting = False
            self._run()

    def _on_model_failed(self, exc: BaseException) -> None:
        if self._waiting:
            self._waiting = False
            self._session = None
            self.failed.emit(exc)
            self.finished.emit(None)

    def _run(self) -> None:
        session, order, analyzer = self._session, list(self._order), self._model.analyzer
        volume = session.volume

        # beside the network, from its first slice on, a second worker computes the lung region
        # and finds the objects under each delivered slice's seeds, so that the candidates are
        # quick once it ends
        preparation = CandidatePreparation(session)

        def analyse(control: WorkerControl):
            try:
                for sa in analyzer.iter_analyze(volume, order, control.cancelled):
                    preparation.deliver(sa)
                    yield sa
            finally:
                preparation.finish()
            if control.cancelled():  # it stopped between network calls
                raise AnalysisCancelled("The analysis was cancelled.")

        def prepare(control: WorkerControl) -> int:
            return preparation.run(control.cancelled)

        total = len(order)
        done = [0]

        def on_slice(sa) -> None:
            if self._session is session:
                session.add_slice(sa)
                done[0] += 1
                self.progressed.emit(done[0], total)
                if done[0] == 1:  # after the current slice's result, which the reader waits for
                    self._pool.start("candidates ahead", prepare, self._connect_prepare)

        def connect(w: Worker) -> None:
            w.yielded.connect(on_slice)
            w.returned.connect(lambda _r: self._on_network_done(w, cancelled=False))
            w.cancelled.connect(lambda _e: self._on_network_done(w, cancelled=True))
            w.errored.connect(lambda exc: self._on_network_failed(w, exc))

        self._worker = self._pool.start("analysis", analyse, connect)
        self.started.emit(total)

    @staticmethod
    def _connect_prepare(w: Worker) -> None:
        # a failure here is reported when the candidates are found after the network
        w.errored.connect(lambda exc: log.warning("preparing the candidates failed: %s: %s", type(exc).__name__, exc))

    def _on_network_done(self, w: Worker, cancelled: bool) -> None:
        self._worker = None
        session = self._session
        if session is None:
            return
        session.finish_analysis(
            inference_s=w.seconds,
            device=self._model.analyzer.device,
            cancelled=cancelled,
            model_path=str(self._model.path),
        )
        if self._restart is not None:
            self._end(session.analysis)
            return
        self._find_candidates()

    def _on_network_failed(self, w: Worker, exc: BaseException) -> None:
        self._worker = None
        self._session = None
        if not isinstance(exc, LungCTError):
            log.error("the analysis failed: %s: %s", type(exc).__name__, exc)
        self.failed.emit(exc)
        self.finished.emit(None)
        self._maybe_restart()

    # -- the candidates ------------------------------------------------------------------
    def _find_candidates(self) -> None:
        session = self._session
        if session is None or not session.analysis.slices:
            self._end(session.analysis if session is not None else None)
            return

        def find(control: WorkerControl):
            return session.compute_candidates()

        def connect(w: Worker) -> None:
            w.returned.connect(lambda cs: self._on_candidates(session, cs))
            w.errored.connect(self._on_candidates_failed)

        self._candidates = self._pool.start("candidates", find, connect)

    def _on_candidates(self, session: ReadingSession, cs) -> None:
        self._candidates = None
        session.set_candidates(cs)  # ignored when the analysis changed since
        self._end(session.analysis)

    def _on_candidates_failed(self, exc: BaseException) -> None:
        self._candidates = None
        self._session = None
        log.error("finding the candidates failed: %s: %s", type(exc).__name__, exc)
        self.failed.emit(exc)
        self.finished.emit(None)
        self._maybe_restart()

    def _end(self, analysis) -> None:
        self._session = None
        self.finished.emit(analysis)
        self._maybe_restart()

    def _maybe_restart(self) -> None:
        if self._restart is not None and not self.is_running():
            session, current = self._restart
            self._restart = None
            self.start(session, current)
