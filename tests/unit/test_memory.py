"""The memory picture's rules (distorch/logic/memory_report.py), with injected readings."""
import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, strategies as st

from distorch.logic.memory_report import (GIB, DeviceMemory, ModelMemory, OffloadSettings, RamReading, Thresholds, VramState,
                             change_line, fingerprint, memory_warnings, report_document, snapshot_line,
                             vram_state)

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "internal_memory.schema.json").read_text())
RAM = RamReading(total=64 * GIB, available=48 * GIB, process_rss=3 * GIB)


def gpu(device="cuda:0", used_gib=4.0, total_gib=24.0, **kwargs):
    return DeviceMemory(device, "Test GPU", int(total_gib * GIB), int((total_gib - used_gib) * GIB), **kwargs)


def model(name="flux.safetensors", devices=None, component="unet", pack=True, keep=False, cls="Flux"):
    return ModelMemory(id="abc1", name=name, model_class=cls, loader="DisTorchUNETLoader" if pack else "core",
                       component=component if pack else None, compute_device="cuda:0",
                       devices=devices or {"cuda:0": 8 * GIB}, loaded_bytes=8 * GIB, pack_managed=pack,
                       keep_loaded=keep if pack else None, flagged=pack and not keep, state="loaded")


@pytest.mark.parametrize("percent, state", [
    (0, VramState.LOW), (49.9, VramState.LOW), (50, VramState.MODERATE), (74.9, VramState.MODERATE),
    (75, VramState.HIGH), (90, VramState.HIGH), (90.1, VramState.CRITICAL), (100, VramState.CRITICAL),
])
def test_vram_state_bands(percent, state):
    assert vram_state(int(percent * 10), 1000) is state


def test_unknown_total_is_unknown_state():
    assert vram_state(0, 0) is VramState.UNKNOWN


@given(st.integers(0, 10**12), st.integers(1, 10**12))
def test_state_is_monotonic_in_use(used, total):
    order = [VramState.LOW, VramState.MODERATE, VramState.HIGH, VramState.CRITICAL]
    used = min(used, total)
    assert order.index(vram_state(used, total)) <= order.index(vram_state(total, total))


def test_high_vram_warning_names_the_device_and_what_to_do():
    devices = [DeviceMemory("cpu", "CPU", RAM.total, RAM.available, source="psutil"), gpu(used_gib=20)]
    (warning,) = memory_warnings(devices, RAM, OffloadSettings(), [model(), model("clip-l", component="clip",
                                                                                   cls="SD1ClipModel")])
    assert warning.code == "VRAM_HIGH" and warning.severity == "warning" and warning.device == "cuda:0"
    assert "83%" in warning.message
    actions = " | ".join(warning.recommended_actions)
    assert "virtual_vram_gb" in actions and "text encoder on cpu" in actions and "--lowvram" in actions
    assert "keep_loaded = off" in actions  # a flagged model is on the device


def test_critical_comes_first_and_low_devices_are_quiet():
    devices = [gpu("cuda:0", used_gib=10), gpu("cuda:1", used_gib=23.5), gpu("cuda:2", used_gib=19)]
    warnings = memory_warnings(devices, RAM, OffloadSettings())
    assert [(w.code, w.device) for w in warnings] == [("VRAM_CRITICAL", "cuda:1"), ("VRAM_HIGH", "cuda:2")]
    assert warnings[0].severity == "critical"
    assert warnings[1].recommended_actions == ("start ComfyUI with --lowvram",)


def test_ram_pressure_and_swap():
    ram = RamReading(total=32 * GIB, available=int(1.0 * GIB), swap_total=8 * GIB, swap_used=2 * GIB)
    split = model(devices={"cuda:0": 4 * GIB, "cpu": 4 * GIB}, keep=True)
    (warning,) = memory_warnings([], ram, OffloadSettings(), [split])
    assert warning.code == "RAM_PRESSURE" and warning.severity == "critical" and "swap in use: 2.0 GiB" in warning.message
    actions = " | ".join(warning.recommended_actions)
    assert "keep_loaded off" in actions and "lower virtual_vram_gb" in actions and "/distorch/free" in actions
    calm = RamReading(total=32 * GIB, available=16 * GIB)
    assert memory_warnings([], calm, OffloadSettings()) == []
    assert memory_warnings([], ram, OffloadSettings(), thresholds=Thresholds(99.5, 99.9)) == []


