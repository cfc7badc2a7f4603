"""Every change the pack makes to the host, recorded with its undo, undone in reverse by ``uninstall``.

Patches are known by identity, never by a marker attribute: ``functools.wraps`` copies a wrapped
function's ``__dict__``, so a marker on our wrapper also appears on any wrapper another pack puts
around it later, and a marker test would take theirs for ours.

- ``wrap(owner, name, behaviour)``: ``owner.name`` becomes a wrapper calling
  ``behaviour(original, *args, **kwargs)``. On uninstall, if ``owner.name`` is still our wrapper
  the original object is put back (an instance attribute that was not there is deleted again, so
  the class's method shows through). If another pack wrapped ours since, its wrapper stays where it
  is and ours turns into a pass-through to the original: theirs still runs, ours no longer does.
- ``add(label, undo)``: any other change (a handler added to a list, a middleware, a signal
  handler, a module constant) with the callable that takes it back.

Pure: no torch, no ComfyUI.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("distorch.patches")

_MISSING = object()


class PatchError(RuntimeError):
    """A patch that cannot be applied (and nothing was changed)."""


@dataclass(eq=False)
class AttributePatch:
    owner: object
    name: str
    original: object
    installed: Callable
    label: str
    was_own_attribute: bool      # owner.__dict__ held the name before (else it came from a class)
    context: object = None       # what the behaviour works with (e.g. the MemoryControl), for lookups
    active: bool = True          # False once uninstalled: the wrapper, wherever it is, passes through

    def describe(self) -> str:
        owner = getattr(self.owner, "__name__", type(self.owner).__name__)
        return f"{owner}.{self.name}"


@dataclass(eq=False)
class Change:
    label: str
    undo: Callable[[], object]


@dataclass
class UninstallReport:
    restored: list[str] = field(default_factory=list)      # put back as the original object
    bypassed: list[str] = field(default_factory=list)      # wrapped again by someone else: ours passes through
    undone: list[str] = field(default_factory=list)        # other changes taken back
    failed: dict[str, str] = field(default_factory=dict)   # label -> why


class PatchRegistry:
    """The record of what the pack changed in the host, in the order it changed it."""

    def __init__(self):
        self._entries: list[AttributePatch | Change] = []
        self._lock = threading.Lock()

    # --- adding ---------------------------------------------------------------------------------
    def wrap(self, owner, name: str, behaviour: Callable, label: str | None = None,
             context: object = None) -> AttributePatch:
        """Wrap ``owner.name`` with ``behaviour(original, *args, **kwargs)``. Raises PatchError if
        the attribute is missing or not callable, or already wrapped by this registry."""
        original = getattr(owner, name, _MISSING)
        if original is _MISSING or not callable(original):
            raise PatchError(f"{getattr(owner, '__name__', type(owner).__name__)}.{name} is not a function here")
        if self.patch_for(owner, name) is not None:
            raise PatchError(f"{name} is already patched by comfyui-distorch")
        patch = AttributePatch(owner, name, original, None, label or name,
                               was_own_attribute=name in getattr(owner, "__dict__", {}), context=context)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if patch.active:
                return behaviour(original, *args, **kwargs)
            return original(*args, **kwargs)

        patch.installed = wrapper
        setattr(owner, name, wrapper)
        with self._lock:
            self._entries.append(patch)
        return patch

    def add(self, label: str, undo: Callable[[], object]) -> Change:
        """Record a change made by the caller, with the callable that takes it back."""
        change = Change(label, undo)
        with self._lock:
            self._entries.append(change)
        return change

    # --- reading --------------------------------------------------------------------------------
    def patch_for(self, owner, name: str) -> AttributePatch | None:
        """Our active patch of ``owner.name`` (by identity of the owner), or None."""
        with self._lock:
            for entry in self._entries:
                if isinstance(entry, AttributePatch) and entry.owner is owner and entry.name == name and entry.active:
                    return entry
        return None

    def is_ours(self, function) -> bool:
        """Whether ``function`` is a wrapper this registry installed (identity, not a marker)."""
        with self._lock:
            return any(isinstance(e, AttributePatch) and e.installed is function and e.active for e in self._entries)

    def labels(self) -> list[str]:
        with self._lock:
            return [entry.label for entry in self._entries]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # --- undoing --------------------------------------------------------------------------------
    def uninstall(self) -> UninstallReport:
        """Undo every change, newest first. A failing undo is reported and the others still run."""
        report = UninstallReport()
        with self._lock:
            entries, self._entries = self._entries[::-1], []
        for entry in entries:
            try:
                if isinstance(entry, AttributePatch):
                    self._unpatch(entry, report)
                else:
                    entry.undo()
                    report.undone.append(entry.label)
            except Exception as exc:  # one undo failing must not leave the rest in place
                report.failed[entry.label] = f"{type(exc).__name__}: {exc}"
                log.warning("comfyui-distorch: could not undo %s: %s", entry.label, exc)
        return report

    @staticmethod
    def _unpatch(patch: AttributePatch, report: UninstallReport) -> None:
        patch.active = False
        current = getattr(patch.owner, patch.name, _MISSING)
        if current is patch.installed:
            if patch.was_own_attribute:
                setattr(patch.owner, patch.name, patch.original)
            else:
                delattr(patch.owner, patch.name)
            report.restored.append(patch.describe())
        else:
            # Another pack wrapped ours after us: removing ours would remove theirs. Ours now passes
            # straight to the original, theirs keeps running.
            report.bypassed.append(patch.describe())
            log.info("comfyui-distorch: %s was wrapped again by another extension; its wrapper stays and "
                     "ours now passes through to the original", patch.describe())
