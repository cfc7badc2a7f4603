"""Generate small synthetic models that ComfyUI's real loaders accept (nothing is downloaded).

Shapes come from ComfyUI's own model classes built on the ``meta`` device, so the files match
whatever the host's detection expects; weights are seeded per tensor name, so a file is the same
on every machine. Run inside the host's virtual environment:

    python tools/make_models.py --comfyui PATH --out DIR [--unet-depth N] [--dit-depth N] [--skip-base]

Writes (skipping files that already exist; ``--skip-base`` writes only the ``--unet-depth`` /
``--dit-depth`` models):
    diffusion_models/distorch-test-unet[-dN].safetensors   SD1.5-detected UNet; N transformer blocks
    vae/distorch-test-vae.safetensors                       full SD VAE (84 M params)
    text_encoders/distorch-test-clip-l.safetensors          CLIP-L (123 M params)
    checkpoints/distorch-test-sd15.safetensors              UNet + CLIP + VAE, checkpoint prefixes
    loras/distorch-test-lora.safetensors                    rank-4 LoRA on the UNet's attention
    diffusion_models/distorch-test-unet-Q8_0.gguf, -Q4_0.gguf  the UNet quantized as ComfyUI-GGUF's
                                                            tools do it (tools/make_gguf.py)
    controlnet/distorch-test-controlnet.safetensors         SD1.5-detected ControlNet matching the UNet
    clip_vision/distorch-test-clip-vision-l.safetensors     ViT-L CLIP vision, detection keys only: it loads
                                                            (ComfyUI warns of missing keys) but the rest of
                                                            its weights are uninitialised, not for encoding
    diffusers/distorch-test-sd-xs/                          a diffusers-format folder (tools/make_diffusers.py),
                                                            its weights also linked as single files
    diffusion_models/distorch-test-dit-dN.safetensors       (--dit-depth N) Flux-detected DiT, bf16: N double-
                                                            and N single-stream blocks at width 3072, about
                                                            0.95 GiB per N (big layers, for GPU transfer tests)
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import zlib
from pathlib import Path

UNET_FILE = "diffusion_models/distorch-test-unet{suffix}.safetensors"
VAE_FILE = "vae/distorch-test-vae.safetensors"
CLIP_FILE = "text_encoders/distorch-test-clip-l.safetensors"
CHECKPOINT_FILE = "checkpoints/distorch-test-sd15.safetensors"
LORA_FILE = "loras/distorch-test-lora.safetensors"
CONTROLNET_FILE = "controlnet/distorch-test-controlnet.safetensors"
CLIP_VISION_FILE = "clip_vision/distorch-test-clip-vision-l.safetensors"
DIT_FILE = "diffusion_models/distorch-test-dit-d{depth}.safetensors"

CHECKPOINT_PREFIXES = {
    "unet": "model.diffusion_model.",
    "vae": "first_stage_model.",
    "clip": "cond_stage_model.transformer.",
}


def import_host(comfyui: Path):
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args  # parses no arguments when imported outside main.py

    comfy.cli_args.args.cpu = True  # never probe for a GPU while only building shapes
    import comfy.cldm.cldm
    import comfy.ops
    import comfy.sd1_clip
    import comfy.ldm.models.autoencoder
    import comfy.ldm.flux.model
    import comfy.ldm.modules.diffusionmodules.openaimodel
    import comfy.model_detection
    import comfy.utils
    return comfy


def unet_file(depth: int) -> str:
    """Path (under the models folder) of the test UNet with ``depth`` transformer blocks."""
    return UNET_FILE.format(suffix="" if depth == 1 else f"-d{depth}")


def dit_file(depth: int) -> str:
    """Path (under the models folder) of the test DiT with ``depth`` double- and single-stream blocks."""
    return DIT_FILE.format(depth=depth)


def sd15_unet_config(depth: int) -> dict:
    """Smallest UNet that ComfyUI detects as SD1.5: one level, no middle block.

    ``depth`` transformer blocks in the input SpatialTransformer is the size dial (about 4.5 MB
    fp16 per block)."""
    return {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "num_res_blocks": [1], "transformer_depth": [depth], "transformer_depth_output": [0, 0],
        "channel_mult": [1], "transformer_depth_middle": -2, "use_linear_in_transformer": False,
        "context_dim": 768, "use_temporal_resblock": False, "use_temporal_attention": False,
    }


def flux_dit_config(depth: int) -> dict:
    """A Flux-architecture DiT the host detects as Flux (guidance-distilled): ``depth`` double-stream
    and ``depth`` single-stream blocks. The width is Flux's own 3072: the host derives 24 heads of
    128 from it, so it is no dial. Its linear layers hold 19-66 M parameters each, large enough that
    moving them, not launching kernels, is what an offloaded step costs on a GPU."""
    return {
        "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 768,
        "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24,
        "depth": depth, "depth_single_blocks": depth, "axes_dim": [16, 56, 56], "theta": 10000,
        "patch_size": 2, "qkv_bias": True, "guidance_embed": True,
    }


def meta_dit(comfy, torch, depth: int):
    """The test DiT's module tree on the ``meta`` device (shapes only, no memory)."""
    config = flux_dit_config(depth)
    # Newer hosts (0.33.0) add a required FluxParams field; the detected Flux sets it empty.
    if "txt_ids_dims" in {field.name for field in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}:
        config["txt_ids_dims"] = []
    with torch.device("meta"):
        return comfy.ldm.flux.model.Flux(**config, operations=comfy.ops.disable_weight_init)


