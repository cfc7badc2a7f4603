"""distorch/host/queue_control.py on ComfyUI's real PromptQueue (in-process): priorities become queue
numbers through the on_prompt handler, affinity reorders just before the worker pops, and every
wrapper comes off again."""
import threading
import time

import pytest

from distorch.logic.patch_registry import PatchRegistry
from distorch.host.queue_control import QueueControl, affinity_from_environment, prompt_mode


class _Server:
    """What PromptQueue and the on_prompt handler use of ComfyUI's PromptServer."""

    def __init__(self):
        self.number = 10

    def queue_updated(self):
        pass


@pytest.fixture
def queue(mm):
    import execution

    return execution.PromptQueue(_Server())


def item(number, prompt_id, mode=None):
    prompt = {"1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}}} if mode else {}
    return (number, prompt_id, prompt, {}, [], {})


def test_a_priority_becomes_the_hosts_queue_number_and_normal_keeps_the_hosts():
    server, control = _Server(), QueueControl()
    assert "number" not in control.number_prompt(server, {"prompt": {}})
    assert "number" not in control.number_prompt(server, {"prompt": {}, "priority": "normal", "front": True})
    urgent = control.number_prompt(server, {"prompt": {}, "priority": "urgent"})["number"]
    high = control.number_prompt(server, {"prompt": {}, "extra_data": {"priority": "high"}})["number"]
    low = control.number_prompt(server, {"prompt": {}, "priority": "low"})["number"]
    high_front = control.number_prompt(server, {"prompt": {}, "priority": "high", "front": True})["number"]
    assert urgent < high_front < high < -14 < 13 < low  # -14: the host's front number, 13: its next
    assert server.number == 14  # each prompt the pack numbered took one of the host's counter
    assert control.number_prompt(server, {"prompt": {}, "priority": "low", "number": 5})["number"] == 5


def test_install_wraps_only_this_queue_and_uninstall_restores_it(mm, queue):
    import execution

    other = execution.PromptQueue(_Server())
    control, registry = QueueControl(), PatchRegistry()
    assert control.install(queue, registry) is None
    assert registry.patch_for(queue, "get").context is control and registry.patch_for(other, "get") is None
    assert execution.PromptQueue.get.__name__ == "get" and "get" not in vars(other)
    assert {"get", "put", "task_done", "delete_queue_item", "wipe_queue"} <= set(vars(queue))
    assert control.install(queue, registry) is None and len(registry) == 5  # not wrapped twice
    registry.uninstall()
    assert not {"get", "put", "task_done", "delete_queue_item", "wipe_queue"} & set(vars(queue))
    assert queue.get.__func__ is execution.PromptQueue.get and registry.patch_for(queue, "get") is None


def test_the_worker_takes_a_prompt_of_the_loaded_mode_first_and_the_queue_shows_it(mm, queue):
    control = QueueControl(loaded_modes=lambda: {"b"}, max_passes=1)
    registry = PatchRegistry()
    control.install(queue, registry)
    for entry in (item(1, "p1", "a"), item(2, "p2", "b"), item(3, "p3", None)):
        queue.put(entry)
    taken, task = queue.get(timeout=1)
    assert taken[1] == "p2" and taken[0] == 1  # it took the head's number
    assert [(n, i) for n, i, *_ in sorted(queue.queue)] == [(2, "p1"), (3, "p3")]
    assert control.report()["queue"][0] == {"prompt_id": "p1", "priority": "normal", "mode": "a", "front": False,
                                             "passed": 1, "number": 2}
    queue.put(item(4, "p4", "b"))
    assert queue.get(timeout=1)[0][1] == "p1"  # passed once already: not again
    queue.task_done(task, {}, None)
    assert control.report()["completed"] == 1 and control.report()["affinity"]["run_early"] == 1
    registry.uninstall()


def test_get_still_waits_for_a_prompt_and_times_out_as_the_hosts_does(mm, queue):
    control = QueueControl(loaded_modes=lambda: {"b"})
    registry = PatchRegistry()
    control.install(queue, registry)
    started = time.monotonic()
    assert queue.get(timeout=0.3) is None
    assert time.monotonic() - started < 0.55  # the timeout once, not twice (the worker times its gc by it)
    threading.Timer(0.1, queue.put, [item(1, "late", "a")]).start()
    assert queue.get(timeout=5)[0][1] == "late"
    registry.uninstall()


def _worker_get(queue, timeout, result):
    """The host's prompt worker: one get with its idle timeout, then (in the caller) the flag check."""
    started = time.monotonic()
    result.append(queue.get(timeout=timeout))
    result.append(time.monotonic() - started)


def start_idle_worker(queue) -> tuple[threading.Thread, list]:
    """The prompt worker in its idle get (1000 s, as main.py waits): the thread and what get gives."""
    result = []
    worker = threading.Thread(target=_worker_get, args=(queue, 1000.0, result), daemon=True)
    worker.start()
    return worker, result


@pytest.mark.parametrize("max_passes", [0, 2], ids=["affinity-off", "affinity-on"])
def test_set_flag_wakes_an_idle_worker_at_once(mm, queue, max_passes):
    """POST /free calls set_flag, which notifies the worker waiting in get. The wrapper must give
    that wake-up back (return None as the host's get does), not swallow it and wait on."""
    control = QueueControl(loaded_modes=lambda: {"b"}, max_passes=max_passes)
    registry = PatchRegistry()
    control.install(queue, registry)
    worker, result = start_idle_worker(queue)
    time.sleep(0.2)  # the worker is asleep in get
    queue.set_flag("unload_models", True)
    worker.join(timeout=2.0)
    try:
        assert not worker.is_alive(), "the worker still sleeps in get after set_flag (the first press is lost)"
        assert result[0] is None and result[1] < 2.0
        assert queue.get_flags() == {"unload_models": True}
    finally:
        queue.put(item(1, "release", None))  # let a stuck worker go
        registry.uninstall()


def test_flags_set_before_the_worker_waits_are_not_slept_on(mm, queue):
    """A /free that lands while the worker runs its gc pass (between its flag check and its next get)
    is picked up by the next get at once."""
    control = QueueControl()
    registry = PatchRegistry()
    control.install(queue, registry)
    queue.set_flag("unload_models", True)  # nobody waits: the notify reaches no one
    worker, result = start_idle_worker(queue)
    worker.join(timeout=2.0)
    try:
        assert not worker.is_alive(), "the worker sleeps in get with flags waiting"
        assert result[0] is None and result[1] < 0.5
        assert queue.get_flags() == {"unload_models": True}
    finally:
        queue.put(item(1, "release", None))
        registry.uninstall()


def test_a_prompts_mode_is_the_one_mode_its_switch_nodes_name():
    switch = lambda mode: {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}}
    assert prompt_mode({"1": switch("a"), "2": switch("a")}) == "a"
    assert prompt_mode({"1": switch("a"), "2": switch("b")}) is None
    assert prompt_mode({"1": switch(["9", 0])}) is None  # a link: not known before it runs
    assert prompt_mode({"1": {"class_type": "KSampler", "inputs": {}}}) is None


@pytest.mark.parametrize("raw, expected", [("", None), ("0", 0), (" 3 ", 3)])
def test_the_affinity_variable(raw, expected):
    assert affinity_from_environment({"DISTORCH_MODE_AFFINITY": raw}) == expected


@pytest.mark.parametrize("raw", ["-1", "two", "101", "1.5"])
def test_a_bad_affinity_variable_names_itself_and_the_range(raw):
    with pytest.raises(ValueError, match=r"DISTORCH_MODE_AFFINITY=.*whole number from 0 \(affinity off\) to 100"):
        affinity_from_environment({"DISTORCH_MODE_AFFINITY": raw})
