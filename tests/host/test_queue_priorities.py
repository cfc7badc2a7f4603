"""Queue priorities and mode affinity on a real ComfyUI server: a prompt holds the worker (a test
node waiting for a file), prompts are queued behind it through POST /prompt as API clients send
them, then released; the order they really ran is read from /history."""
from __future__ import annotations

import json
import random
import uuid

import jsonschema
import pytest

import hostenv
import queue_setup
from comfy_host import ComfyHost
from queue_setup import gate_prompt, hold, post, run_order
from distorch.logic.scheduler import NORMAL, Pending, replay, switches

pytestmark = pytest.mark.host
SCHEMA = json.loads((hostenv.REPO_ROOT / "schemas" / "distorch_queue.schema.json").read_text())


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model_cache):
    modes_file = queue_setup.write_modes(tmp_path_factory.mktemp("queue-root"), model_cache,
                                         tmp_path_factory.mktemp("queue-modes") / "modes.yaml")
    host = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-queue"), model_cache, hostenv.REPO_ROOT,
                     env={"DISTORCH_MODES": str(modes_file)}, extra_custom_nodes=(queue_setup.FAULT_NODES,))
    host.start()
    gates = tmp_path_factory.mktemp("gates")
    yield host, gates
    host.stop()


def queue_events(host):
    """A websocket client collecting the distorch.queue events (the frontend's channel)."""
    import websocket

    return websocket.create_connection(f"ws://127.0.0.1:{host.port}/ws?clientId=queue-test-{uuid.uuid4().hex}",
                                       timeout=1)


def received(socket, event: str) -> list[dict]:
    import websocket

    found = []
    while True:
        try:
            raw = socket.recv()
        except websocket.WebSocketTimeoutException:
            return found
        if isinstance(raw, str) and json.loads(raw)["type"] == event:
            found.append(json.loads(raw)["data"])


def test_prompts_run_by_rank_first_come_first_served_within_a_rank(setup):
    host, gates = setup
    socket = queue_events(host)
    gate, _ = hold(host, gates)
    open_gate = gates / "open"
    open_gate.touch()
    asked = [("low", "l1"), (None, "n1"), ("urgent", "u1"), ("high", "h1"), ("normal", "n2"), ("urgent", "u2"),
             ("low", "l2"), ("high", "h2"), (None, "n3")]
    random.Random(3).shuffle(asked)
    ids = {}
    for priority, tag in asked:
        fields = {} if priority is None else {"priority": priority}
        if tag == "h2":  # the other place a client may put it
            fields = {"extra_data": {"priority": "high"}}
        ids[tag] = post(host, gate_prompt(open_gate, tag), **fields)
    ids["front"] = post(host, gate_prompt(open_gate, "front"), front=True)
    doomed = post(host, gate_prompt(open_gate, "deleted"), priority="urgent")
    assert host.request("POST", "/queue", {"delete": [doomed]})[0] == 200

    # ComfyUI's own queue shows the order that will run (the frontend sorts by the same number)
    pending = sorted(host.get("/queue")["queue_pending"], key=lambda item: item[0])
    tag_of = {prompt_id: tag for tag, prompt_id in ids.items()}
    shown = [tag_of[item[1]] for item in pending]
    queue = host.get("/distorch/queue")
    jsonschema.validate(queue, SCHEMA)
    assert queue["pending"] == {"urgent": 2, "high": 2, "normal": 4, "low": 2}, queue
    assert [tag_of[item["prompt_id"]] for item in queue["queue"]] == shown
    events = received(socket, "distorch.queue")  # pushed as the prompts were queued
    assert events and events[-1]["pending"] == queue["pending"], events[-1:]
    jsonschema.validate(events[-1], SCHEMA)
    socket.close()

    gate.touch()
    ran = [tag_of[prompt_id] for prompt_id in run_order(host, list(ids.values()))]
    urgent, high = [t for t in ran if t[0] == "u"], [t for t in ran if t[0] == "h"]
    # by rank; first come first served within it (arrival order = the shuffled order)
    arrival = [tag for _, tag in asked]
    expected = (sorted(urgent, key=arrival.index) + sorted(high, key=arrival.index) + ["front"]
                + sorted(["n1", "n2", "n3"], key=arrival.index) + sorted(["l1", "l2"], key=arrival.index))
    assert ran == expected
    assert shown == expected
    assert "deleted" not in ran
    assert host.get(f"/history/{doomed}") == {}  # deleting a queued prompt still works


