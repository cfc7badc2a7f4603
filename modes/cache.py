"""LRU cache of loaded modes, bounded by entry count and by bytes. Pure and thread-safe.

An entry is keyed by the mode's fingerprint (files + settings), so an edited mode never serves
the old models. Evicting only drops the cache's reference: a prompt that is still using the
models keeps them alive until it ends.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

GIB = 1 << 30


@dataclass
class Entry:
    key: str
    mode: str
    value: object
    size_bytes: int
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    hits: int = 0


class ModeCache:
    def __init__(self, max_entries: int, max_bytes: int):
        self._lock = threading.RLock()
        self._entries: OrderedDict[str, Entry] = OrderedDict()   # oldest first
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = self.misses = self.evictions = self.loads = 0

    def configure(self, max_entries: int, max_bytes: int) -> list[Entry]:
        with self._lock:
            self.max_entries, self.max_bytes = max_entries, max_bytes
            return self._shrink()

    def get(self, key: str):
        """The cached value (and it becomes most recently used), or None (a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            entry.hits += 1
            entry.last_used = time.time()
            self.hits += 1
            return entry.value

    def peek(self, key: str):
        """The cached value without counting a hit or changing the order (None if absent)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.value if entry is not None else None

    def mode_of(self, key: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry.mode if entry is not None else None

    def put(self, key: str, mode: str, value, size_bytes: int) -> list[Entry]:
        """Store a freshly loaded mode; returns the entries evicted to make room.

        A value larger than the byte bound on its own is still kept (the newest mode is the one in
        use) and everything else is evicted."""
        with self._lock:
            self.loads += 1
            self._entries.pop(key, None)
            self._entries[key] = Entry(key, mode, value, int(size_bytes))
            return self._shrink()

    def discard(self, keep) -> list[Entry]:
        """Drop every entry for which ``keep(entry)`` is false (a reload removed or changed it)."""
        with self._lock:
            gone = [e for e in self._entries.values() if not keep(e)]
            for entry in gone:
                del self._entries[entry.key]
            self.evictions += len(gone)
            return gone

    def clear(self) -> list[Entry]:
        return self.discard(lambda entry: False)

    def evict(self, key: str) -> list[Entry]:
        """Drop one entry (the pack's retention budget chose it)."""
        return self.discard(lambda entry: entry.key != key)

    def budget_items(self) -> list[tuple[str, str, int, float]]:
        """(key, label, bytes, last used) per entry, for the pack's retention budget."""
        with self._lock:
            return [(e.key, f"mode '{e.mode}'", e.size_bytes, e.last_used) for e in self._entries.values()]

    def _shrink(self) -> list[Entry]:
        evicted = []
        while len(self._entries) > 1 and (len(self._entries) > self.max_entries or self.total_bytes() > self.max_bytes):
            _, entry = self._entries.popitem(last=False)
            evicted.append(entry)
        if len(self._entries) > self.max_entries:  # max_entries < 1 is refused upstream; be safe
            evicted += [self._entries.popitem(last=False)[1] for _ in range(len(self._entries) - self.max_entries)]
        self.evictions += len(evicted)
        return evicted

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.size_bytes for e in self._entries.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def stats(self) -> dict:
        with self._lock:
            return {
                "max_modes": self.max_entries, "max_gb": round(self.max_bytes / GIB, 3),
                "entries": len(self._entries), "bytes": self.total_bytes(),
                "hits": self.hits, "misses": self.misses, "evictions": self.evictions, "disk_loads": self.loads,
                "modes": [{"mode": e.mode, "fingerprint": e.key, "bytes": e.size_bytes, "hits": e.hits,
                           "loaded_at": e.loaded_at, "last_used": e.last_used}
                          for e in reversed(self._entries.values())],   # most recent first
            }
