"""Bad input through /prompt: a clear node error, the server keeps serving, the next prompt works."""
import shutil

import pytest

import workflows
from comfy_host import PromptRejected, error_of

pytestmark = pytest.mark.host


@pytest.fixture
def scratch_models(comfy):
    """Model files a test adds to the server's folders, removed afterwards (other tests compare
    the file lists with a server that never had them)."""
    added = []

    def add(folder, name, data):
        added.append(comfy.add_model_file(folder, name, data))

    yield add
    for path in added:
        path.unlink(missing_ok=True)


def unet_graph(unet_name=workflows.UNET, device="default", prefix="bad-input"):
    return workflows.separate_txt2img(
        workflows.separate_loaders("distorch", unet=unet_name, compute_device=device), prefix=prefix)


def assert_still_serving(comfy, seed):
    assert comfy.get("/system_stats")["system"]["comfyui_version"]
    entry = comfy.run(workflows.separate_txt2img(workflows.separate_loaders("distorch"), seed=seed,
                                                 prefix=f"after-error-{seed}"))
    assert entry["outputs"][workflows.SAVE_IMAGE]["images"]


def rejection(comfy, graph) -> dict:
    with pytest.raises(PromptRejected) as caught:
        comfy.queue(graph)
    return caught.value.body


def node_messages(body: dict, node_id: str) -> str:
    errors = body["node_errors"][node_id]["errors"]
    return " | ".join(f"{e['message']}: {e['details']}" for e in errors)


def execution_error(comfy, graph) -> dict:
    entry = comfy.wait(comfy.queue(graph))
    assert entry["status"]["status_str"] == "error"
    return error_of(entry)


def test_unknown_device_is_rejected_naming_the_input_and_the_devices(comfy):
    body = rejection(comfy, unet_graph(device="cuda:7"))
    message = node_messages(body, "1")
    assert "compute_device" in message and "cuda:7" in message
    # ComfyUI's own dropdown check: one error, on that input, listing the devices here.
    assert "Value not in list" in message and "not in ['default', 'cpu']" in message
    assert body["node_errors"]["1"]["class_type"] == "DisTorchUNETLoader"
    assert_still_serving(comfy, seed=31)


def test_malformed_device_is_rejected(comfy):
    graph = workflows.txt2img(workflows.checkpoint_loader("distorch", vae_device="gpu please"))
    message = node_messages(rejection(comfy, graph), "1")
    assert "vae_device" in message and "'gpu please' not in ['default', 'cpu']" in message
    assert_still_serving(comfy, seed=32)


def test_missing_file_is_rejected_like_the_core_loader(comfy):
    ours = node_messages(rejection(comfy, unet_graph("no-such-model.safetensors")), "1")
    core_graph = workflows.separate_txt2img(workflows.separate_loaders("core", unet="no-such-model.safetensors"))
    core = node_messages(rejection(comfy, core_graph), "1")
    assert "Value not in list" in ours and "no-such-model.safetensors" in ours
    assert ours == core
    assert_still_serving(comfy, seed=33)


def test_file_removed_while_queued_fails_in_history(comfy):
    """Validation passed, then the file went away before the loader ran (a user moved it)."""
    doomed = comfy.base_dir / "models" / "diffusion_models" / "soon-gone.safetensors"
    shutil.copyfile(comfy.models_source / "diffusion_models" / workflows.UNET, doomed)
    # Queue a longer prompt first so the file can be removed before ours runs (queue order).
    busy = comfy.queue(workflows.separate_txt2img(workflows.separate_loaders("core"), steps=60, seed=34,
                                                  prefix="busy"))
    victim = comfy.queue(unet_graph("soon-gone.safetensors", prefix="soon-gone"))
    doomed.unlink()
    assert comfy.wait(busy)["status"]["status_str"] == "success"
    entry = comfy.wait(victim)
    assert entry["status"]["status_str"] == "error"
    error = error_of(entry)
    assert error["node_type"] == "DisTorchUNETLoader"
    assert "soon-gone.safetensors" in error["exception_message"] and "not found" in error["exception_message"]
    assert_still_serving(comfy, seed=35)


def test_truncated_file_fails_with_a_clear_message(comfy, scratch_models):
    source = (comfy.models_source / "diffusion_models" / workflows.UNET).read_bytes()
    scratch_models("diffusion_models", "truncated.safetensors", source[: len(source) // 2])
    error = execution_error(comfy, unet_graph("truncated.safetensors", prefix="truncated"))
    assert error["node_type"] == "DisTorchUNETLoader"
    message = error["exception_message"]
    assert "unet_name" in message and "truncated.safetensors" in message
    assert "truncated or corrupt" in message and "download or export it again" in message
    assert_still_serving(comfy, seed=36)


def test_vae_file_given_to_the_unet_loader_names_the_right_loader(comfy, scratch_models):
    vae = (comfy.models_source / "vae" / workflows.VAE).read_bytes()
    scratch_models("diffusion_models", "actually-a-vae.safetensors", vae)
    error = execution_error(comfy, unet_graph("actually-a-vae.safetensors", prefix="wrong-kind"))
    assert error["node_type"] == "DisTorchUNETLoader"
    message = error["exception_message"]
    assert "looks like a VAE, not a diffusion model" in message
    assert "DisTorchVAELoader" in message
    assert_still_serving(comfy, seed=37)
