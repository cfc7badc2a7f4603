"""DynamicVRAM (ComfyUI 0.15+, comfy-aimdo): detect it. It builds models with
``ModelPatcherDynamic`` and streams weights itself, so a DisTorch split cannot be layered on it:
the pack refuses the split with one message saying what to do, never runs a half-applied plan.
Pure: the host's ``comfy.model_patcher`` module is passed in."""
from __future__ import annotations

import logging

log = logging.getLogger("distorch.dynamic_vram")

MESSAGE = ("ComfyUI's DynamicVRAM is on (models are built with ModelPatcherDynamic, which moves weights "
           "itself), so DisTorch cannot split this model. To split with virtual_vram_gb / allocation, start "
           "ComfyUI with --disable-dynamic-vram; or set virtual_vram_gb to 0 and leave allocation empty to let "
           "DynamicVRAM manage the weights.")
_reported = set()


def dynamic_class(model_patcher_module):
    return getattr(model_patcher_module, "ModelPatcherDynamic", None)


def host_uses_dynamic_vram(model_patcher_module) -> bool:
    """True when the host builds its models with ModelPatcherDynamic (main.py swaps
    ``CoreModelPatcher`` for it when DynamicVRAM is on)."""
    dynamic = dynamic_class(model_patcher_module)
    core = getattr(model_patcher_module, "CoreModelPatcher", None)
    return dynamic is not None and isinstance(core, type) and issubclass(core, dynamic)


def is_dynamic(patcher, model_patcher_module) -> bool:
    dynamic = dynamic_class(model_patcher_module)
    return dynamic is not None and isinstance(patcher, dynamic)


def report_once(model_patcher_module) -> bool:
    """Log MESSAGE once per process if the host uses DynamicVRAM; returns whether it does."""
    active = host_uses_dynamic_vram(model_patcher_module)
    if active and "logged" not in _reported:
        _reported.add("logged")
        log.warning("comfyui-distorch: %s", MESSAGE)
    return active
