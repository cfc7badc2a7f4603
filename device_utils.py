"""Device inventory: which devices this machine has, by the names users type.

The pure part (``device_names``, ``parse_device_name``) takes counts as arguments so the backends
this machine lacks can be tested; ``probe_device_counts`` is the only place that asks torch.
"""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping

DEFAULT_DEVICE = "default"
# Indexed backends in the order they are listed; "mps" and "cpu" take no index.
INDEXED_BACKENDS = ("cuda", "xpu", "npu", "mlu", "directml")
_DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda|xpu|npu|mlu|directml)(?::(\d+))?$")


class DeviceError(ValueError):
    """A device name that is malformed or not present on this machine."""


def device_names(counts: Mapping[str, int], has_mps: bool = False) -> list[str]:
    """``["cpu", "cuda:0", ...]`` from per-backend device counts."""
    names = ["cpu"]
    for backend in INDEXED_BACKENDS:
        names += [f"{backend}:{index}" for index in range(int(counts.get(backend, 0)))]
    if has_mps:
        names.append("mps")
    return names


def parse_device_name(text: str, available: list[str], input_name: str = "device") -> str:
    """Normalise a user's device name (``CUDA``, ``cuda``, ``cuda:0`` ...) and check it exists.

    Returns the canonical name ("cuda" means "cuda:0"). Raises DeviceError naming the input,
    the bad value and the devices that exist."""
    cleaned = str(text).strip().lower()
    match = _DEVICE_PATTERN.match(cleaned)
    if not match:
        raise DeviceError(f"{input_name}: '{text}' is not a device name. Use one of: "
                          f"{', '.join([DEFAULT_DEVICE] + available)}.")
    backend, index = match.groups()
    if backend in ("cpu", "mps"):
        if index is not None:
            raise DeviceError(f"{input_name}: '{text}' takes no index; write '{backend}'.")
        name = backend
    else:
        name = f"{backend}:{index or 0}"
    if name not in available:
        raise DeviceError(f"{input_name}: device '{text}' is not present on this machine. "
                          f"Devices here: {', '.join(available)}. Pick one of them, or "
                          f"'{DEFAULT_DEVICE}' for the device ComfyUI would choose.")
    return name


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
    name = parse_device_name(text, available_devices(), input_name)
    import torch

    if name.startswith("directml"):
        import torch_directml

        return torch_directml.device(int(name.split(":")[1]))
    return torch.device(name)
