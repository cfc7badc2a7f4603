import pytest
import torch
from safetensors.torch import save_file

from distorch.logic.load_failure import explain_load_failure, guess_kind, read_keys


@pytest.mark.parametrize("keys, kind", [
    (["model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight"], "checkpoint"),
    (["decoder.conv_in.weight", "encoder.down.0.block.0.conv1.weight"], "VAE"),
    (["taesd_decoder.1.weight"], "VAE"),
    (["text_model.embeddings.token_embedding.weight"], "text encoder"),
    (["encoder.block.0.layer.0.SelfAttention.q.weight"], "text encoder"),
    (["lora_unet_input_blocks_1_1_proj_in.lora_up.weight"], "LoRA"),
    (["text_encoder.text_model.encoder.layers.0.q_proj.lora_A.weight"], "LoRA"),
    (["input_blocks.0.0.weight", "out.2.weight"], "diffusion model"),
    (["double_blocks.0.img_attn.qkv.weight"], "diffusion model"),
    (["something.else"], None),
])
def test_guess_kind(keys, kind):
    assert guess_kind(keys) == kind


def write_vae_like(path):
    save_file({"decoder.conv_in.weight": torch.zeros(8, 4, 3, 3), "post_quant_conv.weight": torch.zeros(4, 4, 1, 1)},
              str(path))


def test_wrong_kind_names_the_loader_to_use(tmp_path):
    path = tmp_path / "vae.safetensors"
    write_vae_like(path)
    message = explain_load_failure(str(path), "diffusion model", "unet_name", RuntimeError("no detect"))
    assert message.startswith("unet_name: 'vae.safetensors' looks like a VAE, not a diffusion model")
    assert "DisTorchVAELoader" in message and "no detect" in message


def test_truncated_file_is_named_as_such(tmp_path):
    path = tmp_path / "cut.safetensors"
    write_vae_like(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_keys(str(path))
    message = explain_load_failure(str(path), "VAE", "vae_name", RuntimeError("boom"))
    assert message.startswith("vae_name: 'cut.safetensors'") and "download or export it again" in message


def test_right_kind_but_failed_load_keeps_the_hosts_reason(tmp_path):
    path = tmp_path / "vae.safetensors"
    write_vae_like(path)
    message = explain_load_failure(str(path), "VAE", "vae_name", RuntimeError("shape mismatch"))
    assert message == "vae_name: could not load 'vae.safetensors' as a VAE: shape mismatch"
