"""Running a cohort batch: discovery, skipping what is done, reading the rest in this process
or on Dask workers, the progress bar, a clean stop, and the cohort table.

Where the studies run
---------------------
* ``workers=1`` (default): one after the other in this process.
* ``workers=N``: a :class:`distributed.LocalCluster` of N worker processes with one thread
  each; TensorFlow in each uses ``cpu_count // N`` threads, so N workers share the cores
  rather than fight for them.
* ``scheduler="tcp://host:8786"``: an existing Dask cluster. Its workers need LungCT Viewer
  installed (the same version) and must read ROOT, OUT and the model file at the same paths
  as this machine (the shipped model is found in each worker's own installation; its digest
  is checked).

Every way runs :func:`.worker.run_study` per study, which calls the pipeline of ``analyze``,
and each worker process loads the model once.

Stopping
--------
Ctrl-C (``KeyboardInterrupt``) or ``should_stop()`` returning True stops the batch: studies
not started are cancelled, a local cluster is shut down (its workers with it), staging
folders of this run are removed, and ``cohort.csv`` is written with the studies not reached
marked as skipped. Study folders appear only by renaming a complete staging folder, so none
is ever half-written. On an external cluster, studies already running there finish on their
own and are picked up by the next run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.errors import LungCTError, ModelLoadError
from ..core.export import is_within
from ..core.reading import ReadOptions
from . import cohort as K
from .discover import Discovery, StudySpec, Unread, discover_studies
from .worker import StudyTask, run_study

log = logging.getLogger(__name__)

#: Staging folders older than this (seconds) are left-overs of runs that were killed.
STALE_STAGING_S = 3600
STOPPED_MESSAGE = "The batch was stopped before this study was read; run the same command again to continue."


class BatchError(LungCTError):
    """The batch as a whole cannot run (bad ROOT or OUT, no model, cluster unreachable)."""


@dataclass
class BatchResult:
    """What a batch did: one row per study (in folder order) and where the table went."""

    rows: list[dict[str, Any]]
    csv_path: Path
    json_path: Path
    interrupted: bool = False
    seconds: float = 0.0
    discovery: Discovery | None = field(default=None, repr=False)

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == K.STATUS_FAILED]


def run_batch(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    options: ReadOptions | None = None,
    use_field_mask: bool = True,
    each_series: bool = False,
    depth: int = 1,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> BatchResult:
    """Read every study under ``root`` into ``out`` (see the module docstring).

    Parameters
    ----------
    root, out
        The cohort folder (only read) and the output folder (not inside ``root``).
    model
        The model file; ``None``: the shipped model.
    options, use_field_mask
        As for ``analyze`` (``None``: the defaults); they and the model decide whether an earlier result is kept.
    each_series, depth
        How studies are found (:mod:`.discover`).
    workers, scheduler
        Where they run (module docstring); not both.
    progress
        Show a progress bar with the time left (on stderr).
    should_stop
        Polled between studies; when it returns True the batch stops as on Ctrl-C.
    on_row
        Called with each study's row as it comes in (in completion order).
    say
        Receives a few lines about what happens (discovery, cluster); ``None``: silent.

    Returns
    -------
    BatchResult
        ``interrupted`` is True when Ctrl-C or ``should_stop`` ended it early.

    Raises
    ------
    BatchError, ModelLoadError
        Before any study is read, when the batch as a whole cannot run.
    """
    t0 = time.perf_counter()
    options = options or ReadOptions()
    say = say or (lambda _line: None)
    root_p, out_p = Path(root), Path(out)
    _check_folders(root_p, out_p)
    if workers < 1:
        raise BatchError("At least one worker is needed.")
    if scheduler and workers != 1:
        raise BatchError("Choose either local workers or a Dask scheduler, not both.")
    model_path, digest, version = _model_identity(model)
    fp = K.fingerprint(digest, options, use_field_mask)
    ids = options.include_identifiers
    try:
        out_p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"The output folder {out_p} could not be created: {exc.strerror or exc}.") from None
    out_p = out_p.resolve()

    with _exclusive(out_p), contextlib.ExitStack() as stack:
        # an external cluster is checked before the (possibly long) search for studies
        remote = stack.enter_context(_remote_client(scheduler, say)) if scheduler else None
        _remove_stale_staging(out_p)
        disc = _discover(root_p, each_series, depth, progress, say)
        rows: dict[int, dict[str, Any]] = {}
        entries = disc.entries()
        todo: list[tuple[int, StudyTask]] = []
        run_id = uuid.uuid4().hex[:12]
        model_arg = None if model is None else str(model_path)
        for k, e in enumerate(entries):
            if isinstance(e, Unread):
                rows[k] = _unread_row(e, ids)
                continue
            marker = K.done_marker(out_p / e.id, fp)
            if marker is not None:
                rows[k] = _skipped_row(marker, e, ids)
                continue
            todo.append((k, StudyTask(e, str(out_p), run_id, model_arg, digest, version, options, use_field_mask, fp)))
        say(
            f"{len(disc.studies)} studies in {disc.patient_folders} patient folder(s); "
            f"{len(disc.studies) - len(todo)} already read with this model and options, {len(todo)} to read"
        )

        interrupted = False
        if todo:
            execute = _run_sequential if scheduler is None and workers == 1 else _run_dask
            bar = _bar(len(todo), progress)
            results = execute(todo, workers=workers, client=remote, should_stop=should_stop, say=say)
            try:
                for k, row in results:
                    rows[k] = row
                    bar.update(1)
                    bar.set_postfix(ok=_n(rows, K.STATUS_OK), failed=_n(rows, K.STATUS_FAILED), refresh=False)
                    if on_row is not None:
                        on_row(row)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                results.close()  # cancels what has not run and shuts a local cluster down
                bar.close()
            interrupted = interrupted or len(rows) < len(entries)
            if interrupted:
                for k, task in todo:
                    if k in rows:
                        continue
                    marker = K.done_marker(out_p / task.spec.id, fp)  # finished while stopping
                    rows[k] = (
                        dict(marker["row"])
                        if marker is not None
                        else K.empty_row(
                            task.spec.id,
                            K.STATUS_SKIPPED,
                            STOPPED_MESSAGE,
                            study_uid=task.spec.study_uid,
                            series_uid=task.spec.series_uid,
                            series_description=task.spec.description,
                            **({"source": task.spec.source} if ids else {}),
                        )
                    )
                if scheduler is None:  # every worker of this run is gone: nothing of it is still writing
                    _remove_staging(out_p, run_id)

        with contextlib.suppress(OSError):
            (out_p / K.STAGING).rmdir()  # only when empty: a remote worker may still be writing
        ordered = [rows[k] for k in range(len(entries))]
        meta = _meta(disc, options, use_field_mask, each_series, depth, model_path, digest, version, ids, interrupted)
        csv_path, json_path = K.write_cohort(out_p, ordered, include_identifiers=ids, meta=meta)
    return BatchResult(ordered, csv_path, json_path, interrupted, time.perf_counter() - t0, disc)


# ------------------------------------------------------------------------- preparation
def _check_folders(root: Path, out: Path) -> None:
    if not root.exists():
        raise BatchError(f"The cohort folder {root} does not exist.")
    if not root.is_dir():
        raise BatchError(f"{root} is a file, not a folder; give the folder that holds the patient folders.")
    if is_within(out, root):
        raise BatchError("The output folder must not be inside the cohort folder; choose another --out.")


def _model_identity(model: str | os.PathLike[str] | None) -> tuple[Path, str, str]:
    """The model file, its digest and version (checked here without loading TensorFlow)."""
    import zipfile

    from ..core.model import read_model_card
    from ..core.pipeline import default_model_path

    path = Path(model) if model is not None else default_model_path()
    if not path.is_file():
        if model is None:
            raise ModelLoadError(
                f"No trained model is installed (expected {path}); pass --model PATH to a .keras model."
            )
        raise ModelLoadError(f"No model file was found at {path}.")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"The model file {path.name} is damaged or is not a Keras model (.keras) file.")
    card = read_model_card(path)
    return path.resolve(), K.model_digest(path), card.version


def _discover(root: Path, each_series: bool, depth: int, progress: bool, say) -> Discovery:
    bar = None

    def on_folder(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = _bar(total, progress and total > 1, desc="Finding studies", unit="folder")
        bar.update(1)

    try:
        disc = discover_studies(root, each_series=each_series, depth=depth, on_folder=on_folder)
    finally:
        if bar is not None:
            bar.close()
    if disc.stray_files:
        say(
            f"{disc.stray_files} file(s) lie above the patient folders and were not read "
            f"(the patient folders are {depth} level(s) below the cohort folder; see --depth)"
        )
    if not disc.patient_folders:
        hint = " It holds files directly: use --depth 0 to read it as one patient folder." if disc.stray_files else ""
        raise BatchError(f"The cohort folder {root} holds no patient folders.{hint}")
    return disc


def _unread_row(e: Unread, ids: bool) -> dict[str, Any]:
    status = K.STATUS_FAILED if e.failed else K.STATUS_SKIPPED
    msg = e.message if ids else K.scrub(e.message, e.folder)
    return K.empty_row(
        e.id,
        status,
        msg,
        study_uid=e.study_uid or None,
        series_uid=e.series_uid or None,
        series_description=e.description or None,
        **({"source": e.source} if ids else {}),
    )


def _skipped_row(marker: dict[str, Any], spec: StudySpec, ids: bool) -> dict[str, Any]:
    row = K.empty_row(spec.id, K.STATUS_SKIPPED)
    row.update({k: v for k, v in marker["row"].items() if k in row})
    row["status"] = K.STATUS_SKIPPED
    row["message"] = f"Already read with the same model and options ({marker.get('finished', 'earlier')})."
    row["source"] = spec.source if ids else None
    return row


def _meta(disc, options, use_field_mask, each_series, depth, model_path, digest, version, ids, interrupted):
    meta: dict[str, Any] = {
        "unit": "series" if each_series else "patient folder",
        "depth": depth,
        "model": {"version": version, "sha256": digest},
        "options": {**options.to_dict(), "use_field_mask": use_field_mask},
        "patient_folders": disc.patient_folders,
        "interrupted": interrupted,
    }
    if ids:
        meta["root"] = disc.root
        meta["model"]["path"] = str(model_path)
    return meta


def _n(rows: dict[int, dict[str, Any]], status: str) -> int:
    return sum(r["status"] == status for r in rows.values())


def _bar(total: int, enabled: bool, desc: str = "Reading studies", unit: str = "study"):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True, smoothing=0.1
    )


# ----------------------------------------------------------------------------- staging
@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One batch at a time writes into ``out`` (an OS lock, released when the process ends)."""
    lock_path = out / ".batch.lock"
    try:
        fh = open(lock_path, "a+")  # noqa: SIM115 - held for the whole batch
    except OSError as exc:
        raise BatchError(f"The output folder {out} cannot be written: {exc.strerror or exc}.") from None
    try:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchError(f"Another batch is writing into {out}; wait for it or choose another --out.") from None
        except (ImportError, OSError):  # no advisory locks here (another OS, some network file systems)
            pass
        yield
    finally:
        fh.close()


