"""The host started in-process for the GPU probes (tests/host/gpu_*_probe.py), with DynamicVRAM on
or off as the run asks (``DISTORCH_DYNAMIC_VRAM=on|off``; tools/gpu_check.py sets it per run).

ComfyUI 0.33.0 turns DynamicVRAM on in ``main.py``, not on import: it loads comfy-aimdo's library
(``comfy_aimdo.control.init``) before torch starts CUDA, then, with ``comfy.model_management``
imported, registers the devices (``init_devices``), swaps ``CoreModelPatcher`` for
``ModelPatcherDynamic`` and sets ``comfy.memory_management.aimdo_enabled``; custom nodes load
after that. The probes import the host as a library (no server, no ``main.py``), so
:func:`import_host` takes those steps in that order, and first checks that ``main.py`` still takes
them (MAIN_PY_STEPS): a host whose start-up moved fails here, naming what is missing, instead of
running with DynamicVRAM silently off. Unset, or ``off``: the host's legacy path, as
``--disable-dynamic-vram`` gives (in-process, nothing turns DynamicVRAM on by itself).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tools"))
import hostenv  # noqa: E402
from common import import_host_and_pack  # noqa: E402

DYNAMIC_VRAM_VARIABLE = "DISTORCH_DYNAMIC_VRAM"
# The start of every skip for want of DynamicVRAM (tools/gpu_check.py's DYNAMIC_OFF: in a run that
# asked for it, such a skip fails the check).
DYNAMIC_VRAM_OFF = "DynamicVRAM is off"
# What main.py does to turn DynamicVRAM on, that import_host repeats (checked in main.py's text).
MAIN_PY_STEPS = ("comfy_aimdo.control.init(", "comfy_aimdo.control.init_devices(",
                 "comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic",
                 "comfy.memory_management.aimdo_enabled = True")


class HostStartError(RuntimeError):
    """The host cannot be started the way the run asks."""


def dynamic_vram_requested(environ=os.environ) -> bool:
    """Whether this run asks for DynamicVRAM (``on``); unset or ``off``: no. Anything else is a mistake."""
    value = environ.get(DYNAMIC_VRAM_VARIABLE, "").strip().lower()
    if value not in ("", "on", "off"):
        raise HostStartError(f"{DYNAMIC_VRAM_VARIABLE}={value!r}: use on or off")
    return value == "on"


def host_has_dynamic_vram(comfyui: Path) -> bool:
    """Whether this ComfyUI tree has DynamicVRAM at all (0.3.75 has not)."""
    source = comfyui / "comfy" / "model_patcher.py"
    return source.is_file() and "class ModelPatcherDynamic" in source.read_text(encoding="utf-8")


def dynamic_vram_skip_reason(comfyui: Path, environ=os.environ) -> str | None:
    """Why a DynamicVRAM test cannot run in this run (None: it can). Each starts DYNAMIC_VRAM_OFF."""
    if not host_has_dynamic_vram(comfyui):
        return f"{DYNAMIC_VRAM_OFF}: ComfyUI at {comfyui} has none (no ModelPatcherDynamic; 0.33.0 has it)"
    if not dynamic_vram_requested(environ):
        return (f"{DYNAMIC_VRAM_OFF} in this run: {DYNAMIC_VRAM_VARIABLE} is not 'on' (the GPU check's "
                "'0.33.0, DynamicVRAM on' run sets it)")
    return None


def missing_main_steps(main_py_text: str) -> list[str]:
    return [step for step in MAIN_PY_STEPS if step not in main_py_text]


def import_host(models: Path, device: str, host_args: dict | None = None):
    """(nodes, pack, dynamic): the host and the pack imported in-process for ``device`` (``cpu``:
    ComfyUI's --cpu), with DynamicVRAM turned on as ``main.py`` does when the run asks for it and the
    device is a GPU; ``dynamic`` is whether the host now builds models with ModelPatcherDynamic."""
    cuda = device.startswith("cuda")
    comfyui = hostenv.comfyui_dir()
    wanted = dynamic_vram_requested() and cuda and host_has_dynamic_vram(comfyui)
    if wanted:
        missing = missing_main_steps((comfyui / "main.py").read_text(encoding="utf-8"))
        if missing:
            raise HostStartError(f"ComfyUI at {comfyui} no longer turns DynamicVRAM on as tests/host/gpu_host.py "
                                 f"repeats it: main.py lacks {', '.join(missing)}")
        _start_dynamic_vram(comfyui, host_args or {})
    elif host_has_dynamic_vram(comfyui):
        host_args = {"disable_dynamic_vram": True, **(host_args or {})}
    nodes, pack = import_host_and_pack(models, cpu=not cuda, host_args=host_args)
    import comfy.model_patcher

    dynamic = getattr(comfy.model_patcher, "CoreModelPatcher", None) is getattr(
        comfy.model_patcher, "ModelPatcherDynamic", object())
    if wanted and not dynamic:
        raise HostStartError("DynamicVRAM was asked for and is still off")
    return nodes, pack, dynamic


def _start_dynamic_vram(comfyui: Path, host_args: dict) -> None:
    """main.py's DynamicVRAM start-up, in its order (see the module's docstring)."""
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args

    args = comfy.cli_args.args
    args.cpu = False
    for name, value in host_args.items():
        setattr(args, name, value)
    if not comfy.cli_args.enables_dynamic_vram():
        raise HostStartError("the host's settings turn DynamicVRAM off (enables_dynamic_vram() is False)")
    import comfy_aimdo.control

    headroom = None if args.reserve_vram is None else int(args.reserve_vram * 1024 ** 3)
    if not comfy_aimdo.control.init(simple_vram_headroom=headroom, nvml_pressure=not args.disable_nvml_pressure):
        raise HostStartError("comfy_aimdo.control.init() failed: comfy-aimdo's library does not load here")
    import comfy.memory_management
    import comfy.model_management
    import comfy.model_patcher

    if not comfy.model_management.is_nvidia():
        raise HostStartError("DynamicVRAM is on by default on NVIDIA only, and torch sees no NVIDIA GPU")
    if getattr(comfy.model_management, "torch_version_numeric", (0, 0)) < (2, 8):
        raise HostStartError(f"DynamicVRAM needs torch 2.8 or later, this is {comfy.model_management.torch_version}")
    devices = comfy.model_management.get_all_torch_devices()
    if not comfy_aimdo.control.init_devices((d.index, int(args.vram_headroom * 1024 ** 3)) for d in devices):
        raise HostStartError(f"comfy-aimdo could not take the devices {devices} (init_devices() is False)")
    comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
    comfy.memory_management.aimdo_enabled = True
    logging.info("DynamicVRAM support detected and enabled (tests/host/gpu_host.py, as main.py does)")
