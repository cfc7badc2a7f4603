"""Queue order, pure: prompt priorities and mode affinity.

Priorities rank prompts urgent > high > normal > low; within a rank, first come first served.
They are expressed as the host's own queue ``number`` (its queue is a heap on it), so ComfyUI's
queue, ``GET /queue`` and the frontend show the real order.

Mode affinity: when the next prompt needs a mode that is not loaded and a later prompt of the
same rank uses a loaded one (with the modes cache holding one mode: the mode loaded now), that
later prompt may run first, provided no prompt it passes
has already been passed ``max_passes`` times. It passes only prompts of its rank that name a mode
and were not queued with ``front``; a prompt without a mode, or with ``front``, is never passed
and never jumps. So a prompt is passed at most ``max_passes`` times, and once that many it runs
when it reaches the head of its rank, as without affinity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

RANKS = ("urgent", "high", "normal", "low")
NORMAL = RANKS.index("normal")
# Numbers of ranks other than normal are offset by this much from the host's counter (which a
# long-running server never brings near it), so a rank's prompts sort apart from the others.
RANK_SPAN = 1e12


class PriorityError(ValueError):
    """A priority that is not one of RANKS."""


def parse_priority(value, where: str = "priority") -> int:
    """The rank index of a request's priority; None (absent) is normal."""
    if value is None:
        return NORMAL
    if isinstance(value, str) and value.strip().lower() in RANKS:
        return RANKS.index(value.strip().lower())
    raise PriorityError(f"{where}: {value!r} is not a priority; use one of {', '.join(RANKS)} "
                        "(or leave it out for normal)")


def queue_number(rank: int, counter: int) -> float:
    """The host queue number of the ``counter``-th prompt at ``rank``: every urgent prompt sorts
    before every high one, and so on; within a rank, by arrival. Normal prompts keep the host's
    own number, so a server used without priorities numbers its prompts as ComfyUI does."""
    return float(counter + (rank - NORMAL) * RANK_SPAN)


def rank_of_number(number: float) -> tuple[int, bool]:
    """(rank, queued with front) of a queue number: ``queue_number`` read back. Front prompts
    count down from the rank's base (the host numbers its own -counter: normal, at the head)."""
    rank = max(0, min(len(RANKS) - 1, NORMAL + round(number / RANK_SPAN)))
    return rank, number - (rank - NORMAL) * RANK_SPAN < 0


@dataclass(frozen=True)
class Pending:
    """A queued prompt as the scheduler sees it, in queue order."""
    key: str
    rank: int
    mode: str | None = None   # the one mode its mode-switch nodes name, else None
    front: bool = False       # queued with front: true
    passed: int = 0           # times a later prompt already ran before it

    @property
    def movable(self) -> bool:
        return self.mode is not None and not self.front


def next_to_run(pending: Sequence[Pending], loaded: Collection[str], max_passes: int) -> int:
    """Index in ``pending`` (queue order) of the prompt to run next: 0, or a later prompt of the
    head's rank whose mode is ``loaded`` when the head's is not (see the module doc)."""
    if not pending or max_passes <= 0 or not loaded:
        return 0
    head = pending[0]
    if not head.movable or head.mode in loaded:
        return 0
    for index in range(1, len(pending)):
        candidate = pending[index]
        if candidate.rank != head.rank or not candidate.movable:
            return 0
        if candidate.mode in loaded:
            passed_over = pending[:index]
            return index if all(p.passed < max_passes for p in passed_over) else 0
    return 0


def replay(pending: Sequence[Pending], loaded: Collection[str], max_passes: int) -> list[Pending]:
    """The order ``pending`` runs in if nothing more is queued, each prompt's mode the only one
    loaded once it ran (a modes cache of one mode)."""
    waiting, passed, order, loaded = list(pending), {p.key: p.passed for p in pending}, [], set(loaded)
    while waiting:
        current = [Pending(p.key, p.rank, p.mode, p.front, passed[p.key]) for p in waiting]
        index = next_to_run(current, loaded, max_passes)
        for skipped in current[:index]:
            passed[skipped.key] += 1
        chosen = waiting.pop(index)
        order.append(chosen)
        if chosen.mode is not None:
            loaded = {chosen.mode}
    return order


def switches(modes: Sequence[str | None], loaded_mode: str | None = None) -> int:
    """How many mode switches running prompts with ``modes`` in this order costs (prompts without
    a mode do not switch)."""
    count = 0
    for mode in modes:
        if mode is not None and mode != loaded_mode:
            count += 1
            loaded_mode = mode
    return count
