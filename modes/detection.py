"""A model file's (or diffusers folder's) base model, detected by the host: the header's tensors as
shape-only ``meta`` tensors handed to ``comfy.model_detection``, so every architecture the running
ComfyUI knows is covered without a table of our own. The header itself is read by ``header``."""
from __future__ import annotations

import logging
from pathlib import Path

from .header import SAFETENSORS_SUFFIXES, BaseModel, HeaderError, read_header

try:  # the pack: modes/ sits beside distorch/
    from ..distorch.logic.dtypes import TORCH_NAMES
except ImportError:  # modes imported on its own (unit tests put the repository root on sys.path)
    from distorch.logic.dtypes import TORCH_NAMES

log = logging.getLogger("distorch.modes")


def shape_only_state_dict(header: dict) -> dict:
    """The header as a state dict of meta tensors (shapes and dtypes, no storage)."""
    import torch

    state = {}
    for name, info in header.items():
        dtype = getattr(torch, TORCH_NAMES.get(str(info.get("dtype")), "float32"), torch.float32)
        try:
            state[name] = torch.empty(tuple(info.get("shape", ())), dtype=dtype, device="meta")
        except RuntimeError as exc:  # a shape whose size overflows 64 bits: a corrupt file
            raise HeaderError(f"tensor '{name}' has an impossible shape {info.get('shape')} ({exc}); "
                              "the file is corrupt: export or download it again") from None
    return state


# where ComfyUI's diffusers loader finds a folder's UNet (comfy/diffusers_load.py), safetensors only
DIFFUSERS_UNET_FILES = ("unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors")


def detect_diffusers_folder(folder: Path) -> BaseModel:
    """A diffusers-format folder's base model, from its UNet's header (the host's diffusers
    detection on shapes only)."""
    unet = next((Path(folder) / name for name in DIFFUSERS_UNET_FILES if (Path(folder) / name).is_file()), None)
    if unet is None:
        return BaseModel(None, None, "diffusers")
    state = shape_only_state_dict(read_header(unet))
    import comfy.model_detection as detection

    try:
        config = detection.model_config_from_diffusers_unet(state)
    except Exception as exc:
        log.debug("diffusers detection of %s failed on shapes only: %s", unet, exc)
        config = None
    if config is None:
        return BaseModel(None, None, "diffusers")
    context = (getattr(config, "unet_config", {}) or {}).get("context_dim")
    return BaseModel(type(config).__name__, int(context) if isinstance(context, int) else None, "diffusers")


def detect_model(path: str | Path) -> BaseModel:
    """Detect the base model of a checkpoint or diffusion-model file (or a diffusers-format
    folder) from its header."""
    if Path(path).is_dir():
        return detect_diffusers_folder(Path(path))
    if not str(path).lower().endswith(SAFETENSORS_SUFFIXES):
        return BaseModel(None, None, "unknown")
    header = read_header(path)
    state = shape_only_state_dict(header)
    import comfy.model_detection as detection

    # As the host's loaders do: a checkpoint's UNet sits under a prefix; a bare diffusion model
    # file has its keys at the top (load_diffusion_model_state_dict strips the prefix if present).
    prefix = detection.unet_prefix_from_state_dict(state)
    under_prefix = sum(1 for key in state if key.startswith(prefix))
    if under_prefix == 0:
        prefix = ""
    kind = "checkpoint" if prefix and under_prefix < len(state) else "diffusion_model"
    try:
        config = detection.model_config_from_unet(state, prefix)
    except Exception as exc:  # the host's detection may touch values on exotic files
        log.debug("detection of %s failed on shapes only: %s", path, exc)
        config = None
    if config is None:
        return BaseModel(None, None, kind)
    unet_config = getattr(config, "unet_config", {}) or {}
    context = unet_config.get("context_dim")
    return BaseModel(type(config).__name__, int(context) if isinstance(context, int) else None, kind)
