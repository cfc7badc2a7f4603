"""Memory safety on a real ComfyUI server: OOM recovery, --disable-smart-memory, retention that
stays bounded when a loader's inputs change, the retention budget, and a failed unload.

The selective keep_loaded rule is for the /free flow only (Manager's buttons, POST /free, the
pack's routes); every other ``unload_all_models()`` keeps ComfyUI's meaning."""
import json
import time

import jsonschema
import pytest

import hostenv
import workflows
from comfy_host import ComfyHost, error_of

pytestmark = pytest.mark.host

SCHEMA = json.loads((hostenv.REPO_ROOT / "schemas" / "internal_memory.schema.json").read_text())
FAULT_NODES = hostenv.REPO_ROOT / "tests" / "host" / "fault_nodes"


def start_host(tmp_path_factory, model_cache, name, extra_args=(), env=None) -> ComfyHost:
    host = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp(name), model_cache, hostenv.REPO_ROOT,
                     extra_args=tuple(extra_args), env=env)
    host.prepare()
    (host.base_dir / "custom_nodes" / "distorch_fault_nodes").symlink_to(FAULT_NODES, target_is_directory=True)
    return host.start()


@pytest.fixture(scope="module")
def host(tmp_path_factory, model_cache):
    server = start_host(tmp_path_factory, model_cache, "host-safety")
    yield server
    server.stop()


@pytest.fixture
def clean(host):
    status, body = host.request("POST", "/distorch/free", {"force": True})
    assert status == 200 and body["status"] == "done", body
    return host


def memory(host) -> dict:
    document = host.get("/internal/memory")
    jsonschema.validate(document, SCHEMA)
    return document


def loaders(unet_keep=True, clip_keep=False, **unet_inputs):
    """Node 1: DisTorch UNet (kept), node 2: DisTorch CLIP (flagged), node 3: the core VAE loader."""
    graph = workflows.separate_loaders("distorch", compute_device="cpu")
    graph["1"]["inputs"].update(keep_loaded=unet_keep, **unet_inputs)
    graph["2"]["inputs"]["keep_loaded"] = clip_keep
    graph["3"] = {"class_type": "VAELoader", "inputs": {"vae_name": workflows.VAE}}
    return graph


def with_fault(graph: dict, node_class: str, seed: int = 0) -> dict:
    graph = dict(graph)
    graph["20"] = {"class_type": node_class, "inputs": {"model": ["1", 0], "seed": seed}}
    return graph


def states(document) -> dict:
    return {m["name"]: m["state"] for m in document["models"]}


def test_after_an_oom_nothing_stays_loaded_and_the_kept_model_is_reused_from_ram(clean):
    host = clean
    graph = loaders()
    host.run(workflows.separate_txt2img(graph, prefix="before-oom"))
    before = {m["name"]: m for m in memory(host)["models"]}
    assert states(memory(host)) == {workflows.UNET: "loaded", workflows.CLIP: "loaded", "AutoencoderKL": "loaded"}
    log_start = len(host.log_text())
    entry = host.wait(host.queue(with_fault(workflows.separate_txt2img(graph, prefix="oom"), "DisTorchTestRaiseOOM")))
    assert entry["status"]["status_str"] == "error" and "out of memory" in error_of(entry)["exception_message"]
    log = host.log_text()[log_start:]
    assert "Got an OOM, unloading all loaded models." in log
    assert "unload models (host call from execution.py" in log, log[-3000:]
    after = memory(host)
    assert [m["name"] for m in after["models"] if m["state"] == "loaded"] == [], "the retry needs the room"
    assert states(after) == {workflows.UNET: "retained"}, "the kept UNet stays in RAM, listed as retained"
    assert after["last_unload"]["mode"] == "host"
    # The retry: the kept UNet comes back from RAM, not from the file.
    log_start = len(host.log_text())
    host.run(workflows.separate_txt2img(loaders(), prefix="retry", seed=2))
    unet = {m["name"]: m for m in memory(host)["models"]}[workflows.UNET]
    assert unet["id"] == before[workflows.UNET]["id"] and unet["loaded_at"] == before[workflows.UNET]["loaded_at"]
    assert unet["state"] == "loaded"


def test_another_packs_purge_node_gets_the_hosts_meaning(clean):
    host = clean
    graph = loaders()
    host.run(workflows.separate_txt2img(graph, prefix="before-purge"))
    purge = {"1": graph["1"], "20": {"class_type": "DisTorchTestPurge", "inputs": {"model": ["1", 0], "seed": 1}}}
    host.run(purge)
    after = memory(host)
    assert states(after) == {workflows.UNET: "retained"}, "a purge takes everything off the devices"
    assert after["last_unload"]["mode"] == "host" and after["last_unload"]["caller"] == "__init__.py:run"


def test_a_keep_loaded_node_whose_inputs_change_holds_one_copy(clean):
    host = clean
    rss_seen = []
    for step, vram in enumerate((0.0, 0.01, 0.02, 0.03, 0.04, 0.05)):
        graph = loaders(virtual_vram_gb=vram, donor_device="cpu")
        host.run(workflows.separate_txt2img(graph, prefix=f"tweak{step}", seed=step))
        document = memory(host)
        unets = [m for m in document["models"] if m["name"] == workflows.UNET]
        assert len(unets) == 1, f"after change {step}: {len(unets)} copies of the UNet are held"
        rss_seen.append(document["ram"]["process_rss"])
    assert memory(host)["retention"]["used"]["models"] == 1
    # Manager's "Unload Models": the flagged CLIP goes, the one kept UNet stays.
    status, _ = host.request("POST", "/distorch/free", {"free_memory": True})
    assert status == 200
    assert [m["name"] for m in memory(host)["models"] if m["name"] == workflows.UNET] == [workflows.UNET]
    growth = (max(rss_seen[1:]) - rss_seen[1]) / rss_seen[1]
    assert growth < 0.10, f"RSS grew {growth:.0%} over five input changes: {rss_seen}"


