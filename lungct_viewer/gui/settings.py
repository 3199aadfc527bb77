"""What the viewer remembers between sessions (QSettings): window geometry, window preset,
heatmap opacity, recent folders, automatic analysis, and the last export folder."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from lungct_viewer.core.constants import WINDOW_PRESETS

MAX_RECENT = 8


def _bool(v, default: bool) -> bool:
    if v is None:
        return default
    if isinstance(v, str):
        return v.lower() in ("true", "1", "yes")
    return bool(v)


class ViewerSettings:
    """Typed access to the viewer's :class:`QtCore.QSettings` (injectable for tests)."""

    def __init__(self, qsettings: QtCore.QSettings | None = None) -> None:
        self.q = qsettings or QtCore.QSettings("LungCT", "LungCT Viewer")

    # -- window --------------------------------------------------------------------------
    @property
    def geometry(self) -> QtCore.QByteArray | None:
        v = self.q.value("window/geometry")
        return v if isinstance(v, QtCore.QByteArray) and not v.isEmpty() else None

    @geometry.setter
    def geometry(self, value: QtCore.QByteArray) -> None:
        self.q.setValue("window/geometry", value)

    # -- display -------------------------------------------------------------------------
    @property
    def preset(self) -> str | None:
        v = self.q.value("display/preset")
        return str(v) if v else None

    @preset.setter
    def preset(self, name: str | None) -> None:
        self.q.setValue("display/preset", name or "")

    @property
    def heat_opacity(self) -> int | None:
        """Heatmap opacity in percent."""
        try:
            v = int(self.q.value("display/heat_opacity"))
        except (TypeError, ValueError):
            return None
        return min(max(v, 0), 100)

    @heat_opacity.setter
    def heat_opacity(self, percent: int) -> None:
        self.q.setValue("display/heat_opacity", int(percent))

    # -- studies -------------------------------------------------------------------------
    def recent_folders(self) -> list[str]:
        v = self.q.value("recent/folders", [])
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in (v or []) if x]

    def remember_folder(self, path: str) -> list[str]:
        rec = [p for p in self.recent_folders() if p != path]
        rec.insert(0, path)
        self.q.setValue("recent/folders", rec[:MAX_RECENT])
        return rec[:MAX_RECENT]

    @property
    def auto_analyze(self) -> bool:
        return _bool(self.q.value("analysis/auto"), True)

    @auto_analyze.setter
    def auto_analyze(self, on: bool) -> None:
        self.q.setValue("analysis/auto", bool(on))

    @property
    def export_dir(self) -> str:
        return str(self.q.value("export/last_dir", "") or "")

    @export_dir.setter
    def export_dir(self, path: str) -> None:
        self.q.setValue("export/last_dir", str(path))

    def sync(self) -> None:
        self.q.sync()


def restore_window(settings: ViewerSettings, window: QtWidgets.QMainWindow, display) -> None:
    """Window geometry, window preset and heatmap opacity as they were (``display`` is the
    :class:`~.display_panel.DisplayPanel`)."""
    if settings.geometry is not None:
        window.restoreGeometry(settings.geometry)
    else:
        window.resize(1400, 900)
    if settings.preset in WINDOW_PRESETS:
        display.apply_preset(settings.preset)
    if settings.heat_opacity is not None:
        display.opacity_slider.setValue(settings.heat_opacity)


def save_window(settings: ViewerSettings, window: QtWidgets.QMainWindow, display) -> None:
    settings.geometry = window.saveGeometry()
    settings.preset = display.preset_name()
    settings.heat_opacity = display.opacity_slider.value()
    settings.sync()
