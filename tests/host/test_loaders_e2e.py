"""DisTorch loaders end to end through the HTTP API, compared with the core loaders."""
import numpy as np
import pytest
import torch

import workflows
from latents import saved_image, saved_latent

pytestmark = pytest.mark.host


def assert_same_latent(ours: torch.Tensor, core: torch.Tensor):
    assert ours.shape == core.shape == (1, 4, 8, 8)
    assert torch.isfinite(ours).all(), "sampler produced non-finite values"
    assert ours.abs().max() > 0, "latent is all zeros: nothing was sampled"
    torch.testing.assert_close(ours, core, rtol=1e-5, atol=1e-6)


def test_checkpoint_loader_matches_core(comfy):
    ours = comfy.run(workflows.txt2img(workflows.checkpoint_loader("distorch", compute_device="cpu"),
                                       seed=11, prefix="ckpt-distorch"))
    core = comfy.run(workflows.txt2img(workflows.checkpoint_loader("core"), seed=11, prefix="ckpt-core"))
    assert_same_latent(saved_latent(comfy, ours), saved_latent(comfy, core))
    image = saved_image(comfy, ours)
    assert image.shape == (64, 64, 3)
    assert np.array_equal(image, saved_image(comfy, core))


def test_separate_loaders_match_core(comfy):
    ours = comfy.run(workflows.separate_txt2img(workflows.separate_loaders("distorch", compute_device="cpu"),
                                                seed=12, prefix="sep-distorch"))
    core = comfy.run(workflows.separate_txt2img(workflows.separate_loaders("core"), seed=12, prefix="sep-core"))
    assert_same_latent(saved_latent(comfy, ours), saved_latent(comfy, core))
    assert saved_image(comfy, ours).shape == (64, 64, 3)


def test_default_device_matches_core(comfy):
    """'default' leaves every device choice to the host: same result as the core loader."""
    ours = comfy.run(workflows.txt2img(workflows.checkpoint_loader("distorch"), seed=13, prefix="dflt-distorch"))
    core = comfy.run(workflows.txt2img(workflows.checkpoint_loader("core"), seed=13, prefix="dflt-core"))
    assert_same_latent(saved_latent(comfy, ours), saved_latent(comfy, core))


def test_dual_clip_loader_behaves_like_core(comfy):
    """Two CLIP-L files as an SDXL pair: whatever the core node makes of it, ours makes the same."""
    def graph(class_type, extra):
        return {
            "1": {"class_type": class_type, "inputs": {
                "clip_name1": workflows.CLIP, "clip_name2": workflows.CLIP, "type": "sdxl", **extra}},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["1", 0]}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        }
    core = comfy.wait(comfy.queue(graph("DualCLIPLoader", {})))
    ours = comfy.wait(comfy.queue(graph("DisTorchDualCLIPLoader", {"compute_device": "cpu", "keep_loaded": False})))
    assert ours["status"]["status_str"] == core["status"]["status_str"]
    assert ours.get("outputs", {}).get("3") == core.get("outputs", {}).get("3")  # same encoded text


def test_lora_on_a_distorch_model_matches_core(comfy):
    """A core LoraLoader on top of each loader: same latent, and the LoRA really changes it."""
    def graph(kind, strength, prefix):
        loaders = workflows.checkpoint_loader(kind)
        loaders["20"] = {"class_type": "LoraLoader", "inputs": {
            "model": ["1", 0], "clip": ["1", 1], "lora_name": "distorch-test-lora.safetensors",
            "strength_model": strength, "strength_clip": strength}}
        return workflows.txt2img(loaders, model=("20", 0), clip=("20", 1), seed=14, prefix=prefix)

    ours = saved_latent(comfy, comfy.run(graph("distorch", 1.0, "lora-distorch")))
    core = saved_latent(comfy, comfy.run(graph("core", 1.0, "lora-core")))
    without = saved_latent(comfy, comfy.run(graph("distorch", 0.0, "lora-off")))
    assert_same_latent(ours, core)
    assert (ours - without).abs().max() > 1e-3, "the LoRA had no effect: its keys did not match the model"
