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
    lines = [line for line in comfy.log_lines() if line.startswith("comfyui-distorch ")]
    assert lines == [f"comfyui-distorch {distorch.__version__}: {nodes} nodes; patched comfy.model_management: "
                     "get_torch_device, text_encoder_device, vae_device, unload_all_models, soft_empty_cache "
                     "(keep_loaded rule on POST /free); routes: memory, placement, modes, retention, queue, residency"]


def test_the_server_opens_a_database_of_its_own(comfy):
    """ComfyUI's default database is in its tree, which may not be writable; each server the pack
    starts (make run's too, tools/run_host.py) is given one in its base directory."""
    log = comfy.log_text()
    assert "Failed to initialize database" not in log and "unable to open database file" not in log, log[-3000:]
    assert (comfy.base_dir / "comfyui.db").is_file()
