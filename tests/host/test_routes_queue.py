"""Prompts the pack queues (POST /distorch/generate, POST /distorch/modes/switch) go through the
host's own POST /prompt path: other packs' on_prompt handlers see them and may change them, and the
host numbers and validates them as it does the user's. The other pack is the test-only hooks pack
(tests/host/packs/distorch_test_hooks): it records each body and renames the SaveImage prefix of
the prompts /distorch/generate builds from "distorch-" to "hooked-"."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.host


def recorded(host) -> list[dict]:
    path = host.hooks_dir / "on_prompt.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_generate_passes_the_on_prompt_handlers_and_their_change_is_honoured(comfy_hooks):
    host = comfy_hooks
    seen = len(recorded(host))
    status, answer = host.request("POST", "/distorch/generate", {
        "mode": "mode-a", "prompt": "a red cube", "seed": 5, "steps": 1, "client_id": "client-under-test",
        "extra_data": {"note": "from the test"}})
    assert status == 200, answer
    entry = host.wait(answer["prompt_id"])
    assert entry["status"]["status_str"] == "success", entry["status"]

    [body] = recorded(host)[seen:]  # what the handler received, before it changed anything
    assert body["client_id"] == "client-under-test" and body["extra_data"] == {"note": "from the test"}
    assert body["prompt"]["1"] == {"class_type": "DisTorchModeSwitch", "inputs": {"mode": "mode-a"}}
    assert body["prompt"]["7"]["inputs"]["filename_prefix"] == "distorch-mode-a"

    number, prompt_id, prompt, extra_data, _ = entry["prompt"][:5]
    assert prompt_id == answer["prompt_id"]
    assert prompt["7"]["inputs"]["filename_prefix"] == "hooked-mode-a", "the handler's change was dropped"
    assert extra_data["hooked"] is True and extra_data["note"] == "from the test"
    assert extra_data["client_id"] == "client-under-test" and "create_time" in extra_data
    [image] = entry["outputs"]["7"]["images"]
    assert image["filename"].startswith("hooked-mode-a")
    assert host.output_path(image).exists()


def test_front_is_numbered_by_the_host(comfy_hooks):
    """POST /prompt's own rule: front = true queues with a negative number (runs first)."""
    status, answer = comfy_hooks.request("POST", "/distorch/generate",
                                         {"mode": "mode-a", "seed": 6, "steps": 1, "front": True})
    assert status == 200, answer
    entry = comfy_hooks.wait(answer["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    assert entry["prompt"][0] < 0, entry["prompt"][0]


def test_switch_preload_passes_the_on_prompt_handlers(comfy_hooks):
    host = comfy_hooks
    status, answer = host.request("POST", "/distorch/free", {"force": True})  # empties the modes cache
    assert status == 200 and answer["status"] == "done", answer
    seen = len(recorded(host))
    status, answer = host.request("POST", "/distorch/modes/switch", {"mode": "mode-b"})
    assert status == 202 and answer["prompt_id"], answer
    assert host.wait(answer["prompt_id"])["status"]["status_str"] == "success"
    bodies = recorded(host)[seen:]
    assert [b["prompt"]["1"]["inputs"]["mode"] for b in bodies] == ["mode-b"], bodies
