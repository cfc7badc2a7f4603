"""Models the pack holds because their loader said ``keep_loaded``.

ComfyUI keeps a node's outputs only in its node cache, which "Free model and node cache" resets
and which drops whatever the next workflow does not use. A model loaded with ``keep_loaded = on``
must survive both, and the next prompt that asks for it must get it without reading the file
again: this registry holds such outputs, keyed by what was loaded (the loader and its inputs, the
file's size and modification time). Pure: the key is built by the caller.
"""
from __future__ import annotations

import threading
from collections.abc import Hashable


class RetainedModels:
    def __init__(self):
        self._lock = threading.Lock()
        self._outputs: dict[Hashable, tuple] = {}

    def get(self, key: Hashable) -> tuple | None:
        with self._lock:
            return self._outputs.get(key)

    def put(self, key: Hashable, outputs: tuple) -> None:
        with self._lock:
            self._outputs[key] = outputs

    def pop(self, key: Hashable) -> tuple | None:
        with self._lock:
            return self._outputs.pop(key, None)

    def clear(self) -> int:
        with self._lock:
            count = len(self._outputs)
            self._outputs.clear()
            return count

    def all_outputs(self) -> list[tuple]:
        with self._lock:
            return list(self._outputs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._outputs)
