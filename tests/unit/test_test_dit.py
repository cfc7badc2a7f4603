"""The Flux-shaped test DiT (tools/make_models.py --dit-depth) that the GPU stream test and
bench_split.py's GPU rows sample: the host detects it as the Flux it was built from, and its size
follows the depth dial. Built on the ``meta`` device: shapes only, nothing allocated."""
import pytest
import torch

import hostenv
import make_models

GiB = 2**30


@pytest.fixture(scope="module")
def comfy(mm):
    return make_models.import_host(hostenv.comfyui_dir())


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_the_host_detects_the_test_dit_as_flux_at_each_depth(comfy, depth):
    state = make_models.meta_dit(comfy, torch, depth).state_dict()
    make_models.check_dit_detection(comfy, state, depth)  # raises naming the first mismatch
    size = sum(t.numel() for t in state.values()) * 2  # bf16
    assert abs(size / GiB - (0.1 + 0.9 * depth)) < 0.1, f"{size / GiB:.2f} GiB at depth {depth}"
    largest = max(t.numel() for t in state.values()) * 2
    assert largest >= 100 * 2**20, "the layers must be big enough that copies, not launches, dominate"


def test_a_wrong_shape_is_reported_not_generated(comfy):
    state = make_models.meta_dit(comfy, torch, 1).state_dict()
    state["txt_in.weight"] = torch.empty(1536, 4096, device="meta")  # the host reads the width from it
    with pytest.raises(RuntimeError, match="hidden_size"):
        make_models.check_dit_detection(comfy, state, 1)


def test_the_dit_has_its_own_file_name_per_depth():
    assert make_models.dit_file(3) == "diffusion_models/distorch-test-dit-d3.safetensors"
    assert make_models.dit_file(3) != make_models.unet_file(3)
