"""What a model or LoRA file holds, from its safetensors header alone (no weight is read). Pure:
neither torch nor ComfyUI (``modes/detection.py`` hands the shapes to the host's detection).

``safetensors.safe_open`` reads the header (it checks the JSON, the dtypes, the shapes and that the
data offsets cover the file) and gives every tensor's name, dtype and shape. A LoRA's base is read
from its cross-attention projections (the input width of ``attn2.to_k`` is the model's context
width: 768 SD1.x, 1024 SD2.x, 2048 SDXL).
"""
from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class BaseModel:
    """What the host detects: its model class (``SD15``, ``SDXL``, ...) and cross-attention width."""
    family: str | None          # None: the host does not recognise it
    context_dim: int | None
    kind: str                   # "checkpoint", "diffusion_model", "diffusers" or "unknown"

    @property
    def label(self) -> str:
        return self.family or "unknown"


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
