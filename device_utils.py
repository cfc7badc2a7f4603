"""Device inventory and memory readings: which devices this machine has, how full each is, and
how to give memory back (asks torch, NVML, psutil and the backend packages).

The naming rules are pure and live in distorch/logic/devices.py.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import sys
import threading

from .distorch.logic.devices import (DEFAULT_DEVICE, DeviceNameError, canonical_device,  # noqa: F401
                               device_names)
from .distorch.logic.memory_report import DeviceMemory, RamReading, change_line
from .distorch.logic.memory_report import snapshot_line as memory_snapshot_line


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


# ---- memory readings -----------------------------------------------------------------------
# Totals and free memory come from NVML for NVIDIA GPUs (cheap, no CUDA context needed), from
# the torch backend's mem_get_info otherwise, and from psutil for RAM. Backends are passed in as
# objects with torch's API so machines without them can be tested with stand-ins.

log = logging.getLogger("distorch.devices")


class NvmlReader:
    """NVML through nvidia-ml-py, initialised on first use; ``None`` readings when unavailable."""

    def __init__(self, nvml_module=None):
        self._nvml = nvml_module
        self._ready: bool | None = None
        self._lock = threading.Lock()

    def _init(self) -> bool:
        with self._lock:
            if self._ready is None:
                try:
                    if self._nvml is None:
                        import pynvml

                        self._nvml = pynvml
                    self._nvml.nvmlInit()
                    self._ready = True
                except Exception as exc:  # no driver, no library, no GPU: torch readings instead
                    log.debug("NVML unavailable (%s); using torch's memory readings", exc)
                    self._ready = False
            return self._ready

    def memory(self, index: int, pci_bus_id: str | None = None) -> tuple[str, int, int] | None:
        """(name, total, free) of CUDA device ``index`` or None. With ``CUDA_VISIBLE_DEVICES`` set,
        torch's index is not NVML's: the PCI bus id, when given, picks the right board."""
        if not self._init():
            return None
        nvml = self._nvml
        try:
            if pci_bus_id:
                handle = nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
            else:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            return (name.decode() if isinstance(name, bytes) else str(name)), int(info.total), int(info.free)
        except Exception as exc:
            log.debug("NVML reading of cuda:%d failed: %s", index, exc)
            return None


def _cuda_pci_bus_id(torch_module, index: int) -> str | None:
    if not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return None
    try:
        props = torch_module.cuda.get_device_properties(index)
        return f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    except Exception:
        return None


def _backend_reading(device: str, backend, index: int | None, nvml: NvmlReader | None,
                     torch_module) -> DeviceMemory:
    """Readings for one accelerator through its torch backend module (torch.cuda, torch.xpu ...)."""
    def call(name, default=0, *args):
        function = getattr(backend, name, None)
        if function is None:
            return default
        try:
            return function(*args)
        except Exception:
            return default

    args = () if index is None else (index,)
    reserved = int(call("memory_reserved", 0, *args) or 0)
    allocated = int(call("memory_allocated", 0, *args) or 0)
    name = str(call("get_device_name", device, *args) or device)
    if nvml is not None and device.startswith("cuda"):
        found = nvml.memory(index or 0, _cuda_pci_bus_id(torch_module, index or 0))
        if found is not None:
            nvml_name, total, free = found
            return DeviceMemory(device, nvml_name, total, free, reserved, allocated, "nvml")
    info = call("mem_get_info", None, *args)
    if info:
        free, total = (int(x) for x in info)
        return DeviceMemory(device, name, total, free, reserved, allocated, "torch")
    return DeviceMemory(device, name, 0, 0, reserved, allocated, "none")


def read_ram(psutil_module=None) -> RamReading:
    import psutil

    psutil = psutil_module or psutil
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    try:
        rss = psutil.Process().memory_info().rss
    except Exception:
        rss = 0
    return RamReading(int(memory.total), int(memory.available), int(swap.total), int(swap.used), int(rss))


def read_device(device: str, torch_module=None, nvml: NvmlReader | None = None, ram: RamReading | None = None,
                backends: dict | None = None) -> DeviceMemory:
    """Readings for one device name (``cpu``, ``cuda:0``, ``xpu:1``, ``mps``, ``directml:0`` ...).
    ``nvml``: the runtime's NVML reader (CUDA figures from the driver); None: torch's figures."""
    if device == "cpu":
        ram = ram or read_ram()
        return DeviceMemory("cpu", "CPU (system RAM)", ram.total, ram.available, 0, 0, "psutil")
    if torch_module is None:
        import torch as torch_module
    kind, _, index_text = device.partition(":")
    index = int(index_text) if index_text else None
    backend = (backends or {}).get(kind)
    if backend is None:
        backend = getattr(torch_module, kind, None)
    if kind == "mps":
        ram = ram or read_ram()
        # Unified memory: the GPU shares RAM; torch reports what it holds.
        held = int(getattr(backend, "driver_allocated_memory", lambda: 0)())
        allocated = int(getattr(backend, "current_allocated_memory", lambda: 0)())
        return DeviceMemory("mps", "Apple GPU (unified memory)", ram.total, ram.available, held, allocated, "psutil")
    if kind == "directml" or backend is None:
        return DeviceMemory(device, device, 0, 0, 0, 0, "none")  # DirectML reports no memory figures
    return _backend_reading(device, backend, index, nvml, torch_module)


def read_all_devices(names: list[str] | None = None, **kwargs) -> tuple[list[DeviceMemory], RamReading]:
    """Readings for every device this machine has (or ``names``), and RAM, taken together."""
    ram = kwargs.pop("ram", None) or read_ram()
    names = available_devices() if names is None else names
    return [read_device(name, ram=ram, **kwargs) for name in names], ram


def snapshot_line(nvml: NvmlReader | None = None) -> str:
    devices, ram = read_all_devices(nvml=nvml)
    return memory_snapshot_line(devices, ram)


@contextlib.contextmanager
def logged_change(label: str, logger: logging.Logger | None = None, level: int = logging.INFO,
                  nvml: NvmlReader | None = None):
    """Log what a block did to memory: ``label: cuda:0 -1.20 GiB, RAM -0.40 GiB (process -0.38)``."""
    before = read_all_devices(nvml=nvml)
    try:
        yield
    finally:
        (logger or logging.getLogger("distorch")).log(level, "%s",
                                                      change_line(label, before, read_all_devices(nvml=nvml)))


# ---- giving memory back ----------------------------------------------------------------------

def empty_device_cache(device: str, torch_module=None) -> bool:
    """Return one accelerator's cached-but-unused memory to the driver; True if done."""
    if torch_module is None:
        import torch as torch_module
    kind, _, index_text = device.partition(":")
    backend = getattr(torch_module, kind, None)
    if kind == "cpu" or backend is None or not hasattr(backend, "empty_cache"):
        return False
    try:
        if kind == "mps":
            backend.empty_cache()
            return True
        select = getattr(backend, "device", None)
        if select is not None and index_text:
            with select(int(index_text)):
                backend.empty_cache()
                if hasattr(backend, "ipc_collect"):
                    backend.ipc_collect()
        else:
            backend.empty_cache()
        return True
    except Exception as exc:
        log.debug("empty_cache on %s failed: %s", device, exc)
        return False


def release_freed_ram() -> bool:
    """Ask the C allocator to hand freed heap pages back to the OS (glibc ``malloc_trim``).

    Python frees many small tensors into malloc's arenas, which keep them: RSS stays high after a
    model is dropped until this runs. Returns whether it ran (not whether pages were returned);
    a no-op where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False
