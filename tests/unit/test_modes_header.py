"""Header-only base-model detection with the host's own detection (real comfy.model_detection).

SD1.5 comes from the cached synthetic files; SD2 and SDXL UNets are built on the meta device
from ComfyUI's classes and written as header-only files (no weights: detection must not need them).
Such a file is as long as its header declares, but its data region is a hole (a sparse file): nothing
is written there.
"""
import json
import struct

import pytest

import hostenv


@pytest.fixture(scope="module")
def comfy_host(mm):
    import comfy
    import comfy.model_detection  # noqa: F401
    import comfy.ops
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel

    return comfy, openaimodel


def header_only_file(path, state, prefix=""):
    """A safetensors header naming every tensor; the data it declares is a hole (nothing written)."""
    header, offset = {}, 0
    dtype_names = {"torch.float16": "F16", "torch.float32": "F32"}
    for name, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        header[prefix + name] = {"dtype": dtype_names[str(tensor.dtype)], "shape": list(tensor.shape),
                                 "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def meta_unet(comfy_host, **config):
    comfy, openaimodel = comfy_host
    import torch

    with torch.device("meta"):
        model = openaimodel.UNetModel(**config, operations=comfy.ops.disable_weight_init)
    return {k: v.to(torch.float16) for k, v in model.state_dict().items()}


def sd2_config():
    from make_models import sd15_unet_config

    return {**sd15_unet_config(1), "context_dim": 1024, "use_linear_in_transformer": True,
            "num_head_channels": 64, "num_heads": -1}


SDXL_CONFIG = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
    "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
    "channel_mult": [1, 2, 4], "transformer_depth_middle": 10, "use_linear_in_transformer": True,
    "context_dim": 2048, "num_head_channels": 64, "num_heads": -1,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "use_temporal_attention": False,
    "use_temporal_resblock": False,
}


def test_sd15_checkpoint_and_diffusion_model_from_their_headers(comfy_host):
    from modes.detection import detect_model

    models = hostenv.models_dir()
    checkpoint = detect_model(models / "checkpoints" / "distorch-test-sd15.safetensors")
    unet = detect_model(models / "diffusion_models" / "distorch-test-unet.safetensors")
    assert (checkpoint.family, checkpoint.context_dim, checkpoint.kind) == ("SD15", 768, "checkpoint")
    assert (unet.family, unet.context_dim, unet.kind) == ("SD15", 768, "diffusion_model")


def test_sd2_and_sdxl_detected_from_header_only_files(comfy_host, tmp_path):
    from modes.detection import detect_model

    sd2 = detect_model(header_only_file(tmp_path / "sd2.safetensors", meta_unet(comfy_host, **sd2_config()),
                                        "model.diffusion_model."))
    sdxl = detect_model(header_only_file(tmp_path / "sdxl.safetensors", meta_unet(comfy_host, **SDXL_CONFIG),
                                         "model.diffusion_model."))
    assert (sd2.family, sd2.context_dim) == ("SD20", 1024)
    assert (sdxl.family, sdxl.context_dim) == ("SDXL", 2048)
    assert sdxl.kind == "diffusion_model"  # UNet keys only, even under the checkpoint prefix
    written = (tmp_path / "sdxl.safetensors").stat()
    assert written.st_size > 1 << 30 and written.st_blocks * 512 < 1 << 20  # really header only: the rest a hole


def test_lora_width_and_mismatch():
    from modes.header import BaseModel, lora_context_dim, lora_mismatch

    lora = hostenv.models_dir() / "loras" / "distorch-test-lora.safetensors"
    assert lora_context_dim(lora) == 768
    sd15 = BaseModel("SD15", 768, "checkpoint")
    assert lora_mismatch(sd15, 768) is None
    assert lora_mismatch(sd15, None) is None
    assert "2048" in lora_mismatch(sd15, 2048) and "SD15" in lora_mismatch(sd15, 2048)
    assert lora_mismatch(BaseModel(None, None, "unknown"), 2048) is None


@pytest.mark.parametrize("content,needle", [(b"", "too short"), (struct.pack("<Q", 1 << 40), "header"),
                                            (struct.pack("<Q", 50) + b"{", "ends inside its header"),
                                            (struct.pack("<Q", 3) + b"abc", "no valid safetensors header"),
                                            (struct.pack("<Q", 61) + b'{"w": {"dtype": "F16", "shape": [2], '
                                             b'"data_offsets": [0, 4]}}' + b"\0\0", "truncated")])  # data cut short
def test_unreadable_headers_name_the_file(tmp_path, content, needle):
    from modes.header import HeaderError, read_header

    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(HeaderError, match=needle) as caught:
        read_header(path)
    assert "bad.safetensors" in str(caught.value)


def test_non_safetensors_files_are_unknown_without_reading(tmp_path):
    from modes.detection import detect_model

    path = tmp_path / "old.ckpt"
    path.write_bytes(b"not a zip")
    assert detect_model(path).family is None
