"""The residency choice as ComfyUI-Distributed calls it (distorch/host/distributed_routing.py), with
the servers' answers given in-process: Distributed's own pick is made first and taken whenever
residency does not decide or anything fails; a server that fails is warned about once per failure
(again after it recovered, or when it fails another way), not once per prompt."""
from __future__ import annotations

import asyncio
import logging

import pytest

W1 = {"id": "w1", "name": "W1", "host": "127.0.0.1", "port": 8189, "type": "local"}
W2 = {"id": "w2", "name": "W2", "host": "127.0.0.1", "port": 8190, "type": "local"}
MASTER = {"id": "master", "name": "Master", "host": "http://127.0.0.1:8188", "type": "local"}
UNET = "distorch-test-unet.safetensors"
PROMPT = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": "default"}}}


@pytest.fixture
def routing(mm, pack_module, monkeypatch):
    module = pack_module("distorch.host.distributed_routing")
    identity = pack_module("distorch.logic.residency").FileIdentity("diffusion_models", UNET, 100, 7)
    monkeypatch.setattr(module, "file_identity", lambda folder, name: identity if name == UNET else None)
    return module, identity


def holding(identity, size=2 << 30, queue=0):
    return {"models": [{"files": [{"folder": identity.folder, "name": identity.name, "size": identity.size,
                                   "mtime_ns": identity.mtime_ns}], "bytes": size}], "queue_remaining": queue}


class Index:
    def copy_prompt(self):
        return PROMPT


def run(router, workers, pick):
    async def least_busy(candidates, **kwargs):
        return pick

    async def orchestrate():  # one task, as Distributed's request handler: the prompt is seen first
        router.note_prompt(lambda index: True, Index())
        return await router.choose_worker(least_busy, workers, trace_execution_id="exec_1")

    return asyncio.run(orchestrate())


def test_the_server_holding_the_files_is_chosen_over_distributeds_pick(routing, caplog):
    module, identity = routing
    answers = {"http://127.0.0.1:8189": ({"models": [], "queue_remaining": 0}, None),
               "http://127.0.0.1:8190": (holding(identity), None),
               "http://127.0.0.1:8188": ({"models": [], "queue_remaining": 1}, None)}

    async def fetch(url):
        return answers[url]

    router = module.ResidencyRouter(enabled=True, penalty_bytes=2 << 30, fetch=fetch)
    with caplog.at_level(logging.INFO, logger="distorch.routing"):
        assert run(router, [W1, W2, MASTER], W1) is W2
    (line,) = [r.getMessage() for r in caplog.records if "routed prompt" in r.getMessage()]
    assert "exec_1 to W2 (http://127.0.0.1:8190)" in line and "would have sent it to http://127.0.0.1:8189" in line
    assert router.routed[-1]["to"] == "http://127.0.0.1:8190" and not router.routed[-1]["fallback"]


@pytest.mark.parametrize("answer", [(None, "could not be reached (ClientConnectorError: refused)"),
                                    ("<html>oops</html>", None), ({"models": [{"files": "x"}]}, None)])
def test_a_failing_server_gets_distributeds_choice_and_one_warning(routing, caplog, answer):
    module, identity = routing

    async def fetch(url):
        return answer if url.endswith("8189") else (holding(identity, size=0) | {"models": []}, None)

    router = module.ResidencyRouter(enabled=True, fetch=fetch)
    with caplog.at_level(logging.WARNING, logger="distorch.routing"):
        assert run(router, [W1, W2], W1) is W1
        assert run(router, [W1, W2], W2) is W2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "http://127.0.0.1:8189" in warnings[0]


def test_a_server_is_warned_about_again_only_after_it_recovered_or_fails_another_way(routing, caplog):
    module, identity = routing
    unreachable = (None, "could not be reached (ClientConnectorError: refused)")
    answers = [unreachable, (None, "could not be reached (ClientConnectorError: reset)"),  # the same failure
               (holding(identity), None),  # recovered
               unreachable,  # fails again
               (None, "answered HTTP 404 on /distorch/residency")]  # another way
    current = {}

    async def fetch(url):
        return current["w1"] if url.endswith("8189") else ({"models": [], "queue_remaining": 0}, None)

    router = module.ResidencyRouter(enabled=True, fetch=fetch)
    with caplog.at_level(logging.INFO, logger="distorch.routing"):
        for answer in answers:
            current["w1"] = answer
            run(router, [W1, W2], W2)
    records = [(r.levelno, r.getMessage()) for r in caplog.records if "routed prompt" not in r.getMessage()]
    expected = [(logging.WARNING, "http://127.0.0.1:8189 could not be reached"),
                (logging.INFO, "http://127.0.0.1:8189 answers its residency route again"),
                (logging.WARNING, "http://127.0.0.1:8189 could not be reached"),
                (logging.WARNING, "http://127.0.0.1:8189 answered HTTP 404")]
    assert len(records) == len(expected), records
    assert all(level == want_level and want in message
               for (level, message), (want_level, want) in zip(records, expected)), records


def test_turned_off_or_without_a_prompt_distributed_chooses_alone(routing):
    module, identity = routing
    calls = []

    async def fetch(url):
        calls.append(url)
        return holding(identity), None

    assert run(module.ResidencyRouter(enabled=False, fetch=fetch), [W1, W2], W1) is W1

    async def no_prompt():
        router = module.ResidencyRouter(enabled=True, fetch=fetch)

        async def least_busy(candidates, **kwargs):
            return W1
        return await router.choose_worker(least_busy, [W1, W2])

    assert asyncio.run(no_prompt()) is W1 and calls == []


def test_an_exception_inside_the_choice_falls_back(routing, caplog):
    module, _ = routing

    async def fetch(url):
        raise RuntimeError("boom")

    router = module.ResidencyRouter(enabled=True, fetch=fetch)
    assert run(router, [W1, W2], W2) is W2
    assert any("residency routing failed (boom)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("text, expected", [("", 2 << 30), ("0.5", 1 << 29), ("x", 2 << 30), ("-1", 0)])
def test_the_queue_penalty_setting(routing, text, expected):
    module, _ = routing
    assert module.queue_penalty_bytes({module.PENALTY_VARIABLE: text}) == expected


@pytest.mark.parametrize("text, on", [("", True), ("1", True), ("0", False), ("off", False), ("False", False)])
def test_the_switch(routing, text, on):
    module, _ = routing
    assert module.routing_enabled({module.ROUTING_VARIABLE: text} if text else {}) is on


def test_worker_urls_as_distributed_builds_them(routing):
    module, _ = routing
    assert [module.worker_url(w) for w in (W1, MASTER)] == ["http://127.0.0.1:8189", "http://127.0.0.1:8188"]
