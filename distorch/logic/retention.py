"""What the pack keeps loaded beyond ComfyUI's own node cache, and the budget that bounds it. Pure.

ComfyUI keeps a node's outputs only in its node cache, which "Free model and node cache" resets
and which drops whatever the next workflow does not use. A model loaded with ``keep_loaded = on``
must survive both, and the next prompt that asks for it must get it without reading the file
again: ``RetainedModels`` holds such outputs, keyed by what was loaded (the loader and its inputs,
the file's size and modification time; the caller builds the key).

Two rules keep this bounded over a long session:
- a loader node owns what it retained; when the same node runs again with other inputs, the copy
  held for its old inputs is released (no node can reach it any more);
- everything the pack retains (these outputs and the modes cache) fits one ``RetentionBudget``:
  at most ``max_models`` entries and ``max_bytes`` bytes, least recently used first out
  (``over_budget`` picks the victims).

One model of a held load can be let go on its own (the memory panel's per-model unload): the entry
then holds the rest and is *incomplete*. It is no longer handed to a loader (which must return
every output), so the next run of that loader takes it out (``pop_incomplete``) and reads the file.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

DEFAULT_MAX_MODELS = 6
DEFAULT_RAM_PERCENT = 50.0
MAX_MODELS_ENV = "DISTORCH_RETAIN_MAX_MODELS"
RAM_PERCENT_ENV = "DISTORCH_RETAIN_RAM_PERCENT"


class BudgetError(ValueError):
    """A retention budget value that is not allowed (the message names the setting)."""


@dataclass(frozen=True)
class RetentionBudget:
    """At most ``max_models`` retained entries (a loader's outputs or a cached mode count as one)
    holding at most ``ram_percent`` % of the machine's RAM together."""

    max_models: int = DEFAULT_MAX_MODELS
    ram_percent: float = DEFAULT_RAM_PERCENT
    source: str = "default"  # "default", "environment" or "settings"

    def __post_init__(self):
        if isinstance(self.max_models, bool) or not isinstance(self.max_models, int) or not 0 <= self.max_models <= 1000:
            raise BudgetError(f"max_models must be a whole number from 0 to 1000 (0 = retain nothing), "
                              f"got {self.max_models!r}")
        if (isinstance(self.ram_percent, bool) or not isinstance(self.ram_percent, (int, float))
                or not 0 <= self.ram_percent <= 100):
            raise BudgetError(f"ram_percent must be a number from 0 to 100 (share of system RAM), "
                              f"got {self.ram_percent!r}")

    def max_bytes(self, ram_total: int) -> int:
        return int(ram_total * self.ram_percent / 100.0)

    def as_dict(self, ram_total: int) -> dict:
        return {"max_models": self.max_models, "ram_percent": self.ram_percent,
                "max_bytes": self.max_bytes(ram_total), "source": self.source}


def budget_from_environment(environ=os.environ) -> RetentionBudget:
    """The budget the environment sets (``DISTORCH_RETAIN_MAX_MODELS``, ``DISTORCH_RETAIN_RAM_PERCENT``),
    defaults for what it leaves unset. Raises BudgetError naming the variable on a bad value."""
    raw_models = environ.get(MAX_MODELS_ENV, "").strip()
    raw_percent = environ.get(RAM_PERCENT_ENV, "").strip()
    if not raw_models and not raw_percent:
        return RetentionBudget()
    try:
        models = int(raw_models) if raw_models else DEFAULT_MAX_MODELS
    except ValueError:
        raise BudgetError(f"{MAX_MODELS_ENV}={raw_models!r} is not a whole number: set 0 to 1000") from None
    try:
        percent = float(raw_percent) if raw_percent else DEFAULT_RAM_PERCENT
    except ValueError:
        raise BudgetError(f"{RAM_PERCENT_ENV}={raw_percent!r} is not a number: set 0 to 100") from None
    try:
        return RetentionBudget(models, percent, "environment")
    except BudgetError as exc:
        name = MAX_MODELS_ENV if str(exc).startswith("max_models") else RAM_PERCENT_ENV
        raise BudgetError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Retained:
    """One retained thing as the budget sees it."""

    key: Hashable
    label: str
    size_bytes: int
    last_used: float  # time.time() of its last use: every holder uses the same clock


def over_budget(items: Sequence[Retained], max_models: int, max_bytes: int,
                protect: Hashable | None = None) -> list[Retained]:
    """The items to drop, least recently used first, until at most ``max_models`` remain and they
    hold at most ``max_bytes``. ``protect`` (the item just stored or used) goes last, and only
    for the count: one item larger than the byte bound on its own is kept, since it is in use."""
    order = sorted(items, key=lambda item: (item.key == protect, item.last_used))
    count, total = len(order), sum(item.size_bytes for item in order)
    victims = []
    for item in order:
        too_many = count > max_models
        too_big = total > max_bytes and not (item.key == protect and count == 1)
        if not (too_many or too_big):
            break
        victims.append(item)
        count -= 1
        total -= item.size_bytes
    return victims


@dataclass
class _Entry:
    outputs: tuple
    label: str
    size_bytes: int
    owners: set = field(default_factory=set)
    retained_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    incomplete: bool = False  # an output was let go on its own (None in its place)


class RetainedModels:
    """Loader outputs held for ``keep_loaded``, with the loader nodes that own each one."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._owned: dict[Hashable, Hashable] = {}  # owner (a loader node) -> the key it holds
        self._clock = clock

    def get(self, key: Hashable) -> tuple | None:
        """The held outputs (now the most recently used), or None (also for an incomplete entry:
        a loader must return every output)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.incomplete:
                return None
            entry.last_used = self._clock()
            return entry.outputs

    def put(self, key: Hashable, outputs: tuple, label: str = "", size_bytes: int = 0) -> None:
        with self._lock:
            old = self._entries.get(key)
            owners = old.owners if old is not None else set()
            self._entries[key] = _Entry(outputs, label, int(size_bytes), owners, last_used=self._clock())

    def claim(self, owner: Hashable, key: Hashable | None) -> list[tuple[Hashable, tuple]]:
        """``owner`` (a loader node) now holds ``key`` (None: nothing). The entry it held before
        is released when no other owner holds it; returns the released (key, outputs)."""
        with self._lock:
            previous = self._owned.pop(owner, None)
            if key is not None:
                self._owned[owner] = key
                if key in self._entries:
                    self._entries[key].owners.add(owner)
            if previous is None or previous == key:
                return []
            entry = self._entries.get(previous)
            if entry is None:
                return []
            entry.owners.discard(owner)
            if entry.owners:
                return []
            del self._entries[previous]
            return [(previous, entry.outputs)]

    def pop(self, key: Hashable) -> tuple | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return None
            for owner in entry.owners:
                self._owned.pop(owner, None)
            return entry.outputs

    def pop_incomplete(self, key: Hashable) -> tuple | None:
        """Take out the entry ``key`` if it is incomplete; returns what it still held, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry.incomplete:
                return None
            del self._entries[key]
            for owner in entry.owners:
                self._owned.pop(owner, None)
            return entry.outputs

    def without(self, unwanted: Callable[[object], bool],
                size_of: Callable[[object], int]) -> list[tuple[Hashable, object]]:
        """Let go of every held output for which ``unwanted(output)`` holds, in whichever entries
        hold it: an entry left with nothing is removed, one with other outputs becomes incomplete
        (its size less ``size_of(output)``). Returns the (key, output) pairs let go."""
        dropped = []
        with self._lock:
            for key, entry in list(self._entries.items()):
                gone = [o for o in entry.outputs if o is not None and unwanted(o)]
                if not gone:
                    continue
                dropped += [(key, output) for output in gone]
                outputs = tuple(None if o is not None and unwanted(o) else o for o in entry.outputs)
                if all(o is None for o in outputs):
                    del self._entries[key]
                    for owner in entry.owners:
                        self._owned.pop(owner, None)
                    continue
                entry.outputs = outputs
                entry.incomplete = True
                entry.size_bytes = max(0, entry.size_bytes - sum(size_of(o) for o in gone))
        return dropped

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._owned.clear()
            return count

    def items(self) -> list[Retained]:
        with self._lock:
            return [Retained(key, e.label, e.size_bytes, e.last_used) for key, e in self._entries.items()]

    def all_outputs(self) -> list[tuple]:
        with self._lock:
            return [entry.outputs for entry in self._entries.values()]

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
