"""Priorities and mode affinity on ComfyUI's own prompt queue, and its statistics.

Nothing of the host's queue is replaced:
- a priority becomes the queue ``number`` the host sorts its heap by, set by a server
  ``on_prompt`` handler (the host's extension point for rewriting a prompt request before it
  numbers it); normal prompts keep the host's own number, ``front`` included;
- mode affinity wraps ``get`` on the one queue object (an instance attribute, removable): just
  before the host pops its head, the scheduler may give a later prompt of the same rank the head's
  number (and shift the ones it passes back by one), so ``GET /queue`` and the frontend show the
  order that really runs;
- ``task_done`` is wrapped on the same object to count finished and failed prompts, and ``put``,
  ``delete_queue_item`` and ``wipe_queue`` to tell the websocket listeners.
The decisions are ``distorch/logic/scheduler.py`` (pure). Which modes are loaded, and the affinity
bound, are asked of callables given at install: the engine does not import the modes package.
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ..logic.patch_registry import PatchRegistry
from ..logic.scheduler import (NORMAL, RANKS, Pending, PriorityError, next_to_run, parse_priority, queue_number,
                        rank_of_number, replay)

log = logging.getLogger("distorch.queue")

MODE_SWITCH_NODE = "DisTorchModeSwitch"
AFFINITY_ENV = "DISTORCH_MODE_AFFINITY"
DEFAULT_MAX_PASSES = 2
MAX_MAX_PASSES = 100
NOTIFYING = ("put", "delete_queue_item", "wipe_queue")  # queue methods after which listeners are told


def prompt_mode(prompt) -> str | None:
    """The one mode a prompt's mode-switch nodes name (a literal, not a link), else None."""
    modes = set()
    if isinstance(prompt, dict):
        for node in prompt.values():
            if isinstance(node, dict) and node.get("class_type") == MODE_SWITCH_NODE:
                mode = (node.get("inputs") or {}).get("mode")
                modes.add(mode if isinstance(mode, str) else None)
    return modes.pop() if len(modes) == 1 else None


def request_priority(json_data: dict) -> tuple[object, str]:
    """(the priority a ``POST /prompt`` body asks for, where it was given)."""
    if "priority" in json_data:
        return json_data["priority"], "priority"
    extra = json_data.get("extra_data")
    if isinstance(extra, dict) and "priority" in extra:
        return extra["priority"], "extra_data.priority"
    return None, "priority"


def affinity_from_environment(environ) -> int | None:
    """``DISTORCH_MODE_AFFINITY`` as a bound, None when unset. Raises ValueError naming it."""
    raw = str(environ.get(AFFINITY_ENV, "")).strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_MAX_PASSES:
        raise ValueError(f"{AFFINITY_ENV}={raw!r} is not allowed: use a whole number from 0 (affinity off) to "
                         f"{MAX_MAX_PASSES} (how many times a prompt may be passed)")
    return value


@dataclass
class QueueStats:
    completed: int = 0
    failed: int = 0
    mode_switches: int = 0          # prompts that ran a mode other than the previous mode-bearing prompt's
    run_early: int = 0              # prompts affinity ran before a prompt queued ahead of them
    last_mode: str | None = None
    running: dict = field(default_factory=dict)   # queue task index -> {prompt_id, mode, priority}


