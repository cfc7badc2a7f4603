"""ComfyUI-GGUF beside the pack on the real host: its own loader runs the synthetic .gguf UNets
(the baseline GGUF splits compare against), and GET /distorch/plan previews .gguf files from
their header."""
import time
import urllib.parse

import gguf
import pytest
import torch

import make_gguf
import workflows
from latents import saved_latent

pytestmark = pytest.mark.host

GiB = 2**30


def txt2img(unet_loaders, prefix):
    return workflows.separate_txt2img(unet_loaders, seed=5, prefix=prefix)


@pytest.fixture(scope="module")
def fp16_latent(comfy_gguf):
    """The same UNet from its safetensors file through the core loader (fp16 weights)."""
    return saved_latent(comfy_gguf, comfy_gguf.run(txt2img(workflows.separate_loaders("core"), "gguf-fp16")))


def qtype_counts(path):
    counts = {}
    for tensor in gguf.GGUFReader(path).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return counts


@pytest.mark.parametrize("unet", workflows.GGUF_UNETS)
def test_comfyui_gguf_loads_the_synthetic_file_and_samples_on_cpu(comfy_gguf, fp16_latent, unet):
    listed = comfy_gguf.object_info("UnetLoaderGGUF")["UnetLoaderGGUF"]["input"]["required"]["unet_name"][0]
    assert unet in listed
    latent = saved_latent(comfy_gguf, comfy_gguf.run(txt2img(workflows.gguf_loaders(unet), f"gguf-{unet}")))
    assert latent.shape == fp16_latent.shape and torch.isfinite(latent).all()
    # ComfyUI-GGUF's loader logs the types it read: the quantized types the file holds.
    counts = qtype_counts(comfy_gguf.base_dir / "models" / "diffusion_models" / unet)
    assert set(counts) - {"F16"}, counts
    assert "gguf qtypes: " + ", ".join(f"{k} ({v})" for k, v in counts.items()) in comfy_gguf.log_text()
    # The quantized UNet samples close to its fp16 original: Q8_0 within 2 %, Q4_0 within 25 %
    # (measured 0.7 % and 12.6 %; a wrong dequantization or key is off by 100 % or more).
    error = ((latent - fp16_latent).norm() / fp16_latent.norm()).item()
    assert 0 < error < (0.02 if "Q8_0" in unet else 0.25), error


def plan(host, **query):
    return host.get("/distorch/plan?" + urllib.parse.urlencode(query))


def test_plan_route_previews_a_gguf_file_at_its_quantized_sizes(comfy_gguf):
    unet = workflows.GGUF_UNETS[0]
    path = comfy_gguf.base_dir / "models" / "diffusion_models" / unet
    stored = sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)
    split = {"compute_device": "cpu", "virtual_vram_gb": 0.008, "donor_device": "cpu"}
    for prefix in ("", "/api"):
        body = comfy_gguf.get(f"{prefix}/distorch/plan?" + urllib.parse.urlencode({"file": unet, **split}))
        assert body["format"] == "gguf" and body["model_bytes"] == stored
        devices = {d["slot"]: d["bytes"] for d in body["devices"]}
        assert set(devices) == {"cpu", "cpu (donor)"} and sum(devices.values()) == stored
        assert 0 < devices["cpu (donor)"] <= 0.008 * GiB
    # The same UNet as safetensors: the same modules, each stored in fewer bytes.
    fp16 = {m["name"]: m["bytes"] for m in plan(comfy_gguf, file=workflows.UNET, **split)["modules"]}
    quantized = {m["name"]: m["bytes"] for m in body["modules"]}
    assert set(quantized) == set(fp16)
    assert all(quantized[name] <= fp16[name] for name in fp16) and stored < 0.65 * sum(fp16.values())
    # ComfyUI-GGUF's loader finds its files through the legacy 'unet' name too.
    assert plan(comfy_gguf, file=unet, folder="unet")["model_bytes"] == stored


def test_plan_route_reads_no_tensor_data_of_a_gguf_file(comfy_gguf):
    """A 60 GiB .gguf (sparse: its data is a hole) is planned as fast as the 16 MiB one: reading its
    data, even from a hole, would take seconds."""
    huge = comfy_gguf.base_dir / "models" / "diffusion_models" / "distorch-huge-Q8_0.gguf"
    if not huge.exists():
        make_gguf.write_declared(huge, [(f"blocks.{i}.weight", (16384, 16384), "Q8_0") for i in range(224)])
    if huge.stat().st_blocks * 512 > 64 << 20:
        pytest.skip(f"{huge.parent} does not keep sparse files")
    timings = {}
    for name in (workflows.GGUF_UNETS[0], huge.name, workflows.GGUF_UNETS[0], huge.name):
        started = time.perf_counter()
        body = plan(comfy_gguf, file=name, compute_device="cpu")
        timings[name] = time.perf_counter() - started
    assert body["model_bytes"] == 224 * (16384 * 16384 // 32 * 34) > 59 * GiB
    assert timings[huge.name] < timings[workflows.GGUF_UNETS[0]] + 1.0, timings


@pytest.mark.parametrize("query, status, words", [
    ({"folder": "checkpoints"}, 400, ["is a .gguf file", "diffusion_models", "not checkpoints"]),
    ({"weight_dtype": "fp8_e4m3fn"}, 400, ["weight_dtype", "does not apply to a .gguf file"]),
    ({"file": "damaged.gguf"}, 422, ["damaged.gguf", "could not be read as GGUF", "header ends early"]),
])
def test_plan_route_refuses_gguf_requests_it_cannot_answer(comfy_gguf, query, status, words):
    comfy_gguf.add_model_file("diffusion_models", "damaged.gguf", b"GGUF" + bytes(3))
    comfy_gguf.add_model_file("checkpoints", workflows.GGUF_UNETS[0], b"")  # found there, refused for the folder
    answered, body = comfy_gguf.request("GET", "/distorch/plan?" + urllib.parse.urlencode(
        {"file": workflows.GGUF_UNETS[0], **query}))
    assert answered == status, body
    for word in words:
        assert word in body["error"], body
