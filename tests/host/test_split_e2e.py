"""DisTorch splits end to end through the real server (compute cpu; the donor is cpu too on this
machine, so weights stay in RAM but every offloaded layer runs through the per-forward cast)."""
import json
import re
import urllib.parse

import psutil
import pytest
import torch

import workflows
from comfy_host import PromptRejected, error_of
from latents import saved_latent

pytestmark = pytest.mark.host

LORA = "distorch-test-lora.safetensors"
# The test UNet is 26 MiB fp16 on disk, 52 MiB fp32 in RAM on a CPU host: 0.03 GiB (31 MiB) on
# the donor offloads most of its large layers.
SPLIT = {"virtual_vram_gb": 0.03, "donor_device": "cpu", "allocation": ""}


def unet_graph(prefix, seed=21, lora_strength=None, loader="DisTorchUNETLoader", **split):
    loaders = workflows.separate_loaders("distorch", compute_device="cpu")
    if loader == "UNETLoader":
        loaders["1"] = {"class_type": "UNETLoader", "inputs": {"unet_name": workflows.UNET, "weight_dtype": "default"}}
    else:
        loaders["1"]["inputs"].update(split)
    model = ("1", 0)
    if lora_strength is not None:
        loaders["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
            "model": ["1", 0], "lora_name": LORA, "strength_model": lora_strength}}
        model = ("20", 0)
    return workflows.txt2img(loaders, model=model, clip=("2", 0), vae=("3", 0), seed=seed, prefix=prefix)


def placed_counts(log_text):
    return [int(n) for n in re.findall(r"placed (\d+) modules \([\d.]+ MiB\) on donor devices", log_text)]


def latent_of(comfy, graph):
    return saved_latent(comfy, comfy.run(graph))


def test_split_unet_gives_the_same_latent_as_the_unsplit_run(comfy):
    before = len(comfy.log_text())
    split = latent_of(comfy, unet_graph("split-unet", **SPLIT))
    log = comfy.log_text()[before:]
    whole = latent_of(comfy, unet_graph("whole-unet"))
    assert torch.isfinite(split).all() and split.abs().max() > 0
    assert torch.equal(split, whole)
    assert "cpu (donor)" in log and "placement of" in log  # the plan table, once per load
    assert placed_counts(log) and placed_counts(log)[0] >= 5, log[-3000:]


def test_fraction_allocation_splits_and_matches(comfy):
    before = len(comfy.log_text())
    split = latent_of(comfy, unet_graph("fraction", seed=22, virtual_vram_gb=0.0, donor_device="cpu",
                                        allocation="0.5"))
    assert placed_counts(comfy.log_text()[before:]), comfy.log_tail()
    assert torch.equal(split, latent_of(comfy, unet_graph("fraction-whole", seed=22)))


def test_split_checkpoint_matches_the_core_checkpoint_loader(comfy):
    before = len(comfy.log_text())
    ours = latent_of(comfy, workflows.txt2img(workflows.checkpoint_loader(
        "distorch", compute_device="cpu", **SPLIT), seed=23, prefix="ckpt-split"))
    assert placed_counts(comfy.log_text()[before:]), comfy.log_tail()
    core = latent_of(comfy, workflows.txt2img(workflows.checkpoint_loader("core"), seed=23, prefix="ckpt-core"))
    assert torch.equal(ours, core)


def test_split_text_encoder_matches(comfy):
    def graph(extra, prefix):
        loaders = workflows.separate_loaders("distorch", compute_device="cpu")
        loaders["2"]["inputs"].update(extra)
        return workflows.separate_txt2img(loaders, seed=24, prefix=prefix)

    before = len(comfy.log_text())
    ours = latent_of(comfy, graph({"virtual_vram_gb": 0.2, "donor_device": "cpu"}, "clip-split"))
    assert placed_counts(comfy.log_text()[before:]), comfy.log_tail()
    assert torch.equal(ours, latent_of(comfy, graph({}, "clip-whole")))


def test_lora_on_a_split_model_matches_and_a_new_strength_does_not_reload(comfy):
    unsplit = latent_of(comfy, unet_graph("lora-core", seed=25, lora_strength=1.0, loader="UNETLoader"))
    split_entry = comfy.run(unet_graph("lora-split", seed=25, lora_strength=1.0, **SPLIT))
    assert torch.equal(saved_latent(comfy, split_entry), unsplit)

    loads_before = comfy.log_text().count("model_type EPS")  # the host logs this line per file load
    half_entry = comfy.run(unet_graph("lora-split-half", seed=25, lora_strength=0.5, **SPLIT))
    assert comfy.log_text().count("model_type EPS") == loads_before, "changing the strength reloaded the file"
    cached = [m[1] for m in half_entry["status"]["messages"] if m[0] == "execution_cached"]
    assert cached and "1" in cached[0]["nodes"]
    half = saved_latent(comfy, half_entry)
    assert not torch.equal(half, unsplit)
    assert torch.equal(half, latent_of(comfy, unet_graph("lora-core-half", seed=25, lora_strength=0.5,
                                                         loader="UNETLoader")))


