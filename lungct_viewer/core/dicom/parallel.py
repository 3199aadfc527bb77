"""Running per-file work in a thread pool with progress and cooperative cancellation."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..errors import LoadCancelled

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]

#: Seconds between two polls of the cancel callable while workers run.
POLL_S = 0.1


def check_cancel(cancel: CancelCallback | None, what: str) -> None:
    """Raise :class:`~..errors.LoadCancelled` ("<what> was cancelled.") when asked to stop."""
    if cancel is not None and cancel():
        raise LoadCancelled(f"{what} was cancelled.")


def workers() -> int:
    """Threads for file reading and decoding (I/O and decoders release the GIL)."""
    return max(2, min(8, 2 * (os.cpu_count() or 2)))


def run_parallel(
    func: Callable[[str], Any],
    items: Sequence[str],
    progress: ProgressCallback | None,
    cancel: CancelCallback | None,
    what: str,
) -> list[Any]:
    """``[func(item) ...]`` in a thread pool; exceptions are returned in place of results.

    ``progress(done, total)`` and ``cancel()`` are called from the calling thread; ``cancel``
    is polled at least every :data:`POLL_S` seconds, and on cancel the work not yet started
    is dropped and :class:`~..errors.LoadCancelled` is raised.
    """
    total = len(items)
    results: list[Any] = [None] * total
    if total == 0:
        return results
    check_cancel(cancel, what)
    pool = ThreadPoolExecutor(max_workers=min(workers(), total), thread_name_prefix="dicom")
    try:
        futures: dict[Future, int] = {pool.submit(func, item): i for i, item in enumerate(items)}
        pending = set(futures)
        done_count = 0
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for fut in done:
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - returned to the caller
                    results[i] = exc
                done_count += 1
            if done and progress is not None:
                progress(done_count, total)
            check_cancel(cancel, what)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results
