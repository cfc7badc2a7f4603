"""The memory document's builder (routes/memory.py MemoryReporter): callers share a recent build or
the one in flight, never one begun before the host's loaded models changed (the websocket tick may
start a walk just before an unload; a GET after the unload must not be answered with that walk)."""
from __future__ import annotations

import asyncio
import threading


def make_reporter(pack_module, gate: threading.Event | None = None):
    memory = pack_module("routes.memory")
    builds, loaded = [], ["unet", "vae"]

    def build():
        builds.append(len(builds) + 1)
        number = builds[-1]
        if gate is not None and number == 1:
            gate.wait(5)
        return {"build": number}

    return memory, memory.MemoryReporter(build, lambda: tuple(loaded)), builds, loaded


def run(reporter, scenario):
    try:
        return asyncio.run(scenario())
    finally:
        reporter.close()


def test_calls_within_the_ttl_share_one_build(pack_module):
    memory, reporter, builds, _ = make_reporter(pack_module)

    async def scenario():
        return await reporter.report(), await reporter.report()

    first, second = run(reporter, scenario)
    assert first == second == {"build": 1} and builds == [1]


def test_a_slow_build_in_flight_is_shared_while_the_models_stay_the_same(pack_module):
    gate = threading.Event()
    memory, reporter, builds, _ = make_reporter(pack_module, gate)

    async def scenario():
        first = asyncio.ensure_future(reporter.report())
        await asyncio.sleep(memory.REPORT_TTL * 3)  # well after that walk began
        second = asyncio.ensure_future(reporter.report())
        await asyncio.sleep(0.05)
        gate.set()
        return await first, await second

    first, second = run(reporter, scenario)
    assert first == second == {"build": 1} and builds == [1]


def test_a_build_begun_before_an_unload_is_not_the_answer_after_it(pack_module):
    gate = threading.Event()
    memory, reporter, builds, loaded = make_reporter(pack_module, gate)

    async def scenario():
        tick = asyncio.ensure_future(reporter.report())  # the websocket tick's walk, held open
        await asyncio.sleep(0.05)
        loaded.clear()  # an OOM unloads everything
        after = asyncio.ensure_future(reporter.report())  # a GET after the unload
        await asyncio.sleep(0.05)
        gate.set()
        return await tick, await after

    tick, after = run(reporter, scenario)
    assert tick == {"build": 1}
    assert after == {"build": 2}, "a GET after an unload was answered with a walk begun before it"


def test_a_finished_build_is_not_reused_once_the_models_changed(pack_module):
    memory, reporter, builds, loaded = make_reporter(pack_module)

    async def scenario():
        await reporter.report()
        loaded.append("clip")
        return await reporter.report()

    assert run(reporter, scenario) == {"build": 2}


def test_fresh_waits_for_a_build_that_starts_after_it(pack_module):
    memory, reporter, builds, _ = make_reporter(pack_module)

    async def scenario():
        await reporter.report()
        return await reporter.report(fresh=True)

    assert run(reporter, scenario) == {"build": 2}