def check_dit_detection(comfy, state: dict, depth: int) -> None:
    """The host must read the generated tensors back as the Flux it was built from (shapes only:
    works on ``meta`` tensors too)."""
    config = flux_dit_config(depth)
    detected = comfy.model_detection.detect_unet_config(state, "")
    for key, value in config.items():
        if detected.get(key) != value:
            raise RuntimeError(f"host detects {key}={detected.get(key)!r}, generator built {value!r}")
    model_config = comfy.model_detection.model_config_from_unet_config(detected, state)
    if type(model_config).__name__ != "Flux":
        raise RuntimeError(f"host matches the generated DiT to {type(model_config).__name__}, not Flux")


def build_dit(comfy, torch, depth: int) -> dict:
    state = materialise(meta_dit(comfy, torch, depth), torch, torch.bfloat16)
    check_dit_detection(comfy, state, depth)
    return state


def seeded_tensor(name: str, shape, torch):
    """Deterministic, well-scaled values: norms at 1, biases at 0, weights ~ N(0, 1/fan_in)."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if len(shape) <= 1:
        fill = 1.0 if name.endswith("weight") or "scale" in name else 0.0
        return torch.full(tuple(shape), fill, dtype=torch.float32)
    fan_in = 1
    for extent in shape[1:]:
        fan_in *= extent
    return torch.randn(tuple(shape), generator=generator) / fan_in ** 0.5


def materialise(module, torch, dtype) -> dict:
    return {name: seeded_tensor(name, tensor.shape, torch).to(dtype)
            for name, tensor in module.state_dict().items()}


def build_unet(comfy, torch, depth: int) -> dict:
    config = sd15_unet_config(depth)
    with torch.device("meta"):
        model = comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel(
            **config, num_heads=8, num_head_channels=-1, operations=comfy.ops.disable_weight_init)
    state = materialise(model, torch, torch.float16)
    detected = comfy.model_detection.detect_unet_config(state, "")
    for key, value in config.items():
        if detected.get(key) != value:
            raise RuntimeError(f"host detects {key}={detected.get(key)!r}, generator built {value!r}")
    return state


def build_vae(comfy, torch) -> dict:
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
                "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
                "dropout": 0.0}
    with torch.device("meta"):
        model = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    return materialise(model, torch, torch.float16)


def build_clip_l(comfy, torch) -> dict:
    """HF-style CLIP-L keys (``text_model.*``), as a standalone text encoder file has them."""
    with torch.device("meta"):
        model = comfy.sd1_clip.SDClipModel(device="meta")
    state = {}
    for name, tensor in model.transformer.state_dict().items():
        state[name] = seeded_tensor(name, tensor.shape, torch).to(torch.float16)
    return state


def build_controlnet(comfy, torch) -> dict:
    """A ControlNet with the test UNet's shape (SD1.5 detection; the input hint is an RGB image), in
    the original checkpoint layout (``control_model.`` prefix), every key present."""
    config = {k: v for k, v in sd15_unet_config(1).items() if k not in ("out_channels", "transformer_depth_output")}
    with torch.device("meta"):
        model = comfy.cldm.cldm.ControlNet(**config, hint_channels=3, num_heads=8, num_head_channels=-1,
                                           operations=comfy.ops.disable_weight_init)
    state = {"control_model." + k: v for k, v in materialise(model, torch, torch.float16).items()}
    if comfy.model_detection.model_config_from_unet(state, "control_model.", True) is None:
        raise RuntimeError("the host does not detect the generated ControlNet")
    return state


def build_clip_vision_header(comfy, torch) -> dict:
    """The keys ComfyUI's CLIP vision loader detects a ViT-L by (position embedding, first and 23rd
    layer norm), shaped from the host's own config. A full ViT-L is 300 M parameters; tests only
    load it, so the other weights are left out (they stay uninitialised: never encode with it)."""
    import json
    from pathlib import Path

    config = json.loads((Path(comfy.ops.__file__).parent / "clip_vision_config_vitl.json").read_text())
    width = config["hidden_size"]
    positions = (config["image_size"] // config["patch_size"]) ** 2 + 1
    return {
        "vision_model.embeddings.position_embedding.weight": torch.zeros(positions, width, dtype=torch.float16),
        "vision_model.encoder.layers.0.layer_norm1.weight": torch.ones(width, dtype=torch.float16),
        "vision_model.encoder.layers.22.layer_norm1.weight": torch.ones(width, dtype=torch.float16),
    }


def build_lora(unet_state: dict, torch, rank: int = 4) -> dict:
    """Kohya-format LoRA over every attention projection of the UNet."""
    lora = {}
    for key, tensor in unet_state.items():
        if ".attn" not in key or not key.endswith(".weight") or tensor.ndim != 2:
            continue
        stem = "lora_unet_" + key[: -len(".weight")].replace(".", "_")
        out_features, in_features = tensor.shape
        lora[f"{stem}.lora_down.weight"] = seeded_tensor(stem + "down", (rank, in_features), torch).to(torch.float16)
        lora[f"{stem}.lora_up.weight"] = seeded_tensor(stem + "up", (out_features, rank), torch).to(torch.float16)
        lora[f"{stem}.alpha"] = torch.tensor(float(rank))
    return lora


def write(path: Path, state: dict, save_file) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial))
    partial.rename(path)
    print(f"[make_models] wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI checkout whose classes define the shapes")
    parser.add_argument("--out", type=Path, required=True, help="models folder (ComfyUI layout) to write into")
    parser.add_argument("--unet-depth", type=int, action="append", default=[],
                        help="also write a UNet with this many transformer blocks (size dial); repeatable")
    parser.add_argument("--dit-depth", type=int, action="append", default=[],
                        help="also write the Flux-shaped DiT with this many double- and single-stream blocks "
                             "(about 0.95 GiB each step); repeatable")
    parser.add_argument("--skip-base", action="store_true",
                        help="write only the --unet-depth / --dit-depth models, not the base set")
    args = parser.parse_args(argv)
    if any(depth < 1 for depth in args.unet_depth + args.dit_depth):
        parser.error("--unet-depth and --dit-depth take a block count of at least 1")

    comfy = import_host(args.comfyui)
    import torch
    from safetensors.torch import save_file

    out = args.out
    base_unet = None

    def unet(depth: int) -> dict:
        nonlocal base_unet
        if depth == 1:
            if base_unet is None:
                base_unet = build_unet(comfy, torch, 1)
            return base_unet
        return build_unet(comfy, torch, depth)

    targets = {} if args.skip_base else {
        unet_file(1): lambda: unet(1),
        VAE_FILE: lambda: build_vae(comfy, torch),
        CLIP_FILE: lambda: build_clip_l(comfy, torch),
        LORA_FILE: lambda: build_lora(unet(1), torch),
        CONTROLNET_FILE: lambda: build_controlnet(comfy, torch),
        CLIP_VISION_FILE: lambda: build_clip_vision_header(comfy, torch),
    }
    for depth in args.unet_depth:
        targets[unet_file(depth)] = lambda depth=depth: unet(depth)
    for depth in args.dit_depth:
        targets[dit_file(depth)] = lambda depth=depth: build_dit(comfy, torch, depth)
    for relative, build in targets.items():
        if not (out / relative).exists():
            write(out / relative, build(), save_file)
    if args.skip_base:
        return 0

    checkpoint = out / CHECKPOINT_FILE
    if not checkpoint.exists():
        from safetensors.torch import load_file
        state = {}
        for part, relative in (("unet", unet_file(1)), ("vae", VAE_FILE), ("clip", CLIP_FILE)):
            for key, tensor in load_file(str(out / relative)).items():
                state[CHECKPOINT_PREFIXES[part] + key] = tensor
        write(checkpoint, state, save_file)

    import make_diffusers  # beside this file (tools/)
    import make_gguf

    make_gguf.write_missing(out / unet_file(1), out / "diffusion_models")
    make_diffusers.write_missing(comfy, out, out / VAE_FILE, out / CLIP_FILE, seeded_tensor, write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
