"""Modes through a real ComfyUI server: DisTorchModeSwitch in prompts, the cache, hot reload,
bad files and the /distorch/modes routes.

Each test writes its own modes (fresh hard links to the cached checkpoint under new names), so
what one test caches never hides what another measures.
"""
from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch

import modes_setup
from comfy_host import PromptRejected
from latents import saved_latent

pytestmark = pytest.mark.host


# ---- helpers ---------------------------------------------------------------------------------
def fresh_modes(root: Path, steps: int = 2, size: int = 64, **extra_modes: str) -> tuple[str, dict]:
    """Modes x (checkpoint, no LoRA) and y (another checkpoint file + LoRA) on new file names."""
    tag = uuid.uuid4().hex[:8]
    names = {"x": f"x-{tag}", "y": f"y-{tag}"}
    for key in ("x", "y"):
        modes_setup.link_or_copy(root / modes_setup.CHECKPOINT_A, root / "fresh" / f"{names[key]}.safetensors")
    text = f"""model_root: {root}
default_mode: {names['x']}
cache: {{max_modes: 3, max_gb: 8}}
modes:
  {names['x']}:
    model: fresh/{names['x']}.safetensors
    default_size: "{size}x{size}"
    default_steps: {steps}
    default_guidance: 5.0
  {names['y']}:
    model: fresh/{names['y']}.safetensors
    loras:
      - {{path: {modes_setup.LORA}, strength: 1.0, adapter_name: detail}}
      - {modes_setup.SDXL_LORA}
    default_size: "{size}x{size}"
    default_steps: {steps}
"""
    for name, body in extra_modes.items():
        text += f"  {name}:\n" + "".join(f"    {line}\n" for line in body.splitlines())
    return text, names


def apply_modes(host, modes_file: Path, text: str) -> dict:
    """Write the file the way editors do and reload through the route (deterministic for tests)."""
    modes_setup.write_atomically(modes_file, text)
    status, body = host.request("POST", "/distorch/modes/reload")
    assert status == 200, body
    return body


