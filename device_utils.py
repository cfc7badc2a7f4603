"""Device inventory: which devices this machine has (asks torch and the backend packages).

The naming rules are pure and live in distorch/devices.py.
"""
from __future__ import annotations

import importlib.util

from .distorch.devices import (DEFAULT_DEVICE, DeviceNameError, canonical_device,  # noqa: F401
                               device_names)


def probe_device_counts() -> tuple[dict[str, int], bool]:
    """Ask torch (and the optional backend packages already installed) what is present."""
    import torch

    counts: dict[str, int] = {}
    if torch.cuda.is_available():
        counts["cuda"] = torch.cuda.device_count()
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        counts["xpu"] = xpu.device_count()
    for backend in ("npu", "mlu"):
        module = getattr(torch, backend, None)  # registered by torch_npu / torch_mlu when imported
        if module is not None and module.is_available():
            counts[backend] = module.device_count()
    if importlib.util.find_spec("torch_directml") is not None:
        import torch_directml

        counts["directml"] = torch_directml.device_count()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    return counts, has_mps


def available_devices() -> list[str]:
    counts, has_mps = probe_device_counts()
    return device_names(counts, has_mps)


def device_choices() -> list[str]:
    """What the device dropdowns list: ``default`` then every device this machine has."""
    return [DEFAULT_DEVICE] + available_devices()


def resolve_device(text: str, input_name: str = "device"):
    """A dropdown value -> ``torch.device``, or None for ``default`` (let the host choose)."""
    if str(text).strip().lower() == DEFAULT_DEVICE:
        return None
    name = canonical_device(text, available_devices(), input_name)
    import torch

    if name.startswith("directml"):
        import torch_directml

        return torch_directml.device(int(name.split(":")[1]))
    return torch.device(name)
