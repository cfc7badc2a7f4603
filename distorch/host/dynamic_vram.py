"""DynamicVRAM (newer ComfyUI, comfy-aimdo; on by default on NVIDIA): detect it and get out of its
way. It builds models with ``ModelPatcherDynamic``, which streams weights itself, so a DisTorch
split cannot be layered on such a model. Where the host can build a plain ``ModelPatcher`` copy of
the model (``clone(disable_dynamic=True)``, the host's own way out of DynamicVRAM, used for hooks),
the split is applied to that copy; otherwise it is refused with one message saying what to do.
Never a half-applied plan. Pure: the host's ``comfy.model_patcher`` module is passed in."""
from __future__ import annotations

import logging

log = logging.getLogger("distorch.dynamic_vram")

MESSAGE = ("ComfyUI's DynamicVRAM is on (models are built with ModelPatcherDynamic, which moves weights "
           "itself), and DisTorch cannot get a plain copy of this model from ComfyUI (text encoders, or a ComfyUI "
           "without clone(disable_dynamic=True)), so it cannot split it. To split with virtual_vram_gb / "
           "allocation, start ComfyUI with --disable-dynamic-vram; or set "
           "virtual_vram_gb to 0 and leave allocation empty to let DynamicVRAM manage the weights.")
NOTICE = "dynamic_vram"  # the key of the one-time log line in its owner's notices


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


def report_once(model_patcher_module, notices: set | None) -> bool:
    """Log MESSAGE once per owner of ``notices`` (the runtime's; None: every time) if the host uses
    DynamicVRAM; returns whether it does."""
    active = host_uses_dynamic_vram(model_patcher_module)
    if active and (notices is None or NOTICE not in notices):
        if notices is not None:
            notices.add(NOTICE)
        log.warning("comfyui-distorch: %s", MESSAGE)
    return active


def static_copy(patcher, model_patcher_module):
    """The host's plain-ModelPatcher copy of a DynamicVRAM model (``clone(disable_dynamic=True)``
    rebuilds it from its file through ``cached_patcher_init``), or None where the host cannot make
    one. Patches and attachments come along, as with every clone."""
    if getattr(patcher, "cached_patcher_init", None) is None:
        return None
    try:
        copy = patcher.clone(disable_dynamic=True)
    except Exception as exc:  # an older clone() signature, no way to rebuild, the file gone
        log.warning("comfyui-distorch: ComfyUI could not build a non-dynamic copy of this model (%s: %s)",
                    type(exc).__name__, exc)
        return None
    if is_dynamic(copy, model_patcher_module):
        return None
    if getattr(copy, "parent", None) is patcher:
        copy.parent = None  # a model of its own, as a fresh load is: the dynamic one can be freed
    return copy