def _remove_stale_staging(out: Path) -> None:
    staging = out / K.STAGING
    if not staging.is_dir():
        return
    now = time.time()
    for entry in staging.iterdir():
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(entry, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging.rmdir()  # only when empty


def _remove_staging(out: Path, run_id: str) -> None:
    staging = out / K.STAGING
    if not staging.is_dir():
        return
    for entry in staging.iterdir():
        if f".{run_id}" in entry.name:
            shutil.rmtree(entry, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging.rmdir()


# --------------------------------------------------------------------------- executors
def _run_sequential(todo, *, should_stop, **_ignored) -> Iterator[tuple[int, dict[str, Any]]]:
    for k, task in todo:
        if should_stop is not None and should_stop():
            return
        yield k, run_study(task)


def _run_dask(todo, *, workers: int, client, should_stop, say, **_ignored) -> Iterator[tuple[int, dict[str, Any]]]:
    """On ``client`` (an external cluster), else on a local cluster of ``workers`` processes."""
    from distributed import as_completed

    scope = contextlib.nullcontext(client) if client is not None else _local_client(workers, len(todo), say)
    with scope as client:
        futures = {}
        for k, task in todo:
            fut = client.submit(run_study, task, key=f"lungct-study-{task.spec.id}-{task.run_id}", pure=False)
            futures[fut] = (k, task)
        pending = set(futures)
        try:
            for fut in as_completed(list(futures)):
                pending.discard(fut)
                k, task = futures[fut]
                yield k, _collect(fut, task)
                if should_stop is not None and should_stop():
                    break
        finally:
            if pending:
                client.cancel(list(pending), force=True)


def _collect(fut, task: StudyTask) -> dict[str, Any]:
    """The row a finished future holds; a worker that died or could not run the task gives
    a failed row."""
    from distributed import KilledWorker

    from .worker import base_row

    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - the study fails, the batch goes on
        row = base_row(task.spec, task.options.include_identifiers)
        row["model_version"] = task.model_version
        name = type(exc).__name__
        if isinstance(exc, KilledWorker):
            row["message"] = (
                "The worker reading this study stopped unexpectedly (several times), for example for lack of memory."
            )
        elif isinstance(exc, ModuleNotFoundError):
            row["message"] = "The worker could not run the reading: LungCT Viewer is not installed on it."
        else:
            row["message"] = f"The worker could not read this study ({name})."
        return row


@contextlib.contextmanager
def _remote_client(scheduler: str, say) -> Iterator[Any]:
    """A client of the external cluster at ``scheduler`` whose workers run this version."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout="15s")
    except (OSError, TimeoutError) as exc:
        raise BatchError(
            f"The Dask scheduler at {scheduler} could not be reached ({type(exc).__name__}); "
            "check the address and that 'dask scheduler' is running there."
        ) from None
    try:
        _check_workers(client, scheduler)
        n = len(client.scheduler_info().get("workers", {}))
        say(f"Connected to the Dask cluster at {scheduler} ({n} worker(s) now)")
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def _local_client(workers: int, n_tasks: int, say) -> Iterator[Any]:
    """A client of a new local cluster (closed, with its worker processes, on exit)."""
    from distributed import Client, LocalCluster

    n = max(1, min(workers, n_tasks))
    threads = max(1, (os.cpu_count() or 1) // n)
    env = {
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": str(threads),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    say(f"Starting {n} local worker process(es), {threads} thread(s) each")
    with _quiet_dask():
        # dashboard on a free port: never the 8787 another cluster on this machine may use
        with _workers_ignore_ctrl_c():
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
                env=env,
            )
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Worker processes started inside inherit an ignored SIGINT: Ctrl-C in the terminal then
    reaches this process only, which cancels the studies and shuts the workers down (instead
    of every worker dying with a traceback). Only the main thread can change it."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's start and stop messages only when LUNGCT_LOG asks for INFO or more."""
    logger = logging.getLogger("distributed")
    old = logger.level
    if logging.getLogger("lungct_viewer").getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _worker_version() -> str:
    from lungct_viewer import __version__ as v

    return v


def _check_workers(client, scheduler: str) -> None:
    """Every worker now connected runs the same LungCT Viewer version."""
    try:
        versions = client.run(_worker_version)
    except Exception as exc:  # noqa: BLE001 - whatever stops the workers from importing it
        raise BatchError(
            f"The workers of the Dask cluster at {scheduler} cannot run LungCT Viewer "
            f"({type(exc).__name__}); install it on every worker."
        ) from None
    if not versions:
        raise BatchError(
            f"The Dask cluster at {scheduler} has no workers; start some with 'dask worker {scheduler} --nthreads 1'."
        )
    other = sorted({v for v in versions.values() if v != __version__})
    if other:
        raise BatchError(
            f"Some workers of the Dask cluster run LungCT Viewer {', '.join(other)}, this machine "
            f"{__version__}; install the same version everywhere."
        )
