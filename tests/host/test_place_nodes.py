"""Place nodes on the real host: a MODEL / CLIP / VAE from a core loader or another pack's loader
gets a device, a split and keep_loaded; the result is the loader's own, and nothing loads twice."""
import pytest

import hostenv
import workflows
from comfy_host import ComfyHost
from latents import saved_latent

pytestmark = pytest.mark.host

FAULT_NODES = hostenv.REPO_ROOT / "tests" / "host" / "fault_nodes"
SPLIT = {"virtual_vram_gb": 0.03, "donor_device": "cpu", "allocation": ""}


@pytest.fixture(scope="module")
def host(tmp_path_factory, model_cache):
    server = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-place"), model_cache, hostenv.REPO_ROOT,
                       extra_custom_nodes=(FAULT_NODES,))
    server.start()
    yield server
    server.stop()


def with_place(loaders: dict, model_keep=False, clip_keep=True, vae_keep=True, **split) -> dict:
    graph = dict(loaders)
    graph["11"] = {"class_type": "DisTorchPlaceModel", "inputs": {"model": ["1", 0], "compute_device": "cpu",
                                                                   "keep_loaded": model_keep, **split}}
    graph["12"] = {"class_type": "DisTorchPlaceCLIP", "inputs": {"clip": ["2", 0], "compute_device": "default",
                                                                  "keep_loaded": clip_keep}}
    graph["13"] = {"class_type": "DisTorchPlaceVAE", "inputs": {"vae": ["3", 0], "compute_device": "cpu",
                                                                 "keep_loaded": vae_keep}}
    return graph


def txt2img(graph: dict, model, clip, vae, prefix: str) -> dict:
    return workflows.txt2img(graph, model=model, clip=clip, vae=vae, seed=31, prefix=prefix)


@pytest.mark.parametrize("loader", ["core", "other pack"])
def test_placed_and_split_models_give_the_loaders_result_loaded_once(host, loader):
    loaders = workflows.separate_loaders("core")
    if loader == "other pack":
        loaders["1"] = {"class_type": "DisTorchTestOtherLoader", "inputs": {"unet_name": workflows.UNET}}
    plain = saved_latent(host, host.run(txt2img(loaders, ("1", 0), ("2", 0), ("3", 0), f"plain-{loader}")))
    host.request("POST", "/distorch/free", {"force": True})
    log_start = len(host.log_text())
    placed = saved_latent(host, host.run(txt2img(with_place(loaders, **SPLIT), ("11", 0), ("12", 0), ("13", 0),
                                                 f"placed-{loader}")))
    log = host.log_text()[log_start:]
    assert (placed == plain).all(), "placing and splitting must not change the result"
    assert "DisTorchPlaceModel 'distorch-test-unet.safetensors': placement of" not in log  # source: the model class
    assert "DisTorchPlaceModel 'BaseModel': placement of" in log and "cpu (donor)" in log, log[-3000:]
    assert log.count("model_type EPS") == 1, "the diffusion model file must be read once"
    models = {m["loader"]: m for m in host.get("/internal/memory")["models"]}
    assert set(models) >= {"DisTorchPlaceModel", "DisTorchPlaceCLIP", "DisTorchPlaceVAE"}
    assert models["DisTorchPlaceModel"]["flagged"] and not models["DisTorchPlaceCLIP"]["flagged"]
    # Manager's "Unload Models": exactly the flagged (placed) diffusion model goes.
    status, body = host.request("POST", "/distorch/free", {"free_memory": False})
    assert status == 200 and body["last_unload"]["unloaded"] == ["BaseModel (unet)"], body


def test_a_device_this_machine_lacks_is_refused_on_the_place_node(host):
    graph = with_place(workflows.separate_loaders("core"))
    graph["11"]["inputs"]["compute_device"] = "cuda:7"
    status, body = host.request("POST", "/prompt", {"prompt": txt2img(graph, ("11", 0), ("12", 0), ("13", 0), "bad")})
    assert status == 400
    errors = body["node_errors"]["11"]["errors"]
    assert len(errors) == 1 and "compute_device: 'cuda:7' not in ['default', 'cpu']" in errors[0]["details"], errors