def mode_graph(mode: str, seed: int = 7, prefix: str = "mode") -> dict:
    """DisTorchModeSwitch -> core nodes, every default wired from the switch's outputs."""
    return {
        "1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["1", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": ["1", 3], "height": ["1", 4], "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0], "seed": seed,
            "steps": ["1", 5], "cfg": ["1", 6], "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
        "10": {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": prefix}},
    }


def light_graph(mode: str) -> dict:
    """Only the switch (and a preview of its mode name): loads the mode, samples nothing."""
    return {"1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 7]}}}


def switch_ui(entry: dict) -> dict:
    return entry["outputs"]["1"]["distorch_mode"][0]


def cache_stats(host) -> dict:
    return host.get("/distorch/models")["cache"]


class OpenRecorder:
    """Records every open() of files in a folder (inotify through watchdog): a cache hit opens none."""

    def __init__(self, folder: Path):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        self.opened: list[str] = []
        recorder = self

        class Handler(FileSystemEventHandler):
            def on_opened(self, event):
                recorder.opened.append(Path(event.src_path).name)

        self.observer = Observer()
        self.observer.schedule(Handler(), str(folder), recursive=False)

    def __enter__(self):
        self.observer.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)  # let the last events arrive
        self.observer.stop()
        self.observer.join()

    def take(self) -> list[str]:
        time.sleep(0.3)
        taken, self.opened = self.opened, []
        return taken


# ---- tests -----------------------------------------------------------------------------------
def test_dropdown_lists_the_file_default_first(comfy_modes):
    choices = comfy_modes.object_info("DisTorchModeSwitch")["DisTorchModeSwitch"]["input"]["required"]["mode"][0]
    listing = comfy_modes.get("/distorch/modes")
    assert choices[0] == listing["default_mode"]
    assert sorted(choices) == sorted(m["name"] for m in listing["modes"])
    assert listing["source"]["origin"] == "env" and listing["watch"]["active"] is True


def test_switch_a_b_a_second_a_comes_from_the_cache_without_opening_the_file(comfy_modes, modes_files):
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    x, y = names["x"], names["y"]
    before = cache_stats(comfy_modes)
    with OpenRecorder(root / "fresh") as opens:
        first = comfy_modes.run(mode_graph(x, prefix="aba-1"))
        opened_first = opens.take()
        second = comfy_modes.run(mode_graph(y, prefix="aba-2"))
        opens.take()
        third = comfy_modes.run(mode_graph(x, prefix="aba-3"))
        opened_third = opens.take()
    after = cache_stats(comfy_modes)

    assert f"{x}.safetensors" in opened_first, "the recorder saw no open on the cold load: it cannot measure"
    assert opened_third == [], f"the cached switch back opened files: {opened_third}"
    assert (switch_ui(first)["cached"], switch_ui(second)["cached"], switch_ui(third)["cached"]) == (False, False, True)
    assert after["disk_loads"] - before["disk_loads"] == 2
    assert after["hits"] - before["hits"] == 1
    latent_x, latent_y, latent_x_again = (saved_latent(comfy_modes, e) for e in (first, second, third))
    assert latent_x.shape == (1, 4, 8, 8)                      # 64x64 from the mode's default_size
    torch.testing.assert_close(latent_x_again, latent_x, rtol=0, atol=0)
    assert (latent_x - latent_y).abs().max() > 1e-3, "mode y (with its LoRA) produced mode x's latent"


def test_lora_for_another_base_is_skipped_with_a_warning(comfy_modes, modes_files):
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    listing = apply_modes(comfy_modes, modes_file, text)
    [warning] = [w for w in listing["warnings"] if "sdxl-lora" in w["message"]]
    assert warning["file"] == str(modes_file) and warning["line"] > 1 and "2048" in warning["message"]
    entry = comfy_modes.run(mode_graph(names["y"], prefix="skip"))
    texts = entry["outputs"]["1"]["text"]
    assert any("sdxl-lora" in t and "skipped" in t for t in texts)
    assert "skipped" in comfy_modes.log_text()


def test_edit_while_a_prompt_runs_keeps_its_setup(comfy_modes, modes_files):
    root, modes_file = modes_files
    text, names = fresh_modes(root, steps=10, size=128)
    apply_modes(comfy_modes, modes_file, text)
    x = names["x"]
    prompt_id = comfy_modes.queue(mode_graph(x, prefix="inflight"))
    deadline = time.monotonic() + 120
    while not any(m["mode"] == x for m in cache_stats(comfy_modes)["modes"]):   # the switch has run
        assert time.monotonic() < deadline, "the prompt never loaded its mode"
        time.sleep(0.05)
    generation = comfy_modes.get("/distorch/modes")["generation"]
    modes_setup.write_atomically(modes_file, text.replace("default_steps: 10", "default_steps: 3", 1)
                                 .replace('"128x128"', '"64x64"', 1))          # hot reload, no route call
    while comfy_modes.get("/distorch/modes")["generation"] == generation:
        assert time.monotonic() < deadline, "the file change was not picked up"
        time.sleep(0.02)
    running = comfy_modes.get("/queue")["queue_running"]
    assert running and running[0][1] == prompt_id, "the prompt ended before the edit: make it slower"
    entry = comfy_modes.wait(prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert (switch_ui(entry)["steps"], switch_ui(entry)["width"]) == (10, 128)
    assert saved_latent(comfy_modes, entry).shape == (1, 4, 16, 16)
    after = comfy_modes.run(mode_graph(x, prefix="after-edit"))
    assert (switch_ui(after)["steps"], switch_ui(after)["width"]) == (3, 64)
    assert saved_latent(comfy_modes, after).shape == (1, 4, 8, 8)


def test_a_removed_mode_that_is_cached(comfy_modes, modes_files):
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    x, y = names["x"], names["y"]
    comfy_modes.run(mode_graph(x, prefix="removed"))
    assert any(m["mode"] == x for m in cache_stats(comfy_modes)["modes"])
    without_x = text.replace(f"default_mode: {x}", f"default_mode: {y}")
    without_x = without_x[:without_x.index(f"  {x}:")] + without_x[without_x.index(f"  {y}:"):]
    listing = apply_modes(comfy_modes, modes_file, without_x)
    assert x not in [m["name"] for m in listing["modes"]]
    assert not any(m["mode"] == x for m in cache_stats(comfy_modes)["modes"]), "a removed mode stayed cached"
    choices = comfy_modes.object_info("DisTorchModeSwitch")["DisTorchModeSwitch"]["input"]["required"]["mode"][0]
    assert x not in choices and y in choices
    with pytest.raises(PromptRejected) as rejected:
        comfy_modes.queue(mode_graph(x))
    message = json.dumps(rejected.value.body)
    assert f"'{x}' is not defined in" in message and y in message
    assert f"mode - '{x}' is not defined in" in message, message  # ComfyUI's 'input - message', the name once


BAD_FILES = {
    "syntax": ("modes:\n  a: [1, 2\n", "YAML syntax"),
    "unknown key": ("model_root: {root}\nmodes:\n  a: {{model: sd15/a.safetensors, colour: red}}\n", "unknown key 'colour'"),
    "missing key": ("model_root: {root}\nmodes:\n  a: {{default_steps: 3}}\n", "missing key 'model'"),
    "undefined default_mode": ("model_root: {root}\ndefault_mode: zz\nmodes:\n  a: {{model: sd15/a.safetensors}}\n",
                               "default_mode: 'zz'"),
    "duplicate mode": ("model_root: {root}\nmodes:\n  a: {{model: sd15/a.safetensors}}\n  a: {{model: sd15/b.safetensors}}\n",
                       "duplicate key 'a'"),
    "bad size": ("model_root: {root}\nmodes:\n  a: {{model: sd15/a.safetensors, default_size: 12by3}}\n", "not a size"),
    "negative steps": ("model_root: {root}\nmodes:\n  a: {{model: sd15/a.safetensors, default_steps: -4}}\n", "out of range"),
    "missing model": ("model_root: {root}\nmodes:\n  a: {{model: sd15/nope.safetensors}}\n", "not found"),
    "missing lora": ("model_root: {root}\nmodes:\n  a: {{model: sd15/a.safetensors, loras: [nope.safetensors]}}\n",
                     "LoRA 'nope.safetensors' not found"),
    "dot-dot": ("model_root: {root}\nmodes:\n  a: {{model: ../escape.safetensors}}\n", "climbs out"),
    "absolute outside": ("model_root: {root}\nmodes:\n  a: {{model: {outside}}}\n", "absolute path outside"),
    "symlink out": ("model_root: {root}\nmodes:\n  a: {{model: links/out.safetensors}}\n", "is a link to"),
    "alias bomb": ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join('*' + chr(97 + i) for _ in range(10))}]\n" for i in range(6)),
        "alias bomb"),
    "oversized": ("#" + "x" * (1 << 20) + "\n", "may be at most"),
    "absent device": ("model_root: {root}\nmodes:\n  a: {{model: sd15/a.safetensors, compute_device: cuda:7}}\n",
                      "device 'cuda:7' is not present on this machine"),
    "bad allocation": ("model_root: {root}\nmodes:\n  a: {{model: sd15/a.safetensors, allocation: 'cpu,12qb'}}\n",
                       "unknown unit 'qb'"),
    "bad weight_dtype": ("model_root: {root}\nmodes:\n  a: {{model: sd15/a.safetensors, weight_dtype: fp4}}\n",
                         "'fp4' is not allowed"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_are_refused_and_the_modes_in_force_stay(comfy_modes, modes_files, tmp_path, kind):
    root, modes_file = modes_files
    good_text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, good_text)
    before = comfy_modes.get("/distorch/modes")
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"x" * 16)
    link = root / "links" / "out.safetensors"
    link.parent.mkdir(exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(outside)
    template, needle = BAD_FILES[kind]
    modes_setup.write_atomically(modes_file, template.format(root=root, outside=outside))
    status, body = comfy_modes.request("POST", "/distorch/modes/reload")
    assert status == 400, body
    assert body["errors"], body
    error = body["errors"][0]
    assert error["file"] == str(modes_file) and error["line"] >= 1 and error["column"] >= 1
    assert any(needle in e["message"] for e in body["errors"]), body["errors"]
    after = comfy_modes.get("/distorch/modes")
    assert [m["name"] for m in after["modes"]] == [m["name"] for m in before["modes"]]
    assert after["generation"] == before["generation"]
    assert any(needle in e["message"] for e in after["errors"])
    comfy_modes.run(mode_graph(names["x"], prefix="still-works"))     # the old modes still run
    apply_modes(comfy_modes, modes_file, good_text)


def test_switch_route_preloads_through_the_queue(comfy_modes, modes_files):
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    y = names["y"]
    status, body = comfy_modes.request("POST", "/distorch/modes/switch", {"mode": y})
    assert status == 202 and body["cached"] is False and body["prompt_id"]
    assert comfy_modes.wait(body["prompt_id"])["status"]["status_str"] == "success"
    assert any(m["name"] == y and m["cached"] for m in comfy_modes.get("/distorch/modes")["modes"])
    status, body = comfy_modes.request("POST", "/distorch/modes/switch", {"mode": y})
    assert (status, body["cached"], body["prompt_id"]) == (200, True, None)
    loads = cache_stats(comfy_modes)["disk_loads"]
    comfy_modes.run(mode_graph(y, prefix="preloaded"))
    assert cache_stats(comfy_modes)["disk_loads"] == loads, "the preloaded mode was loaded again"


@pytest.mark.parametrize("body,status,needle", [
    (b"not json", 400, "not valid JSON"), (b"[1]", 400, "JSON object"), (b"", 400, "JSON object body"),
    ({"mode": 3}, 400, "'mode' must be str"), ({}, 400, "needs 'mode'"), ({"mode": "nope"}, 404, "'nope' is not defined")])
def test_switch_route_refuses_bad_requests(comfy_modes, body, status, needle):
    got, answer = comfy_modes.request("POST", "/distorch/modes/switch", body)
    assert got == status and needle in answer["error"], answer


def test_models_route_reports_cache_and_loaded_models(comfy_modes, modes_files):
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    comfy_modes.run(mode_graph(names["x"], prefix="models-route"))
    body = comfy_modes.get("/distorch/models")
    cache = body["cache"]
    assert {"max_modes", "max_gb", "entries", "bytes", "hits", "misses", "evictions", "disk_loads"} <= set(cache)
    assert (cache["max_modes"], cache["max_gb"]) == (3, 8.0)
    entry = next(m for m in cache["modes"] if m["mode"] == names["x"])
    assert entry["bytes"] > 100 * 2**20
    assert any(m["loader"] == "DisTorchModeSwitch" for m in body["loaded"]), body["loaded"]


def test_cache_evicts_the_least_recently_used_mode(comfy_modes, modes_files):
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    tag = names["x"].split("-")[1]
    z = f"z-{tag}"
    modes_setup.link_or_copy(root / modes_setup.CHECKPOINT_A, root / "fresh" / f"{z}.safetensors")
    text = text.replace("max_modes: 3", "max_modes: 2") + f"  {z}:\n    model: fresh/{z}.safetensors\n"
    apply_modes(comfy_modes, modes_file, text)
    for mode in (names["x"], names["y"], names["x"], z):     # y is now the least recently used
        comfy_modes.run(light_graph(mode))
    cached = [m["mode"] for m in cache_stats(comfy_modes)["modes"]]
    assert cached == [z, names["x"]]


def test_websocket_event_and_dropdown_follow_a_file_write(comfy_modes, modes_files):
    import websocket

    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    socket = websocket.create_connection(f"ws://127.0.0.1:{comfy_modes.port}/ws?clientId={uuid.uuid4().hex}",
                                         timeout=10)
    try:
        extra = f"  added-{names['x']}:\n    model: fresh/{names['x']}.safetensors\n"
        modes_setup.write_atomically(modes_file, text + extra)
        deadline = time.monotonic() + 10
        event = None
        while time.monotonic() < deadline:
            message = socket.recv()
            if isinstance(message, str) and json.loads(message).get("type") == "distorch.modes":
                event = json.loads(message)["data"]
                # The watcher may still report the first write (apply_modes) before this one.
                if event.get("event") == "reload" and f"added-{names['x']}" in event.get("modes", []):
                    break
        assert event is not None and event["ok"] is True and event["reason"] == "file"
        assert f"added-{names['x']}" in event["modes"]
    finally:
        socket.close()
    choices = comfy_modes.object_info("DisTorchModeSwitch")["DisTorchModeSwitch"]["input"]["required"]["mode"][0]
    assert f"added-{names['x']}" in choices


def test_generate_route_returns_the_image_with_mode_and_seed(comfy_modes, modes_files):
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    request = urllib.request.Request(
        comfy_modes.url + "/distorch/generate", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"mode": names["x"], "prompt": "a red cube", "seed": 42, "wait": True}).encode())
    with urllib.request.urlopen(request, timeout=300) as response:
        data = response.read()
        assert response.headers["X-Mode"] == names["x"] and response.headers["X-Seed"] == "42"
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    status, body = comfy_modes.request("POST", "/distorch/generate", {"mode": names["x"], "size": "big"})
    assert status == 400 and "'size'" in body["error"]
    status, body = comfy_modes.request("POST", "/distorch/generate", {"mode": names["x"], "seed": 1})
    assert status == 200 and body["seed"] == 1 and body["prompt_id"]
    comfy_modes.wait(body["prompt_id"])


