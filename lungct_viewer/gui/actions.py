"""Every menu command and keyboard shortcut, in ONE table (:data:`ACTIONS`).

The table builds the menus and the actions (:func:`build_actions`) and fills Help > Keyboard
shortcuts (:func:`shortcut_rows`, :class:`ShortcutsDialog`), so the two cannot disagree.

Scope: single-key shortcuts (digits, letters, arrows, Space, Home/End, PageUp/PageDown) are
:attr:`Scope.VIEW`: they act only while the slice view area has the keyboard focus, so typing
into an input field (the minimum-votes box, a file dialog) never changes the slice or the
window. Shortcuts with a modifier, function keys and Esc work anywhere in the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from PySide6 import QtGui, QtWidgets
from PySide6.QtCore import Qt

from lungct_viewer.core import constants as C


class Scope(Enum):
    WINDOW = "anywhere"
    VIEW = "in the slice view"


@dataclass(frozen=True)
class ActionSpec:
    """One command: where it sits in the menus, its keys, and the window method it calls."""

    key: str  # the action is ``window.actions_by_key[key]``
    menu: str  # menu path, "/"-separated ("File/Export annotated PNGs")
    text: str
    slot: str  # window method, or a dotted path from the window ("viewer.step"); called with
    # ``args`` (and ``checked`` when checkable)
    shortcuts: tuple[str, ...] = ()
    scope: Scope = Scope.WINDOW
    args: tuple = ()
    checkable: bool = False
    tip: str = ""
    separator: bool = False  # a separator before it


@dataclass(frozen=True)
class SubmenuSpec:
    """A submenu the window fills itself (e.g. the recent folders)."""

    key: str
    menu: str
    text: str


_PRESETS = tuple(
    ActionSpec(
        f"preset_{k}",
        "View",
        f"{name} window (W{w:g} / L{lvl:g})",
        "display.apply_preset",
        (str(k),),
        Scope.VIEW,
        args=(name,),
    )
    for k, (name, (w, lvl)) in enumerate(C.WINDOW_PRESETS.items(), start=1)
)

ACTIONS: tuple[ActionSpec | SubmenuSpec, ...] = (
    ActionSpec("open", "File", "&Open folder\u2026", "open_folder_dialog", ("Ctrl+O",)),
    SubmenuSpec("recent", "File", "Open &recent"),
    ActionSpec("demo", "File", "Open &demo study", "open_demo"),
    ActionSpec(
        "open_references",
        "File",
        "Open re&ference annotations\u2026",
        "references.open_dialog",
        ("Ctrl+Shift+O",),
        tip="A reader's outlines on the series on screen: a DICOM SEG, an RT structure set or an LIDC reading file",
    ),
    ActionSpec(
        "export_current",
        "File/&Export",
        "Annotated PNG of the &current slice\u2026",
        "export_slices",
        ("Ctrl+E",),
        args=("current",),
        separator=True,
    ),
    ActionSpec(
        "export_findings",
        "File/&Export",
        "Annotated PNGs of the slices with &findings\u2026",
        "export_slices",
        args=("findings",),
    ),
    ActionSpec("export_all", "File/&Export", "Annotated PNGs of &all slices\u2026", "export_slices", args=("all",)),
    ActionSpec(
        "export_dicom",
        "File/&Export",
        "&DICOM SEG + SR of the findings\u2026",
        "export_slices",
        args=("dicom",),
        tip="A DICOM Segmentation and a TID 1500 measurement report; they carry the patient's identifiers",
    ),
    ActionSpec(
        "identifiers",
        "File/&Export",
        "Include patient &name and ID in exports",
        "set_include_identifiers",
        checkable=True,
        separator=True,
        tip="Off by default: PNGs and report.json carry no patient name, ID or file path unless you ask",
    ),
    ActionSpec("quit", "File", "&Quit", "close", ("Ctrl+Q",), separator=True),
    *_PRESETS,
    ActionSpec("invert", "View", "&Invert grey scale", "display.invert_check.toggle", ("I",), Scope.VIEW),
    ActionSpec("reset_view", "View", "&Reset zoom and pan", "view.reset_view", ("Space",), Scope.VIEW),
    ActionSpec(
        "toggle_roi",
        "View",
        "Toggle the &red overlay",
        "display.toggle",
        ("R",),
        Scope.VIEW,
        args=("roi",),
        separator=True,
    ),
    ActionSpec(
        "toggle_marks",
        "View",
        "Toggle lesion &outlines and labels",
        "display.toggle",
        ("O",),
        Scope.VIEW,
        args=("marks",),
    ),
    ActionSpec(
        "toggle_references",
        "View",
        "Toggle re&ference outlines",
        "display.toggle",
        ("A",),
        Scope.VIEW,
        args=("references",),
    ),
    ActionSpec("toggle_heat", "View", "Toggle the &heatmap", "display.toggle", ("H",), Scope.VIEW, args=("heat",)),
    ActionSpec("next_finding", "View", "&Next finding", "next_finding", ("N",), Scope.VIEW, args=(1,), separator=True),
    ActionSpec("prev_finding", "View", "&Previous finding", "next_finding", ("P",), Scope.VIEW, args=(-1,)),
    ActionSpec(
        "slice_up",
        "View",
        "Previous slice (towards the head)",
        "viewer.step",
        ("Up",),
        Scope.VIEW,
        args=(-1,),
        separator=True,
    ),
    ActionSpec("slice_down", "View", "Next slice (towards the feet)", "viewer.step", ("Down",), Scope.VIEW, args=(1,)),
    ActionSpec("page_up", "View", "Back 10 slices", "viewer.step", ("PgUp",), Scope.VIEW, args=(-10,)),
    ActionSpec("page_down", "View", "Forward 10 slices", "viewer.step", ("PgDown",), Scope.VIEW, args=(10,)),
    ActionSpec("first_slice", "View", "First slice", "viewer.go_to_end", ("Home",), Scope.VIEW, args=(-1,)),
    ActionSpec("last_slice", "View", "Last slice", "viewer.go_to_end", ("End",), Scope.VIEW, args=(1,)),
    ActionSpec("analyze", "Analysis", "&Analyse study", "start_analysis", ("F5",)),
    ActionSpec("cancel", "Analysis", "&Cancel loading, analysis or export", "cancel_work", ("Esc",)),
    ActionSpec(
        "defaults", "Analysis", "Detection controls to the &model defaults", "reading.reset_to_defaults", separator=True
    ),
    ActionSpec(
        "auto", "Analysis", "Analyse &automatically after loading", "set_auto_analyze", checkable=True, separator=True
    ),
    ActionSpec(
        "ruler", "Tools", "Measure a &length (drag a ruler)", "viewer.arm_tool", ("L",), Scope.VIEW, args=("ruler",)
    ),
    ActionSpec(
        "circle",
        "Tools",
        "HU statistics of a &circle (drag from its centre)",
        "viewer.arm_tool",
        ("C",),
        Scope.VIEW,
        args=("circle",),
    ),
    ActionSpec("clear_tools", "Tools", "C&lear measurements", "viewer.tools.clear", ("Del",), Scope.VIEW),
    ActionSpec("shortcuts", "Help", "&Keyboard shortcuts and mouse\u2026", "help.show_shortcuts", ("F1",)),
    ActionSpec("performance", "Help", "Model &performance\u2026", "help.show_performance"),
    ActionSpec("about", "Help", "&About LungCT Viewer and the model\u2026", "help.show_about"),
)

#: Mouse bindings of the slice view (listed with the shortcuts).
MOUSE = (
    ("Wheel", "Next / previous slice"),
    ("Left-drag", "Window (horizontal) and level (vertical)"),
    ("Middle-drag", "Pan"),
    ("Right-drag", "Zoom"),
    ("Left-drag with L or C armed", "Draw a ruler (mm) or a circle (HU statistics); drag its handles to adjust"),
    ("Click a finding in the list", "Go to the lesion's central slice, centred"),
    ("Drop a folder on the window", "Open it"),
)


def build_actions(
    window: QtWidgets.QMainWindow, view_area: QtWidgets.QWidget, specs: Sequence[ActionSpec | SubmenuSpec] = ACTIONS
) -> tuple[dict, dict]:
    """Create the menus and actions of ``specs`` on ``window``; :attr:`Scope.VIEW` shortcuts
    belong to ``view_area``. Returns ``(actions by key, submenus by key)``."""
    menus: dict[str, QtWidgets.QMenu] = {}

    def menu_for(path: str) -> QtWidgets.QMenu:
        if path not in menus:
            parent, _, name = path.rpartition("/")
            menus[path] = (
                menu_for(parent).addMenu(name)
                if parent
                else window.menuBar().addMenu(f"&{name}" if "&" not in name else name)
            )
        return menus[path]

    actions: dict[str, QtGui.QAction] = {}
    submenus: dict[str, QtWidgets.QMenu] = {}
    for spec in specs:
        menu = menu_for(spec.menu)
        if isinstance(spec, SubmenuSpec):
            submenus[spec.key] = menu.addMenu(spec.text)
            continue
        if spec.separator and menu.actions():
            menu.addSeparator()
        act = QtGui.QAction(spec.text, window)
        act.setObjectName(f"action_{spec.key}")
        act.setShortcuts([QtGui.QKeySequence(s) for s in spec.shortcuts])
        act.setCheckable(spec.checkable)
        if spec.tip:
            act.setStatusTip(spec.tip)
            act.setToolTip(spec.tip)
        slot = window
        for name in spec.slot.split("."):
            slot = getattr(slot, name)
        if spec.checkable:
            act.triggered.connect(lambda checked, slot=slot, a=spec.args: slot(*a, checked))
        else:
            act.triggered.connect(lambda _=False, slot=slot, a=spec.args: slot(*a))
        if spec.scope is Scope.VIEW:
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            view_area.addAction(act)
        else:
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            window.addAction(act)
        menu.addAction(act)
        actions[spec.key] = act
    return actions, submenus


def shortcut_rows(specs: Sequence[ActionSpec | SubmenuSpec] = ACTIONS) -> list[tuple[str, str, str]]:
    """``(keys, what it does, where it works)`` for every action with a shortcut."""
    rows = []
    for spec in specs:
        if isinstance(spec, ActionSpec) and spec.shortcuts:
            keys = ", ".join(
                QtGui.QKeySequence(s).toString(QtGui.QKeySequence.SequenceFormat.NativeText) for s in spec.shortcuts
            )
            what = spec.text.replace("&", "").rstrip("\u2026")
            if "/" in spec.menu:  # "Export annotated PNGs: current slice"
                what = f"{spec.menu.rpartition('/')[2].replace('&', '')}: {what[:1].lower()}{what[1:]}"
            rows.append((keys, what, spec.scope.value))
    return rows


class ShortcutsDialog(QtWidgets.QDialog):
    """Help > Keyboard shortcuts: the keys of :data:`ACTIONS` and the mouse bindings."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts and mouse")
        lay = QtWidgets.QVBoxLayout(self)
        rows = shortcut_rows() + [(m, what, Scope.VIEW.value) for m, what in MOUSE]
        self.table = QtWidgets.QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Key or mouse", "Does", "Works"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                self.table.setItem(r, c, QtWidgets.QTableWidgetItem(v))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(
            QtWidgets.QLabel(
                "Single keys act in the slice view (click the image first), never while you type into a field."
            )
        )
        lay.addWidget(self.table)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)
        self.resize(760, 560)
