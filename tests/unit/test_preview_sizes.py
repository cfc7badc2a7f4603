"""The split preview plans a safetensors diffusion model at the width ComfyUI stores it in, as the
load does: the demo UNet is fp16 on disk and fp32 once loaded on a CPU (real host, in-process)."""

import pytest


MiB = 2**20
UNET = "distorch-test-unet.safetensors"


@pytest.fixture(scope="module")
def unet_path(synthetic_models):
    return str(synthetic_models / "diffusion_models" / UNET)


def test_the_header_at_the_stored_width_gives_the_loaded_models_sizes(mm, unet_path):
    import comfy.sd

    from distorch.host.split_loaded import main_dtype, stored_dtype
    from distorch.logic.dtypes import TORCH_BYTES
    from distorch.logic.module_sizes import header_tensors, modules_from_tensors, modules_of, weights_dtype

    tensors = header_tensors(unet_path)
    file_dtype, params = weights_dtype(tensors)
    assert file_dtype == "F16"
    stored = stored_dtype("cpu", file_dtype, params)
    assert stored == "float32"  # ComfyUI's unet_dtype on a CPU
    planned = {m.name: m.bytes for m in modules_from_tensors(tensors, "", TORCH_BYTES[stored])}

    patcher = comfy.sd.load_diffusion_model(unet_path)
    assert main_dtype(patcher.model) == stored
    loaded = {m.name.removeprefix("diffusion_model."): m.bytes for m in modules_of(patcher.model)}
    assert planned == loaded
    on_disk = sum(m.bytes for m in modules_from_tensors(tensors))
    assert sum(loaded.values()) == 2 * on_disk > 50 * MiB