def test_without_a_modes_file_the_node_says_why(comfy):
    listing = comfy.get("/distorch/modes")
    assert listing["modes"] == [] and listing["source"]["origin"] == "none"
    assert "DISTORCH_MODES" in listing["reason"]
    choices = comfy.object_info("DisTorchModeSwitch")["DisTorchModeSwitch"]["input"]["required"]["mode"][0]
    assert choices == ["(no modes)"]
    with pytest.raises(PromptRejected) as rejected:
        comfy.queue({"1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": "(no modes)"}},
                     "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 7]}}})
    assert "no modes are available" in json.dumps(rejected.value.body)
    assert "DISTORCH_MODES" in json.dumps(rejected.value.body)
    status, body = comfy.request("POST", "/distorch/modes/reload")
    assert status == 200 and body["modes"] == []


def test_sighup_reloads_the_file(comfy_modes, modes_files):
    import os
    import signal

    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    assert comfy_modes.get("/distorch/modes")["watch"]["sighup"] is True
    mark = len(comfy_modes.log_text())
    os.kill(comfy_modes.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "(signal)" not in comfy_modes.log_text()[mark:]:
        assert time.monotonic() < deadline, "no reload logged after SIGHUP"
        time.sleep(0.05)
    assert comfy_modes.process.poll() is None, "SIGHUP stopped the server"


def test_queued_prompts_switch_modes_in_queue_order(comfy_modes, modes_files):
    """With mode affinity off (first come, first served): tests/host/test_queue_priorities.py
    checks the order affinity gives."""
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    order = [names["x"], names["y"], names["x"], names["y"]]
    assert comfy_modes.request("POST", "/distorch/queue/affinity", {"max_passes": 0})[0] == 200
    try:
        ids = [comfy_modes.queue(light_graph(mode)) for mode in order]
        entries = [comfy_modes.wait(prompt_id) for prompt_id in ids]
    finally:
        comfy_modes.request("POST", "/distorch/queue/affinity", {"max_passes": 2})
    assert [e["status"]["status_str"] for e in entries] == ["success"] * 4
    assert [switch_ui(e)["mode"] for e in entries] == order
    finished = [e["status"]["messages"][-1][1]["timestamp"] for e in entries]
    assert finished == sorted(finished), "prompts finished out of queue order"


def test_web_extension_is_served_and_listens_to_the_modes_event(comfy_modes):
    extensions = comfy_modes.get("/extensions")
    path = next(e for e in extensions if e.endswith("/modes.js") and "comfyui-distorch" in e)
    status, source = comfy_modes.request("GET", path)
    assert status == 200
    text = source.decode() if isinstance(source, bytes) else str(source)
    assert 'addEventListener("distorch.modes"' in text and "DisTorchModeSwitch" in text


def test_a_mode_allocation_splits_its_model_with_the_same_result(comfy_modes, modes_files):
    """A mode's `allocation` goes through the loaders' split path: the plan is logged for the mode
    and the latent equals the same checkpoint's unsplit mode."""
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    split = f"split-{names['x']}"
    text += (f"  {split}:\n    model: fresh/{names['x']}.safetensors\n    allocation: \"0.5\"\n"
             f"    default_size: \"64x64\"\n    default_steps: 2\n    default_guidance: 5.0\n")
    apply_modes(comfy_modes, modes_file, text)
    log_start = len(comfy_modes.log_text())
    unsplit = saved_latent(comfy_modes, comfy_modes.run(mode_graph(names["x"], seed=21, prefix="mode-unsplit")))
    halves = saved_latent(comfy_modes, comfy_modes.run(mode_graph(split, seed=21, prefix="mode-split")))
    log = comfy_modes.log_text()[log_start:]
    assert f"mode '{split}': placement of" in log and "cpu (donor)" in log, log[-3000:]
    torch.testing.assert_close(halves, unsplit, rtol=0, atol=0)


def test_a_mode_weight_dtype_and_compute_device_reach_the_model(comfy_modes, modes_files):
    """`weight_dtype: fp8_e4m3fn` stores the diffusion model's weights in one byte each (the
    UNet shrinks and the result changes). `compute_device: cpu` is accepted and the model runs
    there; on this CPU-only machine cpu is also the default device, so that half shows only that
    the setting is carried and valid (a device that is absent is refused: see BAD_FILES)."""
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    fp8, on_cpu = f"fp8-{names['x']}", f"cpu-{names['x']}"
    for name, setting in ((fp8, "weight_dtype: fp8_e4m3fn"), (on_cpu, "compute_device: cpu")):
        text += (f"  {name}:\n    model: fresh/{names['x']}.safetensors\n    {setting}\n"
                 f"    default_size: \"64x64\"\n    default_steps: 2\n    default_guidance: 5.0\n")
    apply_modes(comfy_modes, modes_file, text)

    def unet_report(mode):
        latent = saved_latent(comfy_modes, comfy_modes.run(mode_graph(mode, seed=5, prefix=f"dtype-{mode}")))
        models = comfy_modes.get("/internal/memory")["models"]
        unet = next(m for m in models if m["name"].startswith(f"{mode}:") and m["component"] == "unet")
        return latent, unet

    default_latent, default_unet = unet_report(names["x"])
    fp8_latent, fp8_unet = unet_report(fp8)
    cpu_latent, cpu_unet = unet_report(on_cpu)
    default_bytes, fp8_bytes = sum(default_unet["devices"].values()), sum(fp8_unet["devices"].values())
    # Norms and biases stay wide: the fp8 model holds well under half the bytes, not exactly a quarter.
    assert fp8_bytes < 0.5 * default_bytes, (fp8_bytes, default_bytes)
    # The synthetic UNet's random weights amplify rounding, so only "ran, finite, changed" is checked.
    assert torch.isfinite(fp8_latent).all() and not torch.equal(fp8_latent, default_latent)
    assert cpu_unet["compute_device"] == "cpu" and set(cpu_unet["devices"]) == {"cpu"}
    torch.testing.assert_close(cpu_latent, default_latent, rtol=0, atol=0)


def test_reload_while_a_switch_loads_keeps_the_modes_consistent(comfy_modes, modes_files):
    """POST /distorch/modes/switch starts a cold load; the file changes that mode's load settings
    and POST /distorch/modes/reload lands while the load runs. No 5xx; the switch finishes with the
    setup it started with; afterwards the cache holds only modes in force, as the listing says."""
    root, modes_file = modes_files
    text, names = fresh_modes(root)
    apply_modes(comfy_modes, modes_file, text)
    x = names["x"]
    edited = text.replace(f"model: fresh/{x}.safetensors", f"model: fresh/{x}.safetensors\n    weight_dtype: fp8_e4m3fn", 1)
    assert edited != text
    status, body = comfy_modes.request("POST", "/distorch/modes/switch", {"mode": x})
    assert status == 202, body
    prompt_id = body["prompt_id"]
    deadline = time.monotonic() + 120
    while not any(item[1] == prompt_id for item in comfy_modes.get("/queue")["queue_running"]):
        assert time.monotonic() < deadline, "the preload prompt never started"
        time.sleep(0.02)
    modes_setup.write_atomically(modes_file, edited)
    status, listing = comfy_modes.request("POST", "/distorch/modes/reload")
    assert status == 200, listing
    still_running = any(item[1] == prompt_id for item in comfy_modes.get("/queue")["queue_running"])
    assert still_running, "the load ended before the reload: the test raced nothing (make the mode larger)"
    assert next(m for m in listing["modes"] if m["name"] == x)["weight_dtype"] == "fp8_e4m3fn"

    entry = comfy_modes.wait(prompt_id)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert switch_ui(entry)["mode"] == x
    listing = comfy_modes.get("/distorch/modes")
    cached_in_listing = sorted(m["name"] for m in listing["modes"] if m["cached"])
    cache = cache_stats(comfy_modes)
    assert sorted(e["mode"] for e in cache["modes"]) == cached_in_listing, (
        f"the cache holds {[(e['mode'], e['fingerprint']) for e in cache['modes']]} but the listing says "
        f"{cached_in_listing} are cached: an entry for a setup no longer in force")
    # The next switch loads the setup in force (fp8), not the one the racing load cached. (On a busy
    # machine the reload may land before the switch node reads the mode: the first load was then
    # the fp8 setup already, the listing says it is cached, and the switch reuses it.)
    status, body = comfy_modes.request("POST", "/distorch/modes/switch", {"mode": x})
    if x in cached_in_listing:
        assert status == 200 and body["cached"] is True, body
    else:
        assert status == 202 and body["cached"] is False, body
        assert comfy_modes.wait(body["prompt_id"])["status"]["status_str"] == "success"
    assert next(m for m in comfy_modes.get("/distorch/modes")["modes"] if m["name"] == x)["cached"] is True
