"""Device names, pure: which names exist for given per-backend counts, and what a user's text
means. Probing the machine happens in the pack's device_utils.py; this module takes its results
as arguments, so backends this machine lacks can be tested."""
from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import shown_by_name

DEFAULT_DEVICE = "default"
# Indexed backends in the order they are listed; "mps" and "cpu" take no index.
INDEXED_BACKENDS = ("cuda", "xpu", "npu", "mlu", "directml")
_DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda|xpu|npu|mlu|directml)(?::(\d+))?$")


@shown_by_name
class DeviceNameError(ValueError):
    """A device name that is malformed or not present on this machine."""


def device_names(counts: Mapping[str, int], has_mps: bool = False) -> list[str]:
    """``["cpu", "cuda:0", ...]`` from per-backend device counts."""
    names = ["cpu"]
    for backend in INDEXED_BACKENDS:
        names += [f"{backend}:{index}" for index in range(int(counts.get(backend, 0)))]
    if has_mps:
        names.append("mps")
    return names


def canonical_device(text: str, available: list[str], input_name: str = "device") -> str:
    """Normalise a user's device name (``CUDA``, ``cuda``, ``cuda:0`` ...) and check it exists.

    Returns the canonical name ("cuda" means "cuda:0"). Raises DeviceNameError naming the input,
    the bad value and the devices that exist."""
    cleaned = str(text).strip().lower()
    match = _DEVICE_PATTERN.match(cleaned)
    if not match:
        raise DeviceNameError(f"{input_name}: '{text}' is not a device name. Use one of: "
                          f"{', '.join([DEFAULT_DEVICE] + available)}.")
    backend, index = match.groups()
    if backend in ("cpu", "mps"):
        if index is not None:
            raise DeviceNameError(f"{input_name}: '{text}' takes no index; write '{backend}'.")
        name = backend
    else:
        name = f"{backend}:{index or 0}"
    if name not in available:
        raise DeviceNameError(f"{input_name}: device '{text}' is not present on this machine. "
                          f"Devices here: {', '.join(available)}. Pick one of them, or "
                          f"'{DEFAULT_DEVICE}' for the device ComfyUI would choose.")
    return name
