"""The memory report never stalls the server, and a failing websocket publisher says so once.

The test-only hooks pack (tests/host/packs/distorch_test_hooks) makes the pack's model walk
(MemoryControl.loaded_models) sleep or raise inside the real server, standing in for a walk over a
large model while the worker moves its weights."""
from __future__ import annotations

import json
import threading
import time

import pytest

pytestmark = pytest.mark.host

EVENT_FAILED = "the distorch.memory websocket event failed"


@pytest.fixture
def walk(comfy_hooks):
    def set_walk(**settings):
        status, body = comfy_hooks.request("POST", "/distorch-test/memory-walk", settings)
        assert status == 200, body

    yield set_walk
    set_walk(sleep=0, fail=False)


def walks(host) -> int:
    return host.get("/distorch-test/memory-walk")["walks"]


def test_a_slow_model_walk_does_not_delay_other_routes(comfy_hooks, walk):
    host = comfy_hooks
    walk(sleep=4.0)
    answers = []

    def read_memory():
        started = time.monotonic()
        status, document = host.request("GET", "/internal/memory", timeout=30)
        answers.append((status, document, time.monotonic() - started))

    readers = [threading.Thread(target=read_memory) for _ in range(2)]
    readers[0].start()
    time.sleep(0.5)
    readers[1].start()  # arrives while the first build runs: it must share that build
    time.sleep(0.3)
    started = time.monotonic()
    assert host.get("/system_stats", timeout=30)["system"]
    stats_seconds = time.monotonic() - started
    for reader in readers:
        reader.join(30)
    assert stats_seconds < 1.5, f"GET /system_stats took {stats_seconds:.2f} s while the report was built"
    assert [status for status, _, _ in answers] == [200, 200], answers
    assert min(seconds for _, _, seconds in answers) > 2.0, "the walk did not run slowly: the test measures nothing"
    assert answers[0][1]["timestamp"] == answers[1][1]["timestamp"], "the second caller started a build of its own"
    assert walks(host) == 1


def next_memory_event(socket, timeout: float):
    import websocket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            raw = socket.recv()
        except websocket.WebSocketTimeoutException:
            continue
        if isinstance(raw, str) and json.loads(raw)["type"] == "distorch.memory":
            return json.loads(raw)["data"]
    raise TimeoutError(f"no distorch.memory event within {timeout} s")


def wait_for(what: str, check, timeout: float = 30.0):
    """Poll ``check()`` until it returns something true; a busy machine only makes this slower."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def log_since(host, mark: int, text: str, timeout: float = 30.0) -> str:
    """The server log after ``mark`` once ``text`` is in it (the line is written after the event)."""
    def read():
        log = host.log_text()[mark:]
        return log if text in log else None

    try:
        return wait_for(f"{text!r} in the server log", read, timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}; log since the mark:\n{host.log_text()[mark:][-3000:]}") from None


def test_a_failing_publisher_warns_once_and_recovers(comfy_hooks, walk):
    import websocket

    host = comfy_hooks
    socket = websocket.create_connection(f"ws://127.0.0.1:{host.port}/ws?clientId=telemetry-test", timeout=1)
    try:
        next_memory_event(socket, 10)
        mark = len(host.log_text())
        walk(fail=True)
        # A failing report walks twice (build_report retries once) and the publisher ticks one at
        # a time: at six walks the first two failed ticks have logged all they will log.
        wait_for("the publisher retrying the failed walk (it stopped?)", lambda: walks(host) >= 6)
        log = log_since(host, mark, EVENT_FAILED)
        assert log.count(EVENT_FAILED) == 1, log[-3000:]
        assert "model walk failed on purpose" in log.split(EVENT_FAILED, 1)[1].splitlines()[0]
        status, body = host.request("GET", "/internal/memory")
        assert status == 500 and "model walk failed on purpose" in body["error"], (status, body)

        walk(fail=False)
        event = next_memory_event(socket, 10)  # clients get the picture again at once
        assert "models" in event
        log = log_since(host, mark, "distorch.memory websocket event works again")
        assert log.count(EVENT_FAILED) == 1, log[-3000:]
    finally:
        socket.close()
