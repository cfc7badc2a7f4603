"""What a model or LoRA file is, from its safetensors header alone (no weight is read).

``safetensors.safe_open`` reads the header (it checks the JSON, the dtypes, the shapes and that the
data offsets cover the file) and gives every tensor's name, dtype and shape. Shape-only tensors
on the ``meta`` device are handed to the host's own detection (``comfy.model_detection``), so
every architecture the running ComfyUI knows is covered without a table of our own. A LoRA's base
is read from its cross-attention projections (the input width of ``attn2.to_k`` is the model's
context width: 768 SD1.x, 1024 SD2.x, 2048 SDXL).
"""
from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

try:  # the pack: modes/ sits beside distorch/
    from ..distorch.dtypes import TORCH_NAMES
except ImportError:  # modes imported on its own (unit tests put the repository root on sys.path)
    from distorch.dtypes import TORCH_NAMES

log = logging.getLogger("distorch.modes")

MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
# LoRA keys of the second cross-attention projection, in the naming schemes ComfyUI reads
_LORA_TO_K = re.compile(r"attn2[._]to_k(?:\.lora_down|\.lora_A|\.lora\.down|_lora\.down)\.weight$")


class HeaderError(ValueError):
    """Not a readable safetensors header; the message names the file and the next step."""


def read_header(path: str | Path) -> dict:
    """name -> {"dtype", "shape"} for every tensor (``__metadata__`` left out). The first 8 bytes
    (the header's length) are checked here only to say precisely what is wrong with a short file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            raw_length = handle.read(8)
    except OSError as exc:
        raise HeaderError(f"'{path}' cannot be read: {exc.strerror or exc}") from None
    if len(raw_length) < 8:
        raise HeaderError(f"'{path.name}' is {size} bytes: too short for a safetensors file; it is truncated or "
                          "not a model: export or download it again")
    (length,) = struct.unpack("<Q", raw_length)
    if length > MAX_HEADER_BYTES:
        raise HeaderError(f"'{path.name}' declares a {length:,}-byte header: not a safetensors file "
                          "(or a corrupt one); export or download it again")
    if 8 + length > size:
        raise HeaderError(f"'{path.name}' ends inside its header: truncated; export or download it again")
    try:
        with safe_open(path, framework="numpy") as handle:  # numpy: no torch needed to read a header
            return {name: {"dtype": piece.get_dtype(), "shape": list(piece.get_shape())}
                    for name in handle.keys() for piece in (handle.get_slice(name),)}
    except (SafetensorError, OSError) as exc:
        raise HeaderError(f"'{path.name}' has no valid safetensors header ({exc}); it is truncated, corrupt or "
                          "not a safetensors file: export or download it again") from None


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


@dataclass(frozen=True)
class BaseModel:
    """What the host detects: its model class (``SD15``, ``SDXL``, ...) and cross-attention width."""
    family: str | None          # None: the host does not recognise it
    context_dim: int | None
    kind: str                   # "checkpoint", "diffusion_model", "diffusers" or "unknown"

    @property
    def label(self) -> str:
        return self.family or "unknown"


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


def lora_context_dim(path: str | Path) -> int | None:
    """Cross-attention width a LoRA was trained for, or None when its keys do not say."""
    if not str(path).lower().endswith(SAFETENSORS_SUFFIXES):
        return None
    header = read_header(path)
    widths = {tuple(info.get("shape", ()))[-1] for name, info in header.items()
              if _LORA_TO_K.search(name) and len(info.get("shape", ())) == 2}
    return widths.pop() if len(widths) == 1 else None


def lora_mismatch(base: BaseModel, lora_width: int | None) -> str | None:
    """Why a LoRA cannot apply to ``base`` (None when it fits or nothing tells)."""
    if base.context_dim is None or lora_width is None or base.context_dim == lora_width:
        return None
    return (f"made for a model with {lora_width}-wide cross-attention, but the mode's model is "
            f"{base.label} ({base.context_dim})")