class QueueControl:
    """Owns the queue wrappers and what they count; one per server, built at registration."""

    def __init__(self, loaded_modes: Callable[[], Collection[str]] = frozenset, max_passes: int | None = None,
                 on_change: Callable[[], None] | None = None):
        self.loaded_modes = loaded_modes
        # the affinity bound, and who set it: "default", "settings" (the dialog) or "environment" (wins)
        self.affinity_source = "default" if max_passes is None else "environment"
        self._max_passes = DEFAULT_MAX_PASSES if max_passes is None else max_passes
        self.on_change = on_change
        self.stats = QueueStats()
        self.passed: dict[str, int] = {}    # prompt id -> times passed so far
        self._lock = threading.Lock()
        self._queue = None

    def max_passes(self) -> int:
        return self._max_passes

    def set_max_passes(self, value: int, source: str = "settings") -> None:
        if self.affinity_source == "environment" and source != "environment":
            raise PermissionError(f"mode affinity is set by {AFFINITY_ENV} in ComfyUI's environment, which wins "
                                  "over the settings dialog: change or unset it and restart ComfyUI")
        self._max_passes, self.affinity_source = int(value), source
        log.info("queue: mode affinity %s", f"on, a prompt is passed at most {value} times" if value else "off")
        self._changed()

    # --- POST /prompt ---------------------------------------------------------------------------
    def number_prompt(self, server, json_data: dict) -> dict:
        """``on_prompt`` handler: give a prompt with a priority other than normal its queue
        number. A bad priority was refused before (``check_priority``); here it is left alone."""
        if not isinstance(json_data, dict) or "number" in json_data:
            return json_data  # an explicit number is the client's choice
        value, where = request_priority(json_data)
        try:
            rank = parse_priority(value, where)
        except PriorityError as exc:
            log.warning("queue: %s; queued as normal", exc)
            return json_data
        if rank == NORMAL:
            return json_data
        counter = int(server.number)
        server.number += 1  # the host counts only the prompts it numbers itself
        front = bool(json_data.get("front"))
        json_data["number"] = queue_number(rank, -counter if front else counter)
        return json_data

    # --- the queue object -----------------------------------------------------------------------
    def install(self, queue, registry: PatchRegistry) -> str | None:
        """Wrap ``get``, ``task_done`` and the methods that change the queue, on this queue object
        (instance attributes: the class and other queues are untouched), each recorded in
        ``registry``. Returns why not, or None."""
        for name in ("get", "task_done", "mutex", "not_empty", "queue"):
            if not hasattr(queue, name):
                return f"the prompt queue has no {name}"
        if registry.patch_for(queue, "get") is not None:
            return None

        def get(original, timeout=None):
            with queue.not_empty:
                if not queue.queue:
                    if getattr(queue, "flags", None) and timeout is not None:
                        # flags are waiting (POST /free): hand the worker back to its flag check now
                        return None
                    # wait here, so the choice is made once a prompt is there
                    queue.not_empty.wait(timeout=timeout)
                    if not queue.queue and timeout is not None:
                        # woken by set_flag (POST /free) or timed out with nothing queued: return as the
                        # host's get does, so its worker reaches its flag check (or its gc) now. Passing
                        # the wake-up on to the host's get would leave the worker asleep for up to 1000 s.
                        return None
                try:
                    self.reorder(queue)
                except Exception as exc:  # never break the host's worker loop
                    log.warning("comfyui-distorch: queue affinity skipped: %s", exc)
                popped = original(timeout)
            if popped is not None:
                self._started(*popped)
            return popped

        def changes_the_queue(original, *args, **kwargs):
            try:
                return original(*args, **kwargs)
            finally:
                self._changed()

        def task_done(original, item_id, history_result, status, *args, **kwargs):
            try:
                return original(item_id, history_result, status, *args, **kwargs)
            finally:
                self._finished(item_id, status)

        behaviours = {"get": get, "task_done": task_done,
                      **{name: changes_the_queue for name in NOTIFYING if hasattr(queue, name)}}
        for name, behaviour in behaviours.items():
            registry.wrap(queue, name, behaviour, label=f"PromptQueue.{name}", context=self)
        self._queue = queue
        return None

    def pending(self, queue=None) -> list[tuple[tuple, Pending]]:
        """The queued prompts in the order they will be taken (host items and scheduler view)."""
        queue = queue or self._queue
        if queue is None:
            return []
        with queue.mutex:
            items = sorted(queue.queue, key=lambda item: (item[0], item[1]))
        return [(item, self._view(item)) for item in items]

    def _view(self, item) -> Pending:
        rank, front = rank_of_number(item[0])
        return Pending(str(item[1]), rank, prompt_mode(item[2]), front, self.passed.get(str(item[1]), 0))

    def reorder(self, queue) -> int:
        """Before the host pops: let affinity choose (called with the queue's lock held)."""
        if len(queue.queue) < 2:
            return 0
        max_passes = self.max_passes()
        if max_passes <= 0:
            return 0
        items = sorted(queue.queue, key=lambda item: (item[0], item[1]))
        views = [self._view(item) for item in items]
        index = next_to_run(views, set(self.loaded_modes()), max_passes)
        if index == 0:
            return 0
        numbers = [item[0] for item in items[:index + 1]]
        moved = [(numbers[0], *items[index][1:])]
        moved += [(numbers[k + 1], *items[k][1:]) for k in range(index)]
        queue.queue[:] = moved + items[index + 1:]
        heapq.heapify(queue.queue)
        with self._lock:
            for view in views[:index]:
                self.passed[view.key] = self.passed.get(view.key, 0) + 1
            self.stats.run_early += 1
        chosen = views[index]
        log.info("queue: prompt %s (mode '%s', loaded) runs before %d prompt(s) queued ahead of it that need "
                 "another mode (mode affinity; each passed at most %d times)", chosen.key, chosen.mode, index,
                 max_passes)
        return index

    def _started(self, item, task_index) -> None:
        view = self._view(item)
        with self._lock:
            self.passed.pop(view.key, None)
            if view.mode is not None:
                if self.stats.last_mode is not None and view.mode != self.stats.last_mode:
                    self.stats.mode_switches += 1
                self.stats.last_mode = view.mode
            self.stats.running[task_index] = {"prompt_id": view.key, "mode": view.mode,
                                              "priority": RANKS[view.rank], "started": time.time()}
        self._changed()

    def _finished(self, task_index, status) -> None:
        with self._lock:
            self.stats.running.pop(task_index, None)
            if getattr(status, "status_str", "success") == "error":
                self.stats.failed += 1
            else:
                self.stats.completed += 1
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception as exc:
                log.debug("queue change event failed: %s", exc)

    # --- report ---------------------------------------------------------------------------------
    def report(self) -> dict:
        """The document of ``GET /distorch/queue`` (schemas/distorch_queue.schema.json)."""
        pending = self.pending()
        per_rank = {rank: 0 for rank in RANKS}
        for _, view in pending:
            per_rank[RANKS[view.rank]] += 1
        with self._lock:
            running = sorted(self.stats.running.values(), key=lambda r: r["started"])
            stats = self.stats
            return {
                "pending": per_rank,
                "pending_total": len(pending),
                "queue": [{"prompt_id": view.key, "priority": RANKS[view.rank], "mode": view.mode,
                           "front": view.front, "passed": view.passed, "number": item[0]}
                          for item, view in pending],
                "running": [{k: v for k, v in r.items() if k != "started"} for r in running],
                "completed": stats.completed, "failed": stats.failed,
                "loaded_modes": sorted(self.loaded_modes()),
                "last_mode": stats.last_mode,
                "mode_switches": stats.mode_switches,
                "affinity": {"max_passes": self._max_passes, "source": self.affinity_source,
                             "run_early": stats.run_early},
            }

    def prompts_before(self, prompt_id: str) -> int | None:
        """How many prompts run before ``prompt_id`` if nothing more is queued: the running ones,
        then the queued ones as the scheduler would take them (priorities, and affinity with a
        modes cache of one mode); 0 once it runs, None when it is neither queued nor running."""
        with self._lock:
            running = [run["prompt_id"] for run in self.stats.running.values()]
        if prompt_id in running:
            return 0
        order = [view.key for view in replay([view for _, view in self.pending()], set(self.loaded_modes()),
                                                self._max_passes)]
        return len(running) + order.index(prompt_id) if prompt_id in order else None
