"""Reading a diffusers-format folder before any weight (distorch/host/diffusers_folder.py), on small
fixture folders."""
import json

import pytest

from distorch.host.diffusers_folder import FolderError, read_layout

SD = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
      "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
      "safety_checker": [None, None]}


def folder(tmp_path, index=SD, files=("unet/diffusion_pytorch_model.safetensors",
                                      "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors")):
    root = tmp_path / "sd"
    root.mkdir()
    if index is not None:
        (root / "model_index.json").write_text(index if isinstance(index, str) else json.dumps(index))
    for relative in files:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x")
    return root


def test_a_complete_folder_names_the_files_the_host_reads(tmp_path):
    root = folder(tmp_path, files=("unet/diffusion_pytorch_model.safetensors",
                                   "unet/diffusion_pytorch_model.fp16.safetensors",
                                   "vae/diffusion_pytorch_model.bin", "text_encoder/model.safetensors",
                                   "text_encoder_2/model.safetensors"))
    layout = read_layout(root)
    assert layout.pipeline == "StableDiffusionPipeline"
    assert layout.weights["unet"].name == "diffusion_pytorch_model.fp16.safetensors"  # the host's first choice
    assert layout.weights["vae"].name == "diffusion_pytorch_model.bin"
    assert layout.text_encoders == ["text_encoder", "text_encoder_2"]


@pytest.mark.parametrize("index, files, words", [
    (None, (), ["has no model_index.json", "not a diffusers-format folder"]),
    ("{broken", (), ["could not be read as JSON", "download it again"]),
    ([1, 2], (), ["is not a JSON object"]),
    ({**SD, "transformer": ["diffusers", "FluxTransformer2DModel"], "_class_name": "FluxPipeline"}, (),
     ["FluxPipeline folder (transformer/)", "reads UNet folders only", "Load Diffusion Model (DisTorch)"]),
    (SD, ("vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"),
     ["'sd/unet/' has no weights", "download that part's weights again"]),
])
def test_a_folder_the_host_cannot_read_is_refused_with_what_to_do(tmp_path, index, files, words):
    with pytest.raises(FolderError) as caught:
        read_layout(folder(tmp_path, index, files))
    message = str(caught.value)
    assert message.startswith("model_path: ")
    for word in words:
        assert word in message, message