def test_pinned_memory_near_its_cap():
    near = OffloadSettings(pinned_memory=True, pinned_bytes=int(9.5 * GIB), pinned_cap_bytes=10 * GIB)
    (warning,) = memory_warnings([], RAM, near)
    assert warning.code == "PINNED_NEAR_CAP" and "--disable-pinned-memory" in " ".join(warning.recommended_actions)
    assert memory_warnings([], RAM, OffloadSettings(pinned_memory=True, pinned_bytes=GIB, pinned_cap_bytes=10 * GIB)) == []
    assert memory_warnings([], RAM, OffloadSettings(pinned_memory=False, pinned_bytes=0)) == []


def test_report_document_matches_the_schema_for_every_backend():
    devices = [DeviceMemory("cpu", "CPU", RAM.total, RAM.available, source="psutil"),
               gpu("cuda:0", used_gib=23, torch_reserved=20 * GIB, torch_allocated=18 * GIB, source="nvml"),
               gpu("xpu:0"), gpu("npu:1"), gpu("mlu:0"),
               DeviceMemory("mps", "Apple GPU", RAM.total, RAM.available, source="psutil"),
               DeviceMemory("directml:0", "directml:0", 0, 0, source="none")]
    split = model(devices={"cuda:0": 6 * GIB, "cpu": 10 * GIB})
    document = report_document(devices, RAM, OffloadSettings(vram_state="NORMAL_VRAM", pinned_memory=True,
                                                              pinned_bytes=0, pinned_cap_bytes=GIB),
                               [split], {"mode": "selective", "at": 1.0, "unloaded": ["x"], "kept": []})
    jsonschema.validate(document, SCHEMA)
    cuda = document["devices"][1]
    assert cuda["state"] == "CRITICAL" and cuda["torch_cache"] == 2 * GIB and cuda["models"] == {"abc1": 6 * GIB}
    assert cuda["other"] == 3 * GIB  # 23 used - 20 reserved by torch
    assert document["devices"][0]["models"] == {"abc1": 10 * GIB}
    assert document["models"][0]["total_bytes"] == 16 * GIB
    assert document["devices"][-1]["state"] == "UNKNOWN"
    assert [w["code"] for w in document["warnings"]] == ["VRAM_CRITICAL"]


def test_schema_rejects_what_a_client_could_not_read():
    document = report_document([gpu()], RAM, OffloadSettings(), [model()])
    broken = json.loads(json.dumps(document))
    broken["devices"][0]["state"] = "FULL"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_fingerprint_ignores_jitter_but_sees_models_and_states():
    base = report_document([gpu(used_gib=4.0)], RAM, OffloadSettings(), [model()])
    jitter = report_document([gpu(used_gib=4.02)], RamReading(RAM.total, RAM.available - 2**20), OffloadSettings(),
                             [model()])
    assert fingerprint(base) == fingerprint(jitter)
    moved = report_document([gpu(used_gib=4.0)], RAM, OffloadSettings(), [model(devices={"cpu": 8 * GIB})])
    assert fingerprint(moved) != fingerprint(base)
    fuller = report_document([gpu(used_gib=20)], RAM, OffloadSettings(), [model()])
    assert fingerprint(fuller) != fingerprint(base)


def test_snapshot_and_change_lines():
    before = ([gpu(used_gib=10)], RamReading(64 * GIB, 40 * GIB, process_rss=8 * GIB))
    after = ([gpu(used_gib=4)], RamReading(64 * GIB, 44 * GIB, process_rss=4 * GIB))
    assert snapshot_line(*before) == "cuda:0 10.00/24.00 GiB LOW; RAM 24.00/64.00 GiB (process 8.00)"
    assert change_line("unload", before, after) == "unload: cuda:0 -6.00 GiB, RAM -4.00 GiB (process -4.00)"
