"""Files for the modes tests: a model root with two checkpoints and LoRAs, and modes.yaml texts.

The checkpoints are hard links to the cached synthetic checkpoint (a copy where links cannot be
made), under two names, so that modes A and B load different files. ``sdxl-lora`` is a tiny LoRA
whose cross-attention width (2048) says SDXL: applied to the SD1.5 test model it must be skipped.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import workflows
from hostenv import link_or_copy

CHECKPOINT_A = "sd15/a.safetensors"
CHECKPOINT_B = "sd15/b.safetensors"
LORA = "loras/detail.safetensors"
SDXL_LORA = "loras/sdxl-lora.safetensors"


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A real safetensors file from (dtype, shape, raw bytes) triples (no torch needed)."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def sdxl_lora(path: Path, rank: int = 4) -> None:
    stem = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    zeros = lambda n: b"\0" * (2 * n)  # float16 zeros
    write_safetensors(path, {
        f"{stem}.lora_down.weight": ("F16", [rank, 2048], zeros(rank * 2048)),
        f"{stem}.lora_up.weight": ("F16", [640, rank], zeros(640 * rank)),
        f"{stem}.alpha": ("F32", [], struct.pack("<f", float(rank))),
    })


def make_model_root(root: Path, model_cache: Path) -> Path:
    checkpoint = model_cache / "checkpoints" / workflows.CHECKPOINT
    link_or_copy(checkpoint, root / CHECKPOINT_A)
    link_or_copy(checkpoint, root / CHECKPOINT_B)
    link_or_copy(model_cache / "loras" / "distorch-test-lora.safetensors", root / LORA)
    sdxl_lora(root / SDXL_LORA)
    return root


def modes_yaml(root: Path, steps_a: int = 3, extra: str = "", drop_a: bool = False) -> str:
    """A: checkpoint A, no LoRA; B: checkpoint B with the detail LoRA and the SDXL LoRA (skipped)."""
    mode_a = "" if drop_a else f"""
  mode-a:
    model: {CHECKPOINT_A}
    default_size: "64x64"
    default_steps: {steps_a}
    default_guidance: 5.0
    metadata: {{description: "plain"}}
"""
    return f"""model_root: {root}
default_mode: mode-b
cache: {{max_modes: 2, max_gb: 8}}
modes:{mode_a}
  mode-b:
    model: {CHECKPOINT_B}
    loras:
      - path: {LORA}
        strength: 1.0
        adapter_name: detail
      - {SDXL_LORA}
    default_size: "64x64"
    default_steps: 2
{extra}"""


def write_atomically(path: Path, text: str) -> None:
    """How editors save: a temporary file renamed over the original."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
