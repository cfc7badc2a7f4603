"""The memory picture, pure: readings in, states / warnings / report documents out.

Probing the machine happens in the pack's device_utils.py and reading the host's loaded models in
model_management_mgpu.py; both hand plain data to the functions here, so every rule can be tested
with injected readings (backends and sizes this machine does not have).
"""
from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = 1
GIB = 1 << 30
MIB = 1 << 20


class VramState(str, enum.Enum):
    """How full a device is: LOW (< 50 % used), MODERATE (50-75), HIGH (75-90), CRITICAL (> 90)."""

    LOW = "LOW"
    MODERATE = "MODERATE"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"  # the backend reports no totals (e.g. DirectML)


def vram_state(used: int, total: int) -> VramState:
    if total <= 0:
        return VramState.UNKNOWN
    percent = 100.0 * used / total
    if percent < 50:
        return VramState.LOW
    if percent < 75:
        return VramState.MODERATE
    if percent <= 90:
        return VramState.HIGH
    return VramState.CRITICAL


@dataclass(frozen=True)
class DeviceMemory:
    """One device's readings in bytes. ``source`` says who measured total/free."""

    device: str             # "cuda:0", "cpu", ...
    name: str               # "NVIDIA H100 80GB HBM3", "CPU (system RAM)"
    total: int
    free: int
    torch_reserved: int = 0   # held by torch's caching allocator (includes allocated)
    torch_allocated: int = 0  # in live tensors
    source: str = "torch"     # "nvml", "torch", "psutil", "none"

    @property
    def used(self) -> int:
        return max(0, self.total - self.free)

    @property
    def state(self) -> VramState:
        return vram_state(self.used, self.total)

    @property
    def percent_used(self) -> float:
        return round(100.0 * self.used / self.total, 1) if self.total > 0 else 0.0


@dataclass(frozen=True)
class RamReading:
    total: int
    available: int
    swap_total: int = 0
    swap_used: int = 0
    process_rss: int = 0

    @property
    def used(self) -> int:
        return max(0, self.total - self.available)

    @property
    def percent_used(self) -> float:
        return round(100.0 * self.used / self.total, 1) if self.total > 0 else 0.0


@dataclass(frozen=True)
class OffloadSettings:
    """What the host is configured to do; None where this ComfyUI has no such setting."""

    vram_state: str | None = None
    cpu_state: str | None = None
    async_offload: bool | None = None
    offload_streams: int | None = None
    pinned_memory: bool | None = None
    pinned_bytes: int | None = None
    pinned_cap_bytes: int | None = None
    reserved_vram_bytes: int | None = None
    dynamic_vram: bool | None = None


@dataclass(frozen=True)
class ModelMemory:
    """One loaded model as the report shows it."""

    id: str
    name: str
    model_class: str
    loader: str                    # pack node class, or "core"
    component: str | None          # "unet", "clip", "vae", "controlnet", "clip_vision" for pack models
    compute_device: str
    devices: Mapping[str, int]     # device -> bytes of its weights there
    loaded_bytes: int              # what the host counts as loaded on the compute device
    pack_managed: bool
    keep_loaded: bool | None       # None for models the pack did not load
    flagged: bool                  # would be unloaded by the next "unload models"
    state: str                     # "loaded" (host lists it) or "retained" (held by keep_loaded only)
    loaded_at: float | None = None  # when its file was read (pack models)

    @property
    def total_bytes(self) -> int:
        return sum(self.devices.values())


@dataclass(frozen=True)
class MemoryWarning:
    code: str
    severity: str          # "info", "warning", "critical"
    device: str | None
    message: str
    recommended_actions: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Thresholds:
    ram_warning_percent: float = 85.0
    ram_critical_percent: float = 95.0
    pinned_warning_fraction: float = 0.9


def _gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"


