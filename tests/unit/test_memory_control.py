"""The memory-control patches against the real comfy.model_management, in-process, with real
ModelPatchers around small modules loaded through the host's own load_models_gpu (CPU)."""
import gc
import logging

import pytest
import torch



@pytest.fixture
def control(mm, pack_module):
    patches = pack_module("model_management_mgpu")
    original_unload = mm.unload_all_models
    report = patches.install(mm)
    assert "unload_all_models" in report.patched
    yield patches.memory_control(mm)
    mm.unload_all_models()  # whatever the test left (our wrapper: force not set -> selective/core)
    original_unload()
    mm.current_loaded_models.clear()
    patches.uninstall(mm)
    assert mm.unload_all_models is original_unload


@pytest.fixture
def make_model(mm, pack_module):
    import comfy.model_patcher

    placement = pack_module("distorch.placement")

    def make(name, keep_loaded=None, size=256):
        patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(size, size), load_device=torch.device("cpu"),
                                                   offload_device=torch.device("cpu"))
        if keep_loaded is not None:
            placement.attach(patcher, placement.ModelPlacement("DisTorchUNETLoader", "unet", "cpu", "cpu",
                                                               keep_loaded, name))
        mm.load_models_gpu([patcher])
        return patcher

    return make


def loaded(mm):
    return [entry.model for entry in mm.current_loaded_models]


def test_no_pack_model_means_the_host_decides(mm, control, make_model):
    core = make_model("core")
    assert any(p is core for p in loaded(mm))
    mm.unload_all_models()
    assert loaded(mm) == [] and control.last_unload["mode"] == "core"


def test_selective_unloads_exactly_the_flagged(mm, control, make_model, caplog):
    flagged = make_model("flagged.safetensors", keep_loaded=False)
    kept = make_model("kept.safetensors", keep_loaded=True)
    core = make_model("core")
    with caplog.at_level(logging.INFO, logger="distorch"):
        mm.unload_all_models()
    remaining = loaded(mm)
    assert not any(p is flagged for p in remaining)
    assert any(p is kept for p in remaining) and any(p is core for p in remaining)
    assert control.last_unload["mode"] == "selective"
    assert control.last_unload["unloaded"] == ["flagged.safetensors (unet)"]
    assert "unloaded flagged.safetensors (unet); kept" in caplog.text


def test_nothing_flagged_is_a_strict_noop(mm, control, make_model):
    kept = make_model("kept.safetensors", keep_loaded=True)
    core = make_model("core")
    before = [id(p) for p in loaded(mm)]
    mm.unload_all_models()
    assert [id(p) for p in loaded(mm)] == before and control.last_unload["mode"] == "noop"
    assert kept.model.weight.device.type == "cpu" and core.loaded_size() > 0


def test_survivors_outlive_the_node_cache_until_the_next_prompt(mm, control, make_model):
    flagged = make_model("flagged.safetensors", keep_loaded=False)  # the node cache's references,
    core = make_model("core")                                        # in the real flow
    mm.unload_all_models()
    del core, flagged  # the worker resets the node cache...
    gc.collect()  # ...and collects
    assert len(loaded(mm)) == 1, "the kept core model died in the gc pass"
    control.release_survivors()  # the next prompt was queued
    gc.collect()
    mm.cleanup_models()
    assert loaded(mm) == []


def test_force_unloads_everything_and_releases_retained_outputs(mm, control, make_model):
    kept = make_model("kept.safetensors", keep_loaded=True)
    core = make_model("core")  # alive (the node cache's reference): force must unload it too
    control.retained.put(("key",), (kept,))
    target = control.request_force()
    mm.unload_all_models()
    assert loaded(mm) == [] and len(control.retained) == 0 and control.last_unload["mode"] == "force"
    assert sorted(control.last_unload["unloaded"]) == sorted(["kept.safetensors (unet)", "Linear"])
    assert core.loaded_size() == 0 and kept.loaded_size() == 0
    assert control.flows_started == target
    mm.soft_empty_cache()
    assert control.flows_completed == target


def test_other_pack_caches_are_listed_and_emptied_by_force(mm, control, make_model):
    held = [make_model("cached-mode.safetensors", keep_loaded=False)]
    control.register_holder("test cache", lambda: list(held), lambda: (len(held), held.clear())[0])
    try:
        mm.unload_all_models()  # flagged: leaves the host's list, stays in the cache
        (report,) = control.loaded_models()
        assert (report.name, report.state) == ("cached-mode.safetensors", "retained")
        control.request_force()
        mm.unload_all_models()
        assert held == [] and control.loaded_models() == []
    finally:
        control.holders.pop("test cache", None)


