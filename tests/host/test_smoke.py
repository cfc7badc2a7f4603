import pytest
import workflows

pytestmark = pytest.mark.host


def test_pack_registers_its_loaders(comfy):
    info = comfy.object_info()
    for name in ("DisTorchUNETLoader", "DisTorchCLIPLoader", "DisTorchDualCLIPLoader",
                 "DisTorchVAELoader", "DisTorchCheckpointLoader"):
        assert info[name]["category"] == "DisTorch/loaders"


def test_checkpoint_runs(comfy):
    entry = comfy.run(workflows.txt2img(workflows.checkpoint_loader("distorch")))
    assert entry["outputs"][workflows.SAVE_IMAGE]["images"]


def test_one_startup_line_names_version_and_patches(comfy):
    import distorch

    nodes = sum(1 for info in comfy.object_info().values() if info.get("python_module", "").endswith("comfyui-distorch"))
    lines = [line for line in comfy.log_text().splitlines() if line.startswith("comfyui-distorch ")]
    assert lines == [f"comfyui-distorch {distorch.__version__}: {nodes} nodes; patched comfy.model_management: "
                     "get_torch_device, text_encoder_device, vae_device, unload_all_models, soft_empty_cache "
                     "(keep_loaded rule on POST /free); routes: memory, placement, modes, retention, queue"]
