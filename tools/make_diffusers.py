"""A synthetic diffusers-format SD model folder that ComfyUI's own diffusers loader accepts.

    diffusers/distorch-test-sd-xs/
        model_index.json                      StableDiffusionPipeline, its parts
        unet/config.json, unet/diffusion_pytorch_model.safetensors
        vae/config.json,  vae/diffusion_pytorch_model.safetensors
        text_encoder/config.json, text_encoder/model.safetensors

ComfyUI recognises a diffusers UNet only by comparing it with the layouts it knows, so the UNet
is the smallest of them, SD-XS (320/640/1280 channels, one res block per level, two transformer
blocks, no middle block, context 768; about 600 MiB in fp16). Its weights are built in ComfyUI's
own layout (seeded per tensor name, as tools/make_models.py does) and renamed to diffusers' names
with the inverse of the host's own mapping (``comfy.utils.unet_to_diffusers``). The VAE is the
synthetic SD VAE renamed to diffusers' names (the inverse of ``comfy.diffusers_convert``), the
text encoder the synthetic CLIP-L (already in the transformers layout diffusers uses). The same
three weight files are linked (not copied) into diffusion_models/, vae/ and text_encoders/, so
the single-file loaders read exactly the same weights.
"""
from __future__ import annotations

import json
from pathlib import Path

from hostenv import link_or_copy  # beside this file (tools/)

FOLDER = "diffusers/distorch-test-sd-xs"
SINGLE_FILES = {  # where the single-file loaders find the same weights (hard links)
    "unet/diffusion_pytorch_model.safetensors": "diffusion_models/distorch-test-sd-xs-unet.safetensors",
    "vae/diffusion_pytorch_model.safetensors": "vae/distorch-test-sd-xs-vae.safetensors",
    "text_encoder/model.safetensors": "text_encoders/distorch-test-sd-xs-clip-l.safetensors",
}
# The host's SD-XS layout (comfy/model_detection.py, unet_config_from_diffusers_unet: SD_XS).
SD_XS = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "model_channels": 320, "num_res_blocks": [1, 1, 1],
    "transformer_depth": [0, 1, 1], "channel_mult": [1, 2, 4], "transformer_depth_middle": -2,
    "use_linear_in_transformer": False, "context_dim": 768, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 1, 1, 1, 1], "use_temporal_attention": False, "use_temporal_resblock": False,
}
MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
    "_name_or_path": "comfyui-distorch/synthetic-sd-xs",  # no such repository: tests fetch from a local hub
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None], "feature_extractor": [None, None],
}
CONFIGS = {
    "unet": {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.30.0", "in_channels": 4,
             "out_channels": 4, "block_out_channels": [320, 640, 1280], "layers_per_block": 1,
             "cross_attention_dim": 768, "attention_head_dim": 64, "sample_size": 64,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
             "mid_block_type": None},
    "vae": {"_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0", "in_channels": 3, "out_channels": 3,
            "latent_channels": 4, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
            "sample_size": 512, "scaling_factor": 0.18215},
    "text_encoder": {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": 768,
                     "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
                     "max_position_embeddings": 77, "vocab_size": 49408, "projection_dim": 768},
}


def vae_to_diffusers(state: dict) -> dict:
    """The SD VAE (ComfyUI / LDM names) under diffusers' names: ``comfy.diffusers_convert``'s
    renaming run backwards, attention projections as the linear weights diffusers stores."""
    from comfy.diffusers_convert import vae_conversion_map

    attention = {"norm.": "group_norm.", "q.": "to_q.", "k.": "to_k.", "v.": "to_v.", "proj_out.": "to_out.0."}
    renamed = {}
    for key, tensor in state.items():
        new = key
        for sd_part, hf_part in reversed(vae_conversion_map):
            new = new.replace(sd_part, hf_part)
        marker = "mid_block.attentions.0."
        if marker in new:
            head, tail = new.split(marker)
            for sd_part, hf_part in attention.items():
                if tail.startswith(sd_part):
                    tail = hf_part + tail[len(sd_part):]
                    break
            new = head + marker + tail
            if tensor.ndim == 4 and tail.endswith("weight") and not tail.startswith("group_norm"):
                tensor = tensor.reshape(tensor.shape[0], tensor.shape[1])  # conv 1x1 -> linear
        renamed[new] = tensor
    return renamed


def build_unet(comfy, torch, seeded) -> dict:
    with torch.device("meta"):
        model = comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel(
            **SD_XS, operations=comfy.ops.disable_weight_init)
    ldm = {name: seeded(name, tensor.shape, torch).to(torch.float16) for name, tensor in model.state_dict().items()}
    to_ldm = comfy.utils.unet_to_diffusers(SD_XS)  # diffusers name -> ComfyUI name
    to_diffusers = {ldm_name: diffusers_name for diffusers_name, ldm_name in to_ldm.items()}
    missing = sorted(set(ldm) - set(to_diffusers))
    if missing:
        raise RuntimeError(f"no diffusers name for {missing[:5]}: the host's mapping changed")
    return {to_diffusers[name]: tensor for name, tensor in ldm.items()}


def write_missing(comfy, out: Path, vae_file: Path, clip_file: Path, seeded, write) -> Path:
    """Write the folder under ``out`` (what is missing of it) and the single-file links."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = out / FOLDER
    weights = {
        "unet/diffusion_pytorch_model.safetensors": lambda: build_unet(comfy, torch, seeded),
        "vae/diffusion_pytorch_model.safetensors": lambda: vae_to_diffusers(load_file(str(vae_file))),
    }
    for relative, build in weights.items():
        if not (folder / relative).exists():
            write(folder / relative, build(), save_file)
    link_or_copy(clip_file, folder / "text_encoder" / "model.safetensors")
    for part, config in CONFIGS.items():
        (folder / part).mkdir(parents=True, exist_ok=True)
        (folder / part / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=1) + "\n")
    for relative, single in SINGLE_FILES.items():
        link_or_copy(folder / relative, out / single)
    return folder
