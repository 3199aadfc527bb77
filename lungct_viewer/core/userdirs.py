"""Where the application keeps its cache and finds the shared real CT data (Qt-free)."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the shared real-data folder.
DATA_DIR_ENV = "LUNGCT_DATA_DIR"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lungct-viewer`` or ``~/.cache/lungct-viewer``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lungct-viewer"


def default_data_dir() -> Path:
    """The shared real CT data: ``$LUNGCT_DATA_DIR``, else ``../shared/data`` beside the repository.

    The folder may not exist (an installed package has no repository beside it); callers
    check and fall back.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    repository = Path(__file__).resolve().parents[2]
    return repository.parent / "shared" / "data"
