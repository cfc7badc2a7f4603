"""Every patch comfyui-distorch makes to ``comfy.model_management`` lives here.

Each patch wraps the host's original function (kept on the wrapper as ``__wrapped__``), is
installed at most once, can be uninstalled, and checks the attribute it relies on first: a host
whose function is missing or has another shape gets one log line and keeps its own behaviour.

Patches (switch any off with ``DISTORCH_DISABLE_PATCHES=name,name``):
- ``device_override``: ``get_torch_device``, ``text_encoder_device`` and ``vae_device`` return the
  device a DisTorch loader node chose, but only inside that node's ``device_override`` block and
  only in the thread running it (a ContextVar, not a global). Outside such a block they return
  exactly what the host's originals return, so core-only workflows see no change.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

log = logging.getLogger("distorch.patches")

PATCH_MARKER = "__distorch_patch__"
# host function -> role whose chosen device it returns while an override is active
DEVICE_OVERRIDE_TARGETS = {
    "get_torch_device": "compute",
    "text_encoder_device": "text_encoder",
    "vae_device": "vae",
}
_NO_OVERRIDE: Mapping = MappingProxyType({})
_device_override: contextvars.ContextVar[Mapping] = contextvars.ContextVar(
    "distorch_device_override", default=_NO_OVERRIDE)


@dataclass
class InstallReport:
    patched: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why


def _host_module():
    import comfy.model_management

    return comfy.model_management


def disabled_patches() -> set[str]:
    raw = os.environ.get("DISTORCH_DISABLE_PATCHES", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


@contextlib.contextmanager
def device_override(*, compute=None, text_encoder=None, vae=None) -> Iterator[None]:
    """Make the host's device functions return these devices (None = host's choice) in this block."""
    chosen = {role: device for role, device in
              (("compute", compute), ("text_encoder", text_encoder), ("vae", vae)) if device is not None}
    token = _device_override.set(MappingProxyType(chosen))
    try:
        yield
    finally:
        _device_override.reset(token)


def _override_wrapper(original, role: str):
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        chosen = _device_override.get().get(role)
        if chosen is not None:
            return chosen
        return original(*args, **kwargs)

    setattr(wrapper, PATCH_MARKER, "device_override")
    return wrapper


def _takes_no_required_arguments(function) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    return all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in signature.parameters.values())


def is_patched(name: str, module=None) -> bool:
    module = module or _host_module()
    return hasattr(getattr(module, name, None), PATCH_MARKER)


def install(module=None) -> InstallReport:
    """Install every enabled patch once; calling it again changes nothing."""
    module = module or _host_module()
    report = InstallReport()
    if "device_override" in disabled_patches():
        report.skipped.update({name: "disabled by DISTORCH_DISABLE_PATCHES" for name in DEVICE_OVERRIDE_TARGETS})
        return report
    for name, role in DEVICE_OVERRIDE_TARGETS.items():
        current = getattr(module, name, None)
        if current is None or not callable(current):
            report.skipped[name] = "not found in this ComfyUI"
        elif hasattr(current, PATCH_MARKER):
            report.patched.append(name)  # already ours
        elif not _takes_no_required_arguments(current):
            report.skipped[name] = f"unexpected signature {inspect.signature(current)}"
        else:
            setattr(module, name, _override_wrapper(current, role))
            report.patched.append(name)
    for name, why in report.skipped.items():
        log.warning("comfyui-distorch: not patching comfy.model_management.%s (%s); "
                    "DisTorch loaders fall back to the host's device choice for it", name, why)
    return report


def uninstall(module=None) -> list[str]:
    """Restore the host's originals; returns the names restored.

    A wrapper that another extension has wrapped again cannot be removed without removing theirs:
    it is left in place and reported."""
    module = module or _host_module()
    restored = []
    for name in DEVICE_OVERRIDE_TARGETS:
        current = getattr(module, name, None)
        if current is None:
            continue
        if hasattr(current, PATCH_MARKER):
            setattr(module, name, current.__wrapped__)
            restored.append(name)
        elif _wraps_ours(current):
            log.warning("comfyui-distorch: comfy.model_management.%s was wrapped again by another "
                        "extension; leaving both in place", name)
    return restored


def _wraps_ours(function) -> bool:
    seen = 0
    while function is not None and seen < 32:
        if hasattr(function, PATCH_MARKER):
            return True
        function = getattr(function, "__wrapped__", None)
        seen += 1
    return False