def memory_warnings(devices: Iterable[DeviceMemory], ram: RamReading, settings: OffloadSettings,
                    models: Iterable[ModelMemory] = (), thresholds: Thresholds = Thresholds()) -> list[MemoryWarning]:
    """Structured warnings with the actions a user can take, most severe first."""
    models = list(models)
    found: list[MemoryWarning] = []
    for reading in devices:
        if reading.device == "cpu":
            continue  # RAM has its own rule below
        state = reading.state
        if state not in (VramState.HIGH, VramState.CRITICAL):
            continue
        on_device = [m for m in models if m.devices.get(reading.device, 0) > 0]
        actions = []
        if any(m.pack_managed and m.component == "unet" for m in on_device):
            actions.append("lower the GPU share of the DisTorch diffusion model: raise virtual_vram_gb, "
                           "or give the donor more in allocation")
        if any(m.component == "clip" or "clip" in m.model_class.lower() for m in on_device):
            actions.append("run the text encoder on cpu (compute_device = cpu on the CLIP loader)")
        if any(m.flagged for m in on_device):
            actions.append("unload the models flagged keep_loaded = off (POST /free, or Manager's Unload Models)")
        actions.append("start ComfyUI with --lowvram")
        severity = "critical" if state is VramState.CRITICAL else "warning"
        found.append(MemoryWarning(f"VRAM_{state.value}", severity, reading.device,
                              f"{reading.device} is {reading.percent_used:.0f}% full "
                              f"({_gib(reading.used)} of {_gib(reading.total)})", tuple(actions)))
    if ram.total > 0 and ram.percent_used >= thresholds.ram_warning_percent:
        critical = ram.percent_used >= thresholds.ram_critical_percent
        actions = ["free what you do not need: POST /distorch/free with {\"force\": true} unloads everything"]
        if any(m.pack_managed and m.keep_loaded for m in models):
            actions.append("turn keep_loaded off on models you do not need again soon")
        if any(len(m.devices) > 1 and m.devices.get("cpu", 0) > 0 for m in models):
            actions.append("offload less to the CPU (lower virtual_vram_gb): offloaded weights live in RAM")
        actions.append("close other programs using RAM")
        swap = f"; swap in use: {_gib(ram.swap_used)}" if ram.swap_used > 0 else ""
        found.append(MemoryWarning("RAM_PRESSURE", "critical" if critical else "warning", "cpu",
                              f"system RAM is {ram.percent_used:.0f}% used ({_gib(ram.used)} of "
                              f"{_gib(ram.total)}){swap}", tuple(actions)))
    if settings.pinned_memory and settings.pinned_cap_bytes and settings.pinned_bytes is not None:
        if settings.pinned_bytes >= thresholds.pinned_warning_fraction * settings.pinned_cap_bytes:
            found.append(MemoryWarning(
                "PINNED_NEAR_CAP", "warning", "cpu",
                f"pinned host memory is at {_gib(settings.pinned_bytes)} of its {_gib(settings.pinned_cap_bytes)} "
                "cap: further offloaded weights are copied from pageable memory (about 2x slower)",
                ("offload less to the CPU", "start ComfyUI with --disable-pinned-memory if RAM is short")))
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(found, key=lambda w: order.get(w.severity, 3))


def device_document(reading: DeviceMemory, models: Iterable[ModelMemory]) -> dict:
    on_device = {m.id: m.devices.get(reading.device, 0) for m in models if m.devices.get(reading.device, 0) > 0}
    model_bytes = sum(on_device.values())
    document = {
        "device": reading.device, "name": reading.name, "source": reading.source,
        "total": reading.total, "free": reading.free, "used": reading.used,
        "percent_used": reading.percent_used, "state": reading.state.value,
        "torch_reserved": reading.torch_reserved, "torch_allocated": reading.torch_allocated,
        # torch cache: reserved by the allocator but in no live tensor
        "torch_cache": max(0, reading.torch_reserved - reading.torch_allocated),
        "models": on_device,
        "model_bytes": model_bytes,
    }
    if reading.device != "cpu":
        document["other"] = max(0, reading.used - max(reading.torch_reserved, model_bytes))
    return document