def test_the_retention_budget_evicts_least_recently_used_and_reports_it(clean):
    host = clean
    status, body = host.request("POST", "/distorch/retention", {"max_models": 1})
    assert status == 200, body
    try:
        graph = loaders(clip_keep=True)  # two kept loads (UNet, CLIP), a budget of one
        host.run(workflows.separate_txt2img(graph, prefix="budget"))
        retention = memory(host)["retention"]
        assert retention["used"]["models"] == 1 and retention["budget"]["max_models"] == 1
        evicted = retention["recent_evictions"][0]
        assert evicted["label"] == f"{workflows.UNET} (unet)", "the UNet loaded first, so it was used least recently"
        assert "over the retention budget (1 models" in evicted["reason"]
        assert "retention budget: released" in host.log_text()
        status, body = host.request("POST", "/distorch/retention", {"max_models": -1})
        assert status == 400 and "'max_models' must be an integer from 0 to 1000, got -1" in body["error"]
        status, body = host.request("POST", "/distorch/retention", {"ram_percent": "lots"})
        assert status == 400 and "'ram_percent' must be int or float" in body["error"]
    finally:
        status, body = host.request("POST", "/distorch/retention", {"max_models": 6, "ram_percent": 50})
        assert status == 200, body


def test_a_failed_unload_stays_accounted_and_the_next_one_succeeds(clean):
    host = clean
    graph = loaders(unet_keep=False)
    host.run(with_fault(workflows.separate_txt2img(graph, prefix="broken"), "DisTorchTestBreakUnload"))
    since = time.time()
    status, body = host.request("POST", "/distorch/free", {"free_memory": False})
    assert status == 200 and body["status"] == "done", body
    last = body["last_unload"]
    assert last["failed"] == [f"{workflows.UNET} (unet)"] and last["at"] > since
    assert f"{workflows.CLIP} (clip)" in last["unloaded"]
    assert states(memory(host))[workflows.UNET] == "loaded", "ComfyUI must keep counting what it could not free"
    assert "unloading distorch-test-unet.safetensors (unet) failed" in host.log_text()
    status, body = host.request("POST", "/distorch/free", {"free_memory": False})
    assert status == 200 and body["last_unload"]["unloaded"] == [f"{workflows.UNET} (unet)"]
    assert workflows.UNET not in states(memory(host))


@pytest.fixture(scope="module")
def no_smart_memory(tmp_path_factory, model_cache):
    server = start_host(tmp_path_factory, model_cache, "host-no-smart-memory", ["--disable-smart-memory"],
                        env={"DISTORCH_RETAIN_MAX_MODELS": "3"})
    yield server
    server.stop()


def test_disable_smart_memory_unloads_after_each_prompt_and_reuses_kept_models_from_ram(no_smart_memory):
    host = no_smart_memory
    host.run(workflows.separate_txt2img(loaders(), prefix="nsm1"))
    document = memory(host)
    assert states(document) == {workflows.UNET: "retained"}, "--disable-smart-memory: nothing stays loaded"
    assert document["last_unload"]["mode"] == "host" and document["last_unload"]["caller"].startswith("execution.py")
    assert document["retention"]["budget"] == {**document["retention"]["budget"], "max_models": 3,
                                               "source": "environment"}
    first = {m["name"]: m for m in document["models"]}[workflows.UNET]
    host.run(workflows.separate_txt2img(loaders(), prefix="nsm2", seed=3))
    again = {m["name"]: m for m in memory(host)["models"]}[workflows.UNET]
    assert again["id"] == first["id"] and again["loaded_at"] == first["loaded_at"], "reloaded from the file"
    assert again["state"] == "retained"
    status, body = host.request("POST", "/distorch/retention", {"max_models": 1})
    assert status == 409 and "DISTORCH_RETAIN_MAX_MODELS" in body["error"]


def test_optional_inputs_left_out_or_sent_with_defaults_are_one_load(clean):
    """An API prompt from a saved workflow lacks the optional split inputs; the UI sends their
    defaults. Both are the same load: the kept model is reused, not read again."""
    host = clean
    without = loaders()
    for name in ("virtual_vram_gb", "donor_device", "allocation"):
        without["1"]["inputs"].pop(name, None)
    host.run(workflows.separate_txt2img(without, prefix="api-form"))
    first = {m["name"]: m for m in memory(host)["models"]}[workflows.UNET]
    status, _ = host.request("POST", "/distorch/free", {"free_memory": True})  # node cache reset
    assert status == 200
    with_defaults = loaders(virtual_vram_gb=0.0, donor_device="cpu", allocation="")
    log_start = len(host.log_text())
    host.run(workflows.separate_txt2img(with_defaults, prefix="ui-form"))
    assert "DisTorchUNETLoader: reusing the loaded model (keep_loaded), no file read" in host.log_text()[log_start:]
    unets = [m for m in memory(host)["models"] if m["name"] == workflows.UNET]
    assert len(unets) == 1 and unets[0]["loaded_at"] == first["loaded_at"]


def test_freed_bytes_are_never_negative(clean):
    host = clean
    host.run(workflows.separate_txt2img(loaders(unet_keep=False), prefix="freed"))
    status, body = host.request("POST", "/distorch/free", {})
    assert status == 200 and body["status"] == "done", body
    assert body["before"] and body["after"]
    assert all(value >= 0 for value in body["freed"].values()), body["freed"]