def test_cache_pass_covers_every_device_that_held_a_model(mm, control, pack_module, monkeypatch):
    device_utils = pack_module("device_utils")
    emptied, trimmed = [], []
    monkeypatch.setattr(device_utils, "empty_device_cache", lambda device: emptied.append(device) or True)
    monkeypatch.setattr(device_utils, "release_freed_ram", lambda: trimmed.append(True) or True)
    control.held_devices.update({"cuda:1", "xpu:0", "cpu"})
    monkeypatch.setenv("DISTORCH_RAM_TRIM_PERCENT", "0")  # RAM is always "above the threshold"
    control.pack_seen = True
    control.last_full_pass = float("-inf")
    mm.soft_empty_cache()
    assert emptied == ["cuda:1", "xpu:0"]  # the current device (cpu here) is the host's own call
    assert trimmed == [True]
    # Newer hosts call this after every node: within the interval the pass adds nothing.
    for _ in range(5):
        mm.soft_empty_cache()
    assert (emptied, trimmed) == (["cuda:1", "xpu:0"], [True])
    control.trim_pending = True  # an unload flow released models: the pass runs at once
    mm.soft_empty_cache()
    assert emptied == ["cuda:1", "xpu:0"] * 2 and trimmed == [True, True]


def test_the_hosts_own_eviction_gets_the_pass(mm, control, make_model, pack_module, monkeypatch):
    """0.3.75 evicts in free_memory, which calls soft_empty_cache after popping the models."""
    device_utils = pack_module("device_utils")
    trimmed = []
    monkeypatch.setattr(device_utils, "release_freed_ram", lambda: trimmed.append(True) or True)
    monkeypatch.setenv("DISTORCH_RAM_TRIM_PERCENT", "0")
    model = make_model("evicted.safetensors", keep_loaded=False)  # alive: the host skips dead models
    mm.soft_empty_cache()  # the host's periodic call (after its post-prompt gc) sees the pack's model
    trimmed.clear()
    control.last_full_pass = float("-inf")  # the last pass was longer ago than the interval
    unloaded = mm.free_memory(1e30, torch.device("cpu"))
    assert [entry.model for entry in unloaded] == [model] and trimmed == [True]


def test_loaded_models_reports_bytes_per_device(mm, control, make_model):
    kept = make_model("kept.safetensors", keep_loaded=True, size=512)
    (report,) = control.loaded_models()
    expected = sum(t.nelement() * t.element_size() for t in kept.model.parameters())
    assert report.devices == {"cpu": expected} and report.total_bytes == expected
    assert (report.name, report.loader, report.keep_loaded, report.flagged, report.state) == (
        "kept.safetensors", "DisTorchUNETLoader", True, False, "loaded")


def test_a_dynamic_vram_model_is_reported_where_its_weights_are(mm, pack_module):
    """Newer hosts' ModelPatcherDynamic keeps weights on the CPU and caches GPU copies outside the
    module; its loaded_size() is those copies plus what it force-loaded onto the GPU
    (model_loaded_weight_memory, module tensors there). It may hold weights on the meta device until
    they load. 0.3.75 has neither: a stand-in reports is_dynamic() and a loaded size, as that
    class does."""
    import comfy.model_patcher

    describe_model = pack_module("model_management_mgpu").describe_model

    class ModelPatcherDynamic(comfy.model_patcher.ModelPatcher):
        def is_dynamic(self):
            return True

        def loaded_size(self):
            return 40_000

    module = torch.nn.Linear(100, 100)  # 40 400 bytes on the CPU
    module.register_buffer("lazy", torch.empty(1000, device="meta"))
    patcher = ModelPatcherDynamic(module, load_device=torch.device("cuda:0"), offload_device=torch.device("cpu"))
    module.model_loaded_weight_memory = 400  # e.g. the bias, force-loaded (on a GPU it is a module tensor there)
    report = describe_model(patcher, "loaded")
    assert report.devices == {"cuda:0": 39_600, "cpu": 40_400}  # the GPU cache; the CPU weights stay
    plain = comfy.model_patcher.ModelPatcher(module, load_device=torch.device("cuda:0"),
                                             offload_device=torch.device("cpu"))
    assert describe_model(plain, "loaded").devices == {"cpu": 40_400}  # meta tensors are not memory
