"""Per-mode options on a real ComfyUI server: vae_tiling (the mode's VAE decodes with the host's
tiled decoder, in the mode-switch node's graph and in /distorch/generate) and attention (the
mode's diffusion model, and only it, runs the attention function the mode names). A test pack
registers a counting attention function with the host's own registry, so the test sees which
attention ran."""
from __future__ import annotations

import pytest

import hostenv
import modes_setup
import workflows
from comfy_host import ComfyHost

pytestmark = pytest.mark.host
FAULT_NODES = hostenv.REPO_ROOT / "tests" / "host" / "fault_nodes"


def diffusers_folder(root, model_cache) -> str:
    """The synthetic diffusers folder inside the modes root: its configs copied, its weights linked."""
    source = model_cache / "diffusers" / "distorch-test-sd-xs"
    for item in source.rglob("*"):
        if item.is_file():
            target = root / "sd-xs" / item.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if item.suffix == ".json":
                target.write_bytes(item.read_bytes())
            else:
                target.symlink_to(item.resolve())
    return "sd-xs"


@pytest.fixture(scope="module")
def host(tmp_path_factory, model_cache):
    root = modes_setup.make_model_root(tmp_path_factory.mktemp("options-root"), model_cache)
    folder = diffusers_folder(root, model_cache)
    modes_file = tmp_path_factory.mktemp("options-modes") / "modes.yaml"
    modes_file.write_text(f"model_root: {root}\nmodes:\n  plain: {{model: {modes_setup.CHECKPOINT_A}}}\n")
    server = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-options"), model_cache, hostenv.REPO_ROOT,
                       env={"DISTORCH_MODES": str(modes_file)}, extra_custom_nodes=(FAULT_NODES,))
    server.start()
    # written once the test pack has registered its attention function (packs load after the modes file)
    modes_setup.write_atomically(modes_file, f"""model_root: {root}
modes:
  plain: {{model: {modes_setup.CHECKPOINT_A}, default_size: "64x64", default_steps: 1}}
  tiled:
    model: {modes_setup.CHECKPOINT_B}
    default_size: "64x64"
    default_steps: 1
    vae_tiling: {{tile_size: 64, overlap: 16}}
  counted: {{model: {modes_setup.CHECKPOINT_A}, default_size: "64x64", default_steps: 1,
            attention: distorch_test_counting}}
  folder: {{model: {folder}, default_size: "64x64", default_steps: 1, allocation: "0.5"}}
""")
    status, body = server.request("POST", "/distorch/modes/reload")
    assert status == 200, body
    yield server
    server.stop()


def graph(mode: str) -> dict:
    """The mode-switch node wired as users wire it: core VAEDecode, then the attention counter."""
    return {
        "1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": ["1", 3], "height": ["1", 4], "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0], "seed": 3,
            "steps": ["1", 5], "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        workflows.SAVE_IMAGE: {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": mode}},
        "7": {"class_type": "DisTorchTestAttentionCalls", "inputs": {"after": ["4", 0]}},
    }


def attention_calls(entry) -> int:
    return int(entry["outputs"]["7"]["text"][0])


def with_seed(prompt: dict, seed: int) -> dict:
    prompt["4"]["inputs"]["seed"] = seed
    return prompt


def test_the_modes_listing_shows_the_options(host):
    modes = {m["name"]: m for m in host.get("/distorch/modes")["modes"]}
    assert modes["tiled"]["vae_tiling"] == {"tile_size": 64, "overlap": 16}
    assert modes["counted"]["attention"] == "distorch_test_counting"
    assert modes["plain"]["vae_tiling"] is None and modes["plain"]["attention"] == "default"


def test_only_the_mode_that_names_it_runs_the_attention_function(host):
    before = attention_calls(host.run(with_seed(graph("plain"), 1)))
    after_plain = attention_calls(host.run(with_seed(graph("plain"), 2)))
    assert after_plain == before  # the plain mode keeps the process-wide attention
    counted = attention_calls(host.run(with_seed(graph("counted"), 3)))
    assert counted > after_plain  # the counted mode's UNet called the counting function
    assert attention_calls(host.run(with_seed(graph("plain"), 4))) == counted  # and only it


def decode_progress(host, prompt: dict) -> list[dict]:
    """Run ``prompt``; the progress events the VAEDecode node (id 5) sent. ComfyUI's tiled decoder
    reports progress over its tiles; a plain decode reports none."""
    import json

    import websocket

    socket = websocket.create_connection(f"ws://127.0.0.1:{host.port}/ws?clientId={host.client_id}", timeout=1)
    try:
        host.run(prompt)
        events = []
        while True:
            try:
                raw = socket.recv()
            except websocket.WebSocketTimeoutException:
                return events
            if isinstance(raw, str):
                message = json.loads(raw)
                if message["type"] == "progress" and message["data"].get("node") == "5":
                    events.append(message["data"])
    finally:
        socket.close()


def test_the_mode_switch_graph_decodes_tiled_through_the_core_decode_node(host):
    assert decode_progress(host, with_seed(graph("plain"), 8)) == []
    tiled = decode_progress(host, with_seed(graph("tiled"), 9))
    assert tiled and tiled[-1]["value"] == tiled[-1]["max"], tiled  # every tile of the three passes decoded
    assert "mode 'tiled': its VAE decodes in tiles of 64 px overlapping by 16 px" in host.log_text()


def test_generate_uses_the_tiled_decoder_node(host):
    status, body = host.request("POST", "/distorch/generate", {"mode": "tiled", "prompt": "a red cube", "seed": 1})
    assert status == 200, body
    entry = host.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "success", entry["status"]
    prompt = entry["prompt"][2]
    assert prompt["6"]["class_type"] == "VAEDecodeTiled" and prompt["6"]["inputs"]["tile_size"] == 64
    status, plain = host.request("POST", "/distorch/generate", {"mode": "plain", "prompt": "a red cube", "seed": 1})
    plain_entry = host.wait(plain["prompt_id"])
    assert plain_entry["prompt"][2]["6"]["class_type"] == "VAEDecode"


def test_a_mode_can_name_a_diffusers_folder(host):
    modes = {m["name"]: m for m in host.get("/distorch/modes")["modes"]}
    assert modes["folder"]["base"] == "SD15", modes["folder"]  # detected from the folder's UNet header
    mark = len(host.log_text())
    host.run(with_seed(graph("folder"), 5))
    log = host.log_text()[mark:]
    assert "mode 'folder'" in log and "cpu (donor)" in log, log[-2000:]  # loaded and split as the mode says
