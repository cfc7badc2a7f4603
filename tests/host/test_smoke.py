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