def model_document(model: ModelMemory) -> dict:
    return {
        "id": model.id, "name": model.name, "class": model.model_class, "loader": model.loader,
        "component": model.component, "compute_device": model.compute_device,
        "devices": dict(model.devices), "total_bytes": model.total_bytes, "loaded_bytes": model.loaded_bytes,
        "pack_managed": model.pack_managed, "keep_loaded": model.keep_loaded, "flagged": model.flagged,
        "state": model.state, "loaded_at": model.loaded_at,
    }


def report_document(devices: list[DeviceMemory], ram: RamReading, settings: OffloadSettings,
                    models: list[ModelMemory], last_unload: Mapping | None = None,
                    thresholds: Thresholds = Thresholds(), now: float | None = None,
                    retention: Mapping | None = None) -> dict:
    """The JSON document of ``GET /internal/memory`` (schema: schemas/internal_memory.schema.json)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "timestamp": round(time.time() if now is None else now, 3),
        "devices": [device_document(d, models) for d in devices],
        "ram": {"total": ram.total, "available": ram.available, "used": ram.used,
                "percent_used": ram.percent_used, "swap_total": ram.swap_total, "swap_used": ram.swap_used,
                "process_rss": ram.process_rss},
        "offload": asdict(settings),
        "models": [model_document(m) for m in models],
        "warnings": [{"code": w.code, "severity": w.severity, "device": w.device, "message": w.message,
                      "recommended_actions": list(w.recommended_actions)}
                     for w in memory_warnings(devices, ram, settings, models, thresholds)],
        "last_unload": dict(last_unload) if last_unload else None,
        # what the pack keeps beyond ComfyUI's node cache, its budget and recent budget releases
        "retention": dict(retention) if retention is not None else None,
    }


def fingerprint(document: Mapping, granularity: float = 0.01) -> tuple:
    """What must change for the picture to count as changed: the models and where they are, device
    states, warnings, and each device's use in steps of ``granularity`` of its total (so the
    constant jitter of RAM use during sampling does not count)."""
    def step(used: int, total: int) -> int:
        return int(used / (total * granularity)) if total > 0 else used >> 20

    devices = tuple((d["device"], d["state"], step(d["used"], d["total"])) for d in document["devices"])
    models = tuple(sorted((m["id"], m["state"], m["flagged"], tuple(sorted(m["devices"].items())))
                          for m in document["models"]))
    warnings = tuple((w["code"], w["device"]) for w in document["warnings"])
    ram = document["ram"]
    return devices, models, warnings, step(ram["used"], ram["total"])


def snapshot_line(devices: Iterable[DeviceMemory], ram: RamReading) -> str:
    """One line for the log: every device's use and state, then RAM."""
    parts = [f"{d.device} {d.used / GIB:.2f}/{d.total / GIB:.2f} GiB {d.state.value}"
             for d in devices if d.device != "cpu"]
    parts.append(f"RAM {ram.used / GIB:.2f}/{ram.total / GIB:.2f} GiB (process {ram.process_rss / GIB:.2f})")
    return "; ".join(parts)


def change_line(label: str, before: tuple[list[DeviceMemory], RamReading],
                after: tuple[list[DeviceMemory], RamReading]) -> str:
    """``label: cuda:0 -1.20 GiB, RAM -0.40 GiB (process -0.38)`` for a before/after pair."""
    before_used = {d.device: d.used for d in before[0]}
    parts = []
    for reading in after[0]:
        if reading.device == "cpu" or reading.device not in before_used:
            continue
        parts.append(f"{reading.device} {(reading.used - before_used[reading.device]) / GIB:+.2f} GiB")
    ram_before, ram_after = before[1], after[1]
    parts.append(f"RAM {(ram_after.used - ram_before.used) / GIB:+.2f} GiB "
                 f"(process {(ram_after.process_rss - ram_before.process_rss) / GIB:+.2f})")
    return f"{label}: " + ", ".join(parts)
