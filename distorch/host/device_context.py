"""Run a diffusion model with its own CUDA device current.

ComfyUI orders its offload copies against ``torch.cuda.current_stream()``, the *current* device's
stream (0.3.75's ``current_stream``, ``get_offload_stream``, ``sync_stream``). When a model runs on
``cuda:1`` while ``cuda:0`` is current, the compute stream of ``cuda:1`` never waits for the copies,
so a layer could run before its weights arrive. Newer ComfyUI sets the device itself
(``cuda_device_context``); for every version, the pack's diffusion models carry an APPLY_MODEL
wrapper (a host extension point, nothing copied) that makes the input's device current for the
step. On the current device, or off CUDA, it only calls through.
"""
from __future__ import annotations

import torch

WRAPPER_KEY = "distorch.device_context"


def run_on_input_device(executor, x, *args, **kwargs):
    device = getattr(x, "device", None)
    if device is not None and device.type == "cuda" and device.index is not None \
            and device.index != torch.cuda.current_device():
        with torch.cuda.device(device):
            return executor(x, *args, **kwargs)
    return executor(x, *args, **kwargs)


def add_device_context(patcher) -> bool:
    """Register the wrapper once on a ModelPatcher (clones keep it); False where the host has no
    APPLY_MODEL wrappers."""
    import comfy.patcher_extension as patcher_extension

    wrappers = getattr(patcher_extension, "WrappersMP", None)
    kind = getattr(wrappers, "APPLY_MODEL", None)
    if kind is None or not hasattr(patcher, "add_wrapper_with_key"):
        return False
    patcher.remove_wrappers_with_key(kind, WRAPPER_KEY)
    patcher.add_wrapper_with_key(kind, WRAPPER_KEY, run_on_input_device)
    return True