@pytest.mark.parametrize("body, words", [
    ({"priority": "asap"}, ["priority: 'asap' is not a priority", "urgent, high, normal, low"]),
    ({"extra_data": {"priority": 3}}, ["extra_data.priority: 3 is not a priority"]),
])
def test_an_unknown_priority_is_refused_naming_the_allowed_ones(setup, body, words):
    host, gates = setup
    before = host.get("/distorch/queue")
    status, answer = host.request("POST", "/prompt", {"prompt": gate_prompt(gates / "open", "bad"), **body})
    assert status == 400, answer
    for word in words:
        assert word in answer["error"]["message"], answer
    after = host.get("/distorch/queue")
    assert after["pending_total"] == before["pending_total"] and after["completed"] == before["completed"]


def simulated(modes: list[str], loaded: str | None, max_passes: int) -> list[int]:
    """The order the pure scheduler gives, for comparison with the server's."""
    return [int(p.key) for p in replay([Pending(str(i), NORMAL, m) for i, m in enumerate(modes)],
                                       {loaded} - {None}, max_passes)]


def alternate_modes(host, gates, max_passes: int) -> tuple[list[str], list[int], int]:
    status, body = host.request("POST", "/distorch/queue/affinity", {"max_passes": max_passes})
    assert status == 200 and body["affinity"]["max_passes"] == max_passes, body
    gate, _ = hold(host, gates)
    loaded = host.get("/distorch/queue")["loaded_modes"]
    modes = ["qa", "qb"] * 4
    open_gate = gates / "open"
    open_gate.touch()
    ids = [post(host, gate_prompt(open_gate, f"{mode}-{i}-{uuid.uuid4().hex[:6]}", mode)) for i, mode in enumerate(modes)]
    loads_before = host.get("/distorch/models")["cache"]["disk_loads"]
    gate.touch()
    ran = run_order(host, ids)
    loads = host.get("/distorch/models")["cache"]["disk_loads"] - loads_before
    order = [ids.index(prompt_id) for prompt_id in ran]
    expected = simulated(modes, loaded[0] if loaded else None, max_passes)
    assert order == expected, (order, expected, loaded)
    return [modes[i] for i in order], order, loads


def test_mode_affinity_switches_less_and_passes_no_prompt_more_than_its_bound(setup):
    host, gates = setup
    modes_off, order_off, loads_off = alternate_modes(host, gates, 0)
    assert order_off == list(range(8)) and loads_off == 8  # first come first served: a load per prompt
    modes_on, order_on, loads_on = alternate_modes(host, gates, 2)
    passes = [sum(1 for later in order_on[:order_on.index(i)] if later > i) for i in range(8)]
    assert max(passes) <= 2 and max(passes) > 0, passes
    assert loads_on == switches(modes_on, modes_off[-1]) < loads_off, (modes_on, loads_on)
    report = host.get("/distorch/queue")
    jsonschema.validate(report, SCHEMA)
    assert report["affinity"]["run_early"] > 0 and report["mode_switches"] >= loads_on - 1


def test_the_mode_switch_route_says_how_many_prompts_run_first(setup):
    host, gates = setup
    gate, _ = hold(host, gates)
    open_gate = gates / "open"
    open_gate.touch()
    post(host, gate_prompt(open_gate, f"n-{uuid.uuid4().hex[:6]}"))
    post(host, gate_prompt(open_gate, f"u-{uuid.uuid4().hex[:6]}"), priority="urgent")
    status, low = host.request("POST", "/distorch/modes/switch", {"mode": "qb" if "qa" in
                                                                   host.get("/distorch/queue")["loaded_modes"] else "qa",
                                                                   "priority": "low"})
    assert status == 202 and low["runs_after"] == 3, low  # the holding prompt, the normal and the urgent one
    assert low["message"] == "Mode switch queued. Will switch after 3 pending prompt(s)"
    status, bad = host.request("POST", "/distorch/modes/switch", {"mode": "qa", "priority": "soon"})
    assert status == 400 and "urgent, high, normal, low" in bad["error"]
    gate.touch()
    host.wait(low["prompt_id"], timeout=120)
