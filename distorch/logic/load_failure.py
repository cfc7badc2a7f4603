"""Turn a failed model load into an error that says what is wrong with the file and what to do.

Header reads only (modules.header_tensors, through ``safetensors.safe_open``): explaining a failure
never loads weights.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

# Key patterns that identify what a file holds, checked in order (first match wins).
_KIND_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("LoRA", (".lora_up.", ".lora_down.", ".lora_A.", ".lora_B.", "lora_unet_", "lora_te")),
    ("checkpoint", ("model.diffusion_model.",)),
    ("VAE", ("decoder.conv_in.", "first_stage_model.", "taesd_decoder.", "decoder.up_blocks.", "encoder.down.")),
    ("text encoder", ("text_model.", "encoder.block.", "transformer.text_model.", "cond_stage_model.", "model.layers.")),
    ("diffusion model", ("input_blocks.", "double_blocks.", "joint_blocks.", "transformer_blocks.", "blocks.0.")),
)

# What each loader expects, and which loader to use for each kind.
LOADER_FOR_KIND = {
    "checkpoint": "DisTorchCheckpointLoader (or Load Checkpoint)",
    "VAE": "DisTorchVAELoader (or Load VAE)",
    "text encoder": "DisTorchCLIPLoader (or Load CLIP)",
    "LoRA": "a LoRA loader",
    "diffusion model": "DisTorchUNETLoader (or Load Diffusion Model)",
}


def guess_kind(keys: Iterable[str]) -> str | None:
    """Best guess at what a state dict holds, from its key names alone."""
    keys = list(keys)
    for kind, markers in _KIND_MARKERS:
        if any(key.startswith(m) or m in key for key in keys for m in markers):
            return kind
    return None


def read_keys(path: str) -> list[str]:
    """Tensor names from a safetensors header; raises ValueError naming the file if unreadable."""
    from .module_sizes import header_tensors

    try:
        return [name for name, _, _ in header_tensors(path)]
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(describe_unreadable(path, exc)) from exc


def describe_unreadable(path: str, exc: BaseException) -> str:
    name = os.path.basename(path)
    size = os.path.getsize(path) if os.path.exists(path) else 0
    return (f"'{name}' ({size:,} bytes) is not a readable safetensors file: {exc}. "
            "It is probably truncated or corrupt (an interrupted download or copy): "
            "download or export it again.")


def explain_load_failure(path: str, expected_kind: str, input_name: str, exc: BaseException) -> str:
    """One message for a failed load: the input, the file, what it seems to be, the next step."""
    name = os.path.basename(path)
    if path.endswith((".safetensors", ".sft")):
        try:
            keys = read_keys(path)
        except ValueError as unreadable:
            return f"{input_name}: {unreadable}"
        found = guess_kind(keys)
        if found is not None and found != expected_kind:
            return (f"{input_name}: '{name}' looks like a {found}, not a {expected_kind}. "
                    f"Load it with {LOADER_FOR_KIND[found]}, or pick a {expected_kind} file here. "
                    f"(ComfyUI said: {exc})")
    return f"{input_name}: could not load '{name}' as a {expected_kind}: {exc}"
