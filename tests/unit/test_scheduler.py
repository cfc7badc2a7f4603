"""The queue scheduler (distorch/logic/scheduler.py): priorities as host queue numbers, and mode
affinity with its bound, on small fixtures and random queues."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distorch.logic.scheduler import (NORMAL, RANKS, Pending, PriorityError, next_to_run, parse_priority,
                                queue_number, rank_of_number, replay, switches)


def test_priorities_parse_case_insensitively_and_default_to_normal():
    assert [parse_priority(r) for r in ("urgent", "HIGH", " normal ", "low")] == [0, 1, 2, 3]
    assert parse_priority(None) == NORMAL


@pytest.mark.parametrize("bad", ["asap", "", 1, True, ["high"]])
def test_an_unknown_priority_names_the_allowed_ones(bad):
    with pytest.raises(PriorityError, match="use one of urgent, high, normal, low"):
        parse_priority(bad)


def test_queue_numbers_order_by_rank_then_arrival_and_keep_the_hosts_number_for_normal():
    arrivals = [("low", 1), ("normal", 2), ("urgent", 3), ("high", 4), ("normal", 5), ("urgent", 6), ("low", 7)]
    numbers = {counter: queue_number(RANKS.index(rank), counter) for rank, counter in arrivals}
    assert numbers[2] == 2.0 and numbers[5] == 5.0
    assert sorted(numbers, key=numbers.get) == [3, 6, 4, 2, 5, 1, 7]
    assert [rank_of_number(numbers[c]) for c, _ in enumerate(arrivals, 1)] == [
        (3, False), (2, False), (0, False), (1, False), (2, False), (0, False), (3, False)]
    assert rank_of_number(-12.0) == (NORMAL, True)  # the host's front number
    assert rank_of_number(queue_number(1, -5)) == (1, True)  # a high prompt queued with front


def pend(*items, passed=None):
    passed = passed or {}
    return [Pending(str(i), NORMAL, mode, mode == "front", passed.get(i, 0)) if mode != "front"
            else Pending(str(i), NORMAL, "A", True) for i, mode in enumerate(items)]


def test_a_later_prompt_of_the_loaded_mode_runs_first():
    assert next_to_run(pend("A", "B", "B"), {"B"}, 2) == 1


def test_no_jump_when_the_head_needs_no_switch_or_affinity_is_off():
    assert next_to_run(pend("B", "A"), {"B"}, 2) == 0
    assert next_to_run(pend("A", "B"), {"B"}, 0) == 0
    assert next_to_run(pend("A", "B"), set(), 2) == 0


def test_prompts_without_a_mode_or_with_front_are_never_passed_nor_moved():
    assert next_to_run(pend(None, "B"), {"B"}, 2) == 0
    assert next_to_run(pend("A", None, "B"), {"B"}, 2) == 0
    assert next_to_run(pend("front", "B"), {"B"}, 2) == 0
    assert next_to_run(pend("A", "front", "B"), {"B"}, 2) == 0


def test_a_prompt_passed_max_times_is_not_passed_again():
    assert next_to_run(pend("A", "C", "B", passed={0: 1, 1: 1}), {"B"}, 2) == 2
    assert next_to_run(pend("A", "C", "B", passed={1: 2}), {"B"}, 2) == 0


def test_only_prompts_of_the_heads_rank_jump():
    queue = [Pending("0", 1, "A"), Pending("1", NORMAL, "B")]
    assert next_to_run(queue, {"B"}, 5) == 0


def test_switch_count():
    assert switches(["A", "B", "A", None, "A", "B"]) == 4
    assert switches(["A", "A"], "A") == 0


PROMPT = st.tuples(st.integers(0, 3), st.sampled_from(["A", "B", "C", None]), st.booleans())


@settings(max_examples=300, deadline=None)
@given(arrivals=st.lists(st.lists(PROMPT, max_size=4), min_size=1, max_size=25), max_passes=st.integers(0, 4))
def test_random_queues_respect_rank_the_bound_and_never_starve(arrivals, max_passes):
    """Prompts arrive in batches, one batch before each run; every prompt runs, always one of the
    best rank queued, none is passed more than max_passes times, unmovable ones are never passed,
    and without affinity the order is first come first served within a rank."""
    queue, ran, passed, counter, loaded = [], [], {}, 0, None
    batches = list(arrivals)
    while batches or queue:
        for rank, mode, front in (batches.pop(0) if batches else []):
            counter += 1
            number = queue_number(rank, -counter if front else counter)
            queue.append((number, Pending(str(counter), rank, mode, front)))
        if not queue:
            continue
        queue.sort(key=lambda item: item[0])
        pending = [p for _, p in queue]
        pending = [Pending(p.key, p.rank, p.mode, p.front, passed.get(p.key, 0)) for p in pending]
        index = next_to_run(pending, {loaded} - {None}, max_passes)
        chosen = pending[index]
        assert chosen.rank == min(p.rank for p in pending)
        for skipped in pending[:index]:
            assert skipped.movable and skipped.rank == chosen.rank
            passed[skipped.key] = passed.get(skipped.key, 0) + 1
        if max_passes == 0:
            assert index == 0
        queue.pop(index)
        ran.append(chosen.key)
        loaded = chosen.mode or loaded
    assert sorted(ran, key=int) == [str(i) for i in range(1, counter + 1)]
    assert all(count <= max_passes for count in passed.values()), passed


def run_all(modes, max_passes):
    """(run order as mode + arrival index, the most times any prompt was passed)."""
    order = replay([Pending(str(i), NORMAL, m) for i, m in enumerate(modes)], set(), max_passes)
    ran = [int(p.key) for p in order]
    worst = max((sum(1 for later in ran[:ran.index(i)] if later > i) for i in ran), default=0)
    return [f"{modes[i]}{i}" for i in ran], worst


def test_an_alternating_queue_switches_less_with_affinity_within_the_bound():
    modes = list("ABABABAB")
    assert run_all(modes, 0) == (["A0", "B1", "A2", "B3", "A4", "B5", "A6", "B7"], 0)
    order, worst = run_all(modes, 1)
    assert order == ["A0", "A2", "B1", "B3", "B5", "A4", "A6", "B7"] and worst == 1
    assert switches([o[0] for o in order]) == 4
    order, worst = run_all(modes, 8)
    assert switches([o[0] for o in order]) == 2 and worst == 3
