"""DisTorchDiffusersLoader on a real ComfyUI server: a synthetic diffusers-format folder
(tools/make_diffusers.py) loads through the host's own diffusers loader, splits and runs, giving
the same latent as the single-file loaders on the same weights; a folder missing a config either
fetches it from a hub (a local imitation, HF_ENDPOINT) or, offline, fails before reading weights,
naming the file and the command."""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import torch

import hostenv
import workflows
from comfy_host import ComfyHost, PromptRejected
from hub_server import FakeHub
from latents import saved_latent

pytestmark = pytest.mark.host
FOLDER = "distorch-test-sd-xs"
REPO = "comfyui-distorch/synthetic-sd-xs"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, model_cache):
    source = model_cache / "diffusers" / FOLDER
    with FakeHub(tmp_path_factory.mktemp("hub")) as fake:
        for relative in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json"):
            fake.add_file(REPO, relative, (source / relative).read_bytes())
        fake.add_file(REPO, "unet/diffusion_pytorch_model.safetensors", b"\0" * 1024)  # never to be asked for
        yield fake


@pytest.fixture(scope="module")
def host(tmp_path_factory, model_cache, hub):
    server = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-diffusers"), model_cache,
                       hostenv.REPO_ROOT, env={"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"})
    server.start()
    yield server
    server.stop()


def sample(model, clip, vae, seed=5, prefix="diffusers") -> dict:
    return {
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": clip}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": model, "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0], "seed": seed,
            "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        workflows.SAVE_LATENT: {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": prefix}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": vae}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


def folder_loader(model_path=FOLDER, **inputs) -> dict:
    return {"class_type": "DisTorchDiffusersLoader", "inputs": {
        "model_path": model_path, "compute_device": "cpu", "clip_device": "default", "vae_device": "default",
        "keep_loaded": False, **inputs}}


def test_the_folder_runs_split_and_matches_the_single_file_loaders(host):
    split = {"1": folder_loader(virtual_vram_gb=0.6, donor_device="cpu"),
             **sample(["1", 0], ["1", 1], ["1", 2], prefix="folder")}
    mark = len(host.log_text())
    folder_latent = saved_latent(host, host.run(split))
    log = host.log_text()[mark:]
    assert "DisTorchDiffusersLoader" in log and "cpu (donor)" in log, log[-3000:]  # the split's plan table
    singles = {
        "1": {"class_type": "DisTorchUNETLoader", "inputs": {
            "unet_name": "distorch-test-sd-xs-unet.safetensors", "weight_dtype": "default", "compute_device": "cpu",
            "keep_loaded": False}},
        "5": {"class_type": "DisTorchCLIPLoader", "inputs": {
            "clip_name": "distorch-test-sd-xs-clip-l.safetensors", "type": "stable_diffusion",
            "compute_device": "default", "keep_loaded": False}},
        "6": {"class_type": "DisTorchVAELoader", "inputs": {
            "vae_name": "distorch-test-sd-xs-vae.safetensors", "compute_device": "default", "keep_loaded": False}},
        **sample(["1", 0], ["5", 0], ["6", 0], prefix="singles")}
    single_latent = saved_latent(host, host.run(singles))
    assert torch.isfinite(folder_latent).all()
    assert torch.equal(folder_latent, single_latent)


def partial_folder(host, name: str, drop: tuple[str, ...]) -> Path:
    """A copy of the synthetic folder in this server's models/diffusers (weights linked), without ``drop``."""
    source = Path(hostenv.models_dir()) / "diffusers" / FOLDER
    target = host.base_dir / "models" / "diffusers" / name
    for item in source.rglob("*"):
        relative = item.relative_to(source).as_posix()
        if item.is_dir() or relative in drop:
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        if item.suffix == ".json":
            shutil.copyfile(item, target / relative)
        else:
            (target / relative).symlink_to(item.resolve())
    return target


def test_offline_a_missing_config_fails_before_any_weight_naming_the_file_and_command(host, hub):
    name = f"offline-{uuid.uuid4().hex[:6]}"
    folder = partial_folder(host, name, drop=("vae/config.json",))
    before = len(hub.requests)
    status, body = host.request("POST", "/prompt", {"prompt": {"1": folder_loader(name, offline=True),
                                                               **sample(["1", 0], ["1", 1], ["1", 2])}})
    assert status == 200, body  # the folder is in the list; the check runs when the node runs
    entry = host.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    (error,) = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    message = error["exception_message"]
    assert "vae/config.json" in message and REPO in message and "hf download" in message, message
    assert len(hub.requests) == before  # offline: nothing was asked of the hub
    assert not (folder / "vae" / "config.json").exists()


def test_online_only_the_missing_configs_are_fetched_then_it_runs(host, hub):
    name = f"online-{uuid.uuid4().hex[:6]}"
    folder = partial_folder(host, name, drop=("unet/config.json", "vae/config.json"))
    before = len(hub.requests)
    host.run({"1": folder_loader(name), **sample(["1", 0], ["1", 1], ["1", 2], prefix="online")})
    asked = sorted({r.file for r in hub.requests[before:] if r.file})
    assert asked == ["unet/config.json", "vae/config.json"], asked  # never a weight file
    assert json.loads((folder / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKL"


def test_a_transformer_folder_is_refused_with_what_to_do_instead(host):
    name = f"flux-{uuid.uuid4().hex[:6]}"
    folder = host.base_dir / "models" / "diffusers" / name
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline",
                                                         "transformer": ["diffusers", "FluxTransformer2DModel"]}))
    (folder / "transformer" / "config.json").write_text("{}")
    status, body = host.request("POST", "/prompt", {"prompt": {"1": folder_loader(name, offline=True),
                                                               **sample(["1", 0], ["1", 1], ["1", 2])}})
    entry = host.wait(body["prompt_id"])
    (error,) = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert "FluxPipeline" in error["exception_message"] and "Load Diffusion Model (DisTorch)" in \
        error["exception_message"], error["exception_message"]


def test_an_unknown_folder_is_refused_by_comfyuis_own_list_check(host):
    with pytest.raises(PromptRejected) as rejected:
        host.queue({"1": folder_loader("no-such-folder"), **sample(["1", 0], ["1", 1], ["1", 2])})
    errors = rejected.value.body["node_errors"]["1"]["errors"]
    assert len(errors) == 1 and errors[0]["extra_info"]["input_name"] == "model_path", errors
