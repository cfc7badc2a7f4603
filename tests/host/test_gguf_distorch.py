"""The DisTorch GGUF loaders beside ComfyUI-GGUF on the real host: the same model as ComfyUI-GGUF's
own loader, split with the quantized layers parked on the donor, and absent without ComfyUI-GGUF."""
import pytest

import workflows
from latents import saved_latent

pytestmark = pytest.mark.host

UNET = workflows.GGUF_UNETS[0]  # Q8_0


def graph(unet_node: dict, prefix: str) -> dict:
    loaders = workflows.separate_loaders("core")
    loaders["1"] = unet_node
    return workflows.separate_txt2img(loaders, seed=9, prefix=prefix)


def distorch_unet(**inputs) -> dict:
    return {"class_type": "DisTorchUnetLoaderGGUF",
            "inputs": {"unet_name": UNET, "compute_device": "cpu", "keep_loaded": False, **inputs}}


@pytest.fixture(scope="module")
def gguf_split_host(comfy_gguf):
    """The pack and ComfyUI-GGUF, with small modules allowed on the donor (comfy_gguf's
    DISTORCH_TINY_BYTES): the synthetic Q8_0 UNet's layers are all under the default 1 MiB that
    stays on the compute device."""
    assert comfy_gguf.env.get("DISTORCH_TINY_BYTES") == "65536"
    return comfy_gguf


def test_the_gguf_loaders_take_comfyui_ggufs_inputs_then_the_packs(comfy_gguf):
    info = comfy_gguf.object_info()
    for name, upstream in (("DisTorchUnetLoaderGGUF", "UnetLoaderGGUF"), ("DisTorchCLIPLoaderGGUF", "CLIPLoaderGGUF"),
                           ("DisTorchDualCLIPLoaderGGUF", "DualCLIPLoaderGGUF")):
        ours, theirs = info[name], info[upstream]
        required = ours["input_order"]["required"]
        assert required[:len(theirs["input_order"]["required"])] == theirs["input_order"]["required"]
        assert required[-2:] == ["compute_device", "keep_loaded"]
        assert ours["input_order"]["optional"] == ["virtual_vram_gb", "donor_device", "allocation"]
        for section in ("required", "optional"):
            for input_name, spec in ours["input"][section].items():
                assert spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
    assert UNET in info["DisTorchUnetLoaderGGUF"]["input"]["required"]["unet_name"][0]


def test_a_gguf_split_gives_the_same_latent_as_the_unsplit_gguf(gguf_split_host):
    host = gguf_split_host
    theirs = saved_latent(host, host.run(graph({"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": UNET}},
                                               "gguf-theirs")))
    unsplit = saved_latent(host, host.run(graph(distorch_unet(), "gguf-ours")))
    log_start = len(host.log_text())
    split = saved_latent(host, host.run(graph(distorch_unet(virtual_vram_gb=0.012, donor_device="cpu"),
                                              "gguf-split")))
    log = host.log_text()[log_start:]
    assert "DisTorchUnetLoaderGGUF '" + UNET + "': placement of" in log and "cpu (donor)" in log, log[-3000:]
    assert (unsplit == theirs).all(), "the DisTorch GGUF loader must build the same model as ComfyUI-GGUF's"
    assert (split == unsplit).all(), "a split must not change the result"
    models = {m["loader"]: m for m in host.get("/internal/memory")["models"]}
    assert models["DisTorchUnetLoaderGGUF"]["component"] == "unet"


def test_without_comfyui_gguf_the_gguf_loaders_are_absent_and_the_log_says_why(comfy):
    assert not any(name.endswith("GGUF") for name in comfy.object_info() if name.startswith("DisTorch"))
    assert "ComfyUI-GGUF is not installed, so the DisTorch GGUF loaders are not registered" in comfy.log_text()


def test_a_place_node_splits_comfyui_ggufs_own_model(gguf_split_host):
    host = gguf_split_host
    theirs = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": UNET}}
    plain = saved_latent(host, host.run(graph(theirs, "gguf-place-plain")))
    placed_graph = graph(theirs, "gguf-placed")
    placed_graph["11"] = {"class_type": "DisTorchPlaceModel", "inputs": {
        "model": ["1", 0], "compute_device": "cpu", "keep_loaded": False, "virtual_vram_gb": 0.012,
        "donor_device": "cpu"}}
    placed_graph["7"]["inputs"]["model"] = ["11", 0]
    log_start = len(host.log_text())
    placed = saved_latent(host, host.run(placed_graph))
    log = host.log_text()[log_start:]
    assert "DisTorchPlaceModel" in log and "cpu (donor)" in log, log[-3000:]
    assert (placed == plain).all()


def test_every_gguf_loader_has_a_help_page_naming_its_inputs(comfy_gguf):
    info = comfy_gguf.object_info()
    for name in ("DisTorchUnetLoaderGGUF", "DisTorchCLIPLoaderGGUF", "DisTorchDualCLIPLoaderGGUF"):
        status, body = comfy_gguf.request("GET", f"/extensions/comfyui-distorch/docs/{name}.md")
        assert status == 200, f"web/docs/{name}.md is missing"
        inputs = [i for section in info[name]["input"].values() for i in section]
        assert [i for i in inputs if f"`{i}`" not in body.decode()] == []


GGUF_COMPAT = {  # ComfyUI-MultiGPU's GGUF node types -> the widgets after ComfyUI-GGUF's own
    "UnetLoaderGGUFMultiGPU": ["device"],
    "UnetLoaderGGUFDisTorch2MultiGPU": ["compute_device", "virtual_vram_gb", "donor_device",
                                        "expert_mode_allocations", "eject_models"],
    "CLIPLoaderGGUFMultiGPU": ["device"],
    "CLIPLoaderGGUFDisTorch2MultiGPU": ["device", "virtual_vram_gb", "donor_device", "expert_mode_allocations",
                                        "eject_models"],
    "DualCLIPLoaderGGUFMultiGPU": ["device"],
    "DualCLIPLoaderGGUFDisTorch2MultiGPU": ["device", "virtual_vram_gb", "donor_device", "expert_mode_allocations",
                                            "eject_models"],
}


def test_comfyui_multigpus_gguf_node_types_take_their_saved_order(comfy_gguf):
    info = comfy_gguf.object_info()
    for name, own in GGUF_COMPAT.items():
        upstream = info[name.replace("DisTorch2MultiGPU", "").replace("MultiGPU", "")]
        order = info[name]["input_order"]
        theirs = upstream["input_order"]["required"]
        assert order["required"] == theirs, name
        assert [i for i in order.get("optional", []) if i not in upstream["input_order"].get("optional", [])] == own
        assert info[name]["category"] == "DisTorch/MultiGPU compatible"


def test_a_saved_gguf_distorch2_node_splits_with_the_same_result(gguf_split_host):
    host = gguf_split_host
    plain = saved_latent(host, host.run(graph({"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": UNET}},
                                              "gguf-compat-plain")))
    node = {"class_type": "UnetLoaderGGUFDisTorch2MultiGPU", "inputs": {
        "unet_name": UNET, "compute_device": "cpu", "virtual_vram_gb": 0.012, "donor_device": "cpu",
        "expert_mode_allocations": "", "eject_models": True}}
    log_start = len(host.log_text())
    split = saved_latent(host, host.run(graph(node, "gguf-compat-split")))
    assert "cpu (donor)" in host.log_text()[log_start:]
    assert (split == plain).all()
    models = {m["loader"]: m for m in host.get("/internal/memory")["models"]}
    assert models["UnetLoaderGGUFDisTorch2MultiGPU"]["flagged"], "eject_models on = flagged"