def test_over_budget_allocation_fails_before_loading_anything(comfy):
    server = psutil.Process(comfy.process.pid)
    before_log = len(comfy.log_text())
    rss_before = server.memory_info().rss
    entry = comfy.wait(comfy.queue(unet_graph("over", seed=26, virtual_vram_gb=0.0, donor_device="cpu",
                                              allocation="cpu,8mb")))
    assert entry["status"]["status_str"] == "error"
    error = error_of(entry)
    assert error["node_id"] == "1"
    message = error["exception_message"]
    assert error["exception_type"] == "comfyui-distorch.SplitFailed", error  # not the pack folder's path
    assert "allocation: 'cpu,8mb' cannot hold this model" in message
    assert "(26.0 MiB)" in message and "8.0 MiB" in message and "give it more" in message
    log = comfy.log_text()[before_log:]
    assert "model_type EPS" not in log, "weights were loaded for an allocation that cannot hold them"
    assert server.memory_info().rss - rss_before < 20 * 2**20


@pytest.mark.parametrize("inputs, words", [
    ({"allocation": "cuda:3,2gb;cpu,*"}, ["allocation", "cuda:3", "Devices here: cpu"]),
    ({"allocation": "cpu,2xb"}, ["allocation", "unknown unit 'xb'", "at character 5"]),
    ({"virtual_vram_gb": -1.0}, ["virtual_vram_gb", "-1.0", "smaller than min of 0.0"]),
    ({"virtual_vram_gb": 1.0, "donor_device": "cuda:0"}, ["donor_device", "cuda:0", "not in ['cpu']"]),
])
def test_bad_split_inputs_are_refused_when_queued(comfy, inputs, words):
    with pytest.raises(PromptRejected) as rejected:
        comfy.queue(unet_graph("bad", **{**SPLIT, **inputs}))
    errors = rejected.value.body["node_errors"]["1"]["errors"]
    assert len(errors) == 1 and errors[0]["extra_info"]["input_name"] == words[0], errors  # one, on that input
    assert not errors[0]["details"].startswith(f"{words[0]} - {words[0]}:"), errors  # the name once
    text = json.dumps(errors)
    for word in words:
        assert word in text, text


def test_plan_route_previews_a_split_from_the_header(comfy):
    query = urllib.parse.urlencode({"file": workflows.UNET, "compute_device": "cpu", "virtual_vram_gb": 0.015,
                                    "donor_device": "cpu"})
    for prefix in ("", "/api"):
        plan = comfy.get(f"{prefix}/distorch/plan?{query}")
        assert plan["compute_device"] == "cpu" and plan["allocation"] == "cpu,*;cpu,0.015gb"
        devices = {d["slot"]: d for d in plan["devices"]}
        assert set(devices) == {"cpu", "cpu (donor)"}
        assert devices["cpu"]["bytes"] + devices["cpu (donor)"]["bytes"] == plan["model_bytes"]
        assert 0 < devices["cpu (donor)"]["bytes"] <= 0.015 * 2**30
        assert {m["device"] for m in plan["modules"]} == {"cpu"}
        assert "cpu (donor)" in plan["table"]
    ckpt = comfy.get("/distorch/plan?" + urllib.parse.urlencode(
        {"file": workflows.CHECKPOINT, "folder": "checkpoints", "allocation": "cpu,*"}))
    assert ckpt["model_bytes"] == plan["model_bytes"]  # the checkpoint's diffusion model only
    assert plan["requested"]["cpu (donor)"] == int(0.015 * 2**30) and "why" in plan
    # planned at the width the load stores the weights in: fp16 on disk, fp32 on a CPU, and said so
    assert plan["model_bytes"] > 50 * 2**20, plan["model_bytes"]
    assert plan["note"].startswith("Sizes as ComfyUI loads this float16 file on cpu: float32 (52.0 MiB; "
                                   "26.0 MiB on disk)."), plan["note"]


def test_plan_route_says_why_the_compute_share_differs_from_the_request(comfy):
    plan = comfy.get("/distorch/plan?" + urllib.parse.urlencode(
        {"file": workflows.UNET, "compute_device": "cpu", "allocation": "0.8", "donor_device": "cpu"}))
    kept = {d["slot"]: d["share"] for d in plan["devices"]}["cpu"]
    assert plan["requested"]["cpu"] == round(0.8 * plan["model_bytes"])
    # the share kept is below the 80 % asked, and the answer says by how much and why
    assert kept < 0.79 and plan["why"].startswith(f"80% requested on cpu, {round(100 * kept)}% kept: "), plan
    assert "reserved to run the offloaded layers" in plan["why"]


@pytest.mark.parametrize("query, words", [
    ({}, ["'file' is required"]),
    ({"file": "nope.safetensors"}, ["nope.safetensors", "models/diffusion_models"]),
    ({"file": workflows.UNET, "folder": "../etc"}, ["folder", "../etc"]),
    ({"file": workflows.UNET, "allocation": "cpu,3zb"}, ["unknown unit 'zb'"]),
    ({"file": workflows.UNET, "allocation": "cpu,1mb"}, ["cannot hold this model", "budget is 1.0 MiB"]),
    ({"file": workflows.UNET, "compute_device": "cuda:5"}, ["compute_device", "cuda:5"]),
])
def test_plan_route_answers_400_with_a_message(comfy, query, words):
    status, body = comfy.request("GET", "/distorch/plan?" + urllib.parse.urlencode(query))
    assert status == 400, body
    for word in words:
        assert word in body["error"], body
