"""Installing the pack changes nothing for workflows built from core nodes only."""
import numpy as np
import pytest
import torch

import workflows
from multigpu_order import ORDER
from latents import saved_image, saved_latent

pytestmark = pytest.mark.host

PACK_NODES = {"DisTorchUNETLoader", "DisTorchCLIPLoader", "DisTorchDualCLIPLoader",
              "DisTorchVAELoader", "DisTorchCheckpointLoader", "DisTorchDiffusersLoader", "DisTorchModeSwitch",
              "DisTorchPlaceModel", "DisTorchPlaceCLIP", "DisTorchPlaceVAE", *ORDER}


def test_core_workflow_output_identical_with_and_without_pack(comfy, comfy_core):
    graph = workflows.txt2img(workflows.checkpoint_loader("core"), seed=21, steps=4, prefix="core-only")
    with_pack = comfy.run(graph)
    without_pack = comfy_core.run(graph)
    assert torch.equal(saved_latent(comfy, with_pack), saved_latent(comfy_core, without_pack))
    assert np.array_equal(saved_image(comfy, with_pack), saved_image(comfy_core, without_pack))


def test_core_node_definitions_identical_with_and_without_pack(comfy, comfy_core):
    for host in (comfy, comfy_core):
        host.prepare()  # link models generated after either server started (benchmarks add some)
        # The first /object_info creates input/3d (Load3D's INPUT_TYPES) after the dataset nodes
        # listed input/'s subfolders: compare what both list once that has happened on both.
        host.object_info()
    ours, core = comfy.object_info(), comfy_core.object_info()
    assert set(ours) - set(core) == PACK_NODES
    changed = [name for name in core if ours.get(name) != core[name]]
    assert changed == [], (f"core node definitions changed by the pack: {changed}; first difference: "
                           + "; ".join(f"{name}{first_difference(ours.get(name), core[name])}" for name in changed))


def first_difference(ours, core, path: str = "") -> str:
    """Where two object_info entries first differ, and the two values there (cut short)."""
    if type(ours) is not type(core):
        return f"{path}: {str(ours)[:120]!r} vs {str(core)[:120]!r}"
    if isinstance(ours, dict):
        for key in sorted(set(ours) | set(core), key=str):
            if ours.get(key) != core.get(key):
                return first_difference(ours.get(key), core.get(key), f"{path}/{key}")
    if isinstance(ours, list):
        if len(ours) != len(core):
            return f"{path}: {len(ours)} items vs {len(core)}: {str(ours)[:200]!r} vs {str(core)[:200]!r}"
        for index, (a, b) in enumerate(zip(ours, core)):
            if a != b:
                return first_difference(a, b, f"{path}[{index}]")
    return f"{path}: {str(ours)[:120]!r} vs {str(core)[:120]!r}"
