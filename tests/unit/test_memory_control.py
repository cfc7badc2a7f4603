"""The memory-control patches against the real comfy.model_management, in-process, with real
ModelPatchers around small modules loaded through the host's own load_models_gpu (CPU).

The /free flow is driven the way ComfyUI's prompt worker drives it (main.py): ``POST /free`` sets
flags on the real PromptQueue, the worker reads them with ``get_flags()`` and then calls
``unload_all_models()``. A call of ``unload_all_models()`` without that (OOM recovery,
--disable-smart-memory, other packs) keeps the host's meaning."""
import gc
import logging

import pytest
import torch



class _Server:
    def queue_updated(self):
        pass


@pytest.fixture
def queue(mm):
    import execution

    return execution.PromptQueue(_Server())


@pytest.fixture
def control(mm, pack_module, queue):
    patches = pack_module("model_management_mgpu")
    registry = pack_module("distorch.logic.patch_registry").PatchRegistry()
    original_unload = mm.unload_all_models
    original_get_flags = queue.get_flags
    report = patches.install(registry, mm, queue=queue)
    assert "unload_all_models" in report.patched and report.free_requests_watched
    yield report.memory
    mm.unload_all_models()  # whatever the test left (outside a /free flow: the host's meaning)
    original_unload()
    mm.current_loaded_models.clear()
    registry.uninstall()
    assert mm.unload_all_models is original_unload
    assert queue.get_flags == original_get_flags and "get_flags" not in queue.__dict__


def free(mm, queue, **flags):
    """POST /free with these flags, then what the prompt worker does between prompts (main.py)."""
    for name, value in (flags or {"unload_models": True}).items():
        queue.set_flag(name, value)
    read = queue.get_flags()
    if read.get("unload_models", read.get("free_memory", False)):
        mm.unload_all_models()


@pytest.fixture
def make_model(mm, pack_module, control):
    """A loaded model; with ``keep_loaded`` set, a pack loader's (placement recorded), and with
    keep_loaded True also retained under ``(name,)``, as the keep_loaded holder does: the retention
    record is what says a model is kept. Tests that retain a model themselves pass False."""
    import comfy.model_patcher

    placement = pack_module("distorch.logic.placement_record")

    def make(name, keep_loaded=None, size=256):
        patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(size, size), load_device=torch.device("cpu"),
                                                   offload_device=torch.device("cpu"))
        if keep_loaded is not None:
            placement.attach(patcher, placement.PlacementRecord("DisTorchUNETLoader", "unet", "cpu", "cpu", name))
        mm.load_models_gpu([patcher])
        if keep_loaded:
            control.retain((name,), (patcher,))
        return patcher

    return make


def loaded(mm):
    return [entry.model for entry in mm.current_loaded_models]


def test_no_pack_model_means_the_host_decides(mm, control, make_model, queue):
    core = make_model("core")
    assert any(p is core for p in loaded(mm))
    free(mm, queue)
    assert loaded(mm) == [] and control.last_unload["mode"] == "core"


def test_selective_unloads_exactly_the_flagged(mm, control, make_model, caplog, queue):
    flagged = make_model("flagged.safetensors", keep_loaded=False)
    kept = make_model("kept.safetensors", keep_loaded=True)
    core = make_model("core")
    with caplog.at_level(logging.INFO, logger="distorch"):
        free(mm, queue, unload_models=True, free_memory=True)
    remaining = loaded(mm)
    assert not any(p is flagged for p in remaining)
    assert any(p is kept for p in remaining) and any(p is core for p in remaining)
    assert control.last_unload["mode"] == "selective"
    assert control.last_unload["unloaded"] == ["flagged.safetensors (unet)"]
    assert "unloaded flagged.safetensors (unet); kept" in caplog.text


def test_nothing_flagged_is_a_strict_noop(mm, control, make_model, queue):
    kept = make_model("kept.safetensors", keep_loaded=True)
    core = make_model("core")
    before = [id(p) for p in loaded(mm)]
    free(mm, queue, free_memory=True)  # the worker's rule: free_memory alone unloads too
    assert [id(p) for p in loaded(mm)] == before and control.last_unload["mode"] == "noop"
    assert kept.model.weight.device.type == "cpu" and core.loaded_size() > 0


def test_survivors_outlive_the_node_cache_until_the_next_prompt(mm, control, make_model, queue):
    flagged = make_model("flagged.safetensors", keep_loaded=False)  # the node cache's references,
    core = make_model("core")                                        # in the real flow
    free(mm, queue)
    del core, flagged  # the worker resets the node cache...
    gc.collect()  # ...and collects
    assert len(loaded(mm)) == 1, "the kept core model died in the gc pass"
    control.release_survivors()  # the next prompt was queued
    gc.collect()
    mm.cleanup_models()
    assert loaded(mm) == []


def test_force_unloads_everything_and_releases_retained_outputs(mm, control, make_model, queue):
    kept = make_model("kept.safetensors", keep_loaded=True)
    core = make_model("core")  # alive (the node cache's reference): force must unload it too
    control.retained.put(("key",), (kept,))
    target = control.request_force()
    free(mm, queue)
    assert loaded(mm) == [] and len(control.retained) == 0 and control.last_unload["mode"] == "force"
    assert sorted(control.last_unload["unloaded"]) == sorted(["kept.safetensors (unet)", "Linear"])
    assert core.loaded_size() == 0 and kept.loaded_size() == 0
    assert control.flows_started == target
    mm.soft_empty_cache()
    assert control.flows_completed == target


def test_other_pack_caches_are_listed_and_emptied_by_force(mm, control, make_model, queue):
    held = [make_model("cached-mode.safetensors", keep_loaded=False)]
    control.register_holder("test cache", lambda: list(held), lambda: (len(held), held.clear())[0])
    try:
        free(mm, queue)  # flagged: leaves the host's list, stays in the cache
        (report,) = control.loaded_models()
        assert (report.name, report.state) == ("cached-mode.safetensors", "retained")
        control.request_force()
        free(mm, queue)
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


def test_an_oom_unload_keeps_the_hosts_meaning(mm, control, make_model, caplog):
    """execution.py calls unload_all_models() after an OOM: nothing of ours may stay loaded (the
    retry needs the room), but keep_loaded outputs stay retained in RAM for the retry to reuse."""
    kept = make_model("kept.safetensors", keep_loaded=True)
    flagged = make_model("flagged.safetensors", keep_loaded=False)
    core = make_model("core")
    with caplog.at_level(logging.INFO, logger="distorch"):
        mm.unload_all_models()  # not preceded by the worker reading /free's flags
    assert loaded(mm) == []
    assert kept.loaded_size() == 0 and flagged.loaded_size() == 0 and core.loaded_size() == 0
    assert control.last_unload["mode"] == "host" and control.last_unload["retained"] == ["kept.safetensors (unet)"]
    assert control.last_unload["caller"].startswith("test_memory_control.py:")
    states = {m.name: m.state for m in control.loaded_models()}
    assert states == {"kept.safetensors": "retained"}
    assert "host call from test_memory_control.py" in caplog.text and "stay in RAM" in caplog.text
    assert control.flows_started == 0, "a host call is not a /free flow: /distorch/free must not count it"


def test_flags_without_an_unload_do_not_arm_the_rule(mm, control, make_model, queue):
    kept = make_model("kept.safetensors", keep_loaded=True)
    queue.set_flag("unload_models", True)
    queue.get_flags(reset=False)  # another extension peeks at the flags: no flow starts
    queue.set_flag("something_else", True)
    queue.flags.pop("unload_models")
    queue.get_flags()  # the worker read flags, but no unload follows
    mm.unload_all_models()  # e.g. a later OOM: host meaning, so the kept model comes off
    assert loaded(mm) == [] and control.last_unload["mode"] == "host"
    assert kept.loaded_size() == 0


def test_a_failed_unload_stays_in_the_hosts_list(mm, control, make_model, queue, caplog):
    broken = make_model("broken.safetensors", keep_loaded=False)
    other = make_model("other.safetensors", keep_loaded=False)
    (entry,) = [e for e in mm.current_loaded_models if e.model is broken]

    def refuse(*args, **kwargs):
        raise RuntimeError("injected: the weights could not be moved")

    entry.model_unload = refuse  # this one LoadedModel only
    with caplog.at_level(logging.WARNING, logger="distorch"):
        free(mm, queue)
    assert [e.model for e in mm.current_loaded_models] == [broken], "a failed unload must stay accounted"
    assert other.loaded_size() == 0, "the failure must not stop the other unloads"
    assert control.last_unload["failed"] == ["broken.safetensors (unet)"]
    assert control.last_unload["unloaded"] == ["other.safetensors (unet)"]
    assert "unloading broken.safetensors (unet) failed" in caplog.text and "injected" in caplog.text
    del entry.model_unload


def test_a_node_with_new_inputs_releases_what_it_kept(mm, control, make_model):
    first = make_model("v1.safetensors", keep_loaded=False)
    control.retain(("v1",), (first,), owner="node A")
    second = make_model("v2.safetensors", keep_loaded=False)
    control.retain(("v2",), (second,), owner="node A")
    assert control.retained.keys() == [("v2",)]
    assert not any(p is first for p in loaded(mm)), "the released copy must leave the host's list"
    from_report = {m.name for m in control.loaded_models()}
    assert from_report == {"v2.safetensors"}, "neither loaded nor retained: gone from the memory report"
    assert not control.is_kept(first), "a released copy is flagged"


def test_a_shared_load_stays_while_another_node_holds_it(mm, control, make_model):
    shared = make_model("shared.safetensors", keep_loaded=False)
    control.retain(("shared",), (shared,), owner="node A")
    assert control.retained_outputs(("shared",), owner="node B") == (shared,)
    control.disown("node A")
    assert control.retained.keys() == [("shared",)]
    control.disown("node B")
    assert control.retained.keys() == []


def test_the_budget_releases_least_recently_used_first(mm, control, make_model, pack_module, caplog):
    retention = pack_module("distorch.logic.retention")
    control.set_budget(retention.RetentionBudget(2, 100.0, "settings"))
    models = [make_model(f"m{i}.safetensors", keep_loaded=False) for i in range(3)]
    control.retain(("m0",), (models[0],))
    control.retain(("m1",), (models[1],))
    control.retained_outputs(("m0",))  # m0 used again: m1 is now the least recently used
    with caplog.at_level(logging.INFO, logger="distorch"):
        control.retain(("m2",), (models[2],))
    assert sorted(control.retained.keys()) == [("m0",), ("m2",)]
    report = control.retention_report()
    assert report["used"]["models"] == 2 and report["evicted_total"] == 1
    assert report["recent_evictions"][0]["label"] == "m1.safetensors (unet)"
    assert report["budget"]["source"] == "settings"
    assert "retention budget: released m1.safetensors (unet)" in caplog.text
    assert not control.is_kept(models[1])


def test_the_budget_counts_bytes_and_other_holders(mm, control, make_model, pack_module, monkeypatch):
    retention = pack_module("distorch.logic.retention")
    patches = pack_module("model_management_mgpu")
    one = 512 * 512 * 4 + 512 * 4  # a Linear(512, 512) in fp32
    monkeypatch.setattr(patches, "_ram_total", lambda: 100 * one)
    control.set_budget(retention.RetentionBudget(10, 2.5, "settings"))  # room for two models
    cache = {"mode-a": 1.0}  # another holder (the modes cache), its entry used long ago
    control.register_holder("test modes", lambda: [], lambda: 0,
                            entries=lambda: [retention.Retained(k, f"mode {k}", one, t) for k, t in cache.items()],
                            evict=cache.pop)
    try:
        control.retain(("a",), (make_model("a.safetensors", keep_loaded=False, size=512),))
        control.retain(("b",), (make_model("b.safetensors", keep_loaded=False, size=512),))
        assert cache == {} and sorted(control.retained.keys()) == [("a",), ("b",)]
        assert control.retention_report()["recent_evictions"][0]["holder"] == "test modes"
    finally:
        control.holders.pop("test modes", None)


def test_the_queue_watcher_is_removable_and_only_on_that_queue(mm, pack_module, queue):
    import execution

    patches = pack_module("model_management_mgpu")
    registry = pack_module("distorch.logic.patch_registry").PatchRegistry()
    other = execution.PromptQueue(_Server())
    control = patches.MemoryControl(mm)
    assert patches.watch_free_requests(registry, queue, control) is None
    assert "get_flags" in queue.__dict__ and "get_flags" not in other.__dict__
    wrapper = queue.get_flags
    assert patches.watch_free_requests(registry, queue, control) is None  # idempotent: not wrapped twice
    assert queue.get_flags is wrapper and len(registry) == 1
    assert registry.uninstall().restored == ["PromptQueue.get_flags"] and "get_flags" not in queue.__dict__
    assert registry.uninstall().restored == []


# ---- unload one model by id (POST /distorch/free {"model": id}, the panel's per-model button) ----

def unload_by_id(mm, queue, control, *patchers, free_memory=True):
    """What the route does: record the ids, set /free's flags; then the prompt worker's flow."""
    target = None
    for patcher in patchers:
        target = control.request_model_unload(f"{id(patcher.model):x}")
    free(mm, queue, unload_models=True, free_memory=free_memory)
    return target


def test_unload_by_id_takes_exactly_that_model_even_with_keep_loaded(mm, control, make_model, queue, caplog):
    kept = make_model("kept.safetensors", keep_loaded=False)
    other = make_model("other.safetensors", keep_loaded=True)
    flagged = make_model("flagged.safetensors", keep_loaded=False)
    core = make_model("core")
    control.retain(("kept",), (kept,), owner="node 1")
    with caplog.at_level(logging.INFO, logger="distorch"):
        target = unload_by_id(mm, queue, control, kept)
    remaining = loaded(mm)
    assert not any(p is kept for p in remaining), "keep_loaded does not protect a model asked for by id"
    assert all(any(p is q for p in remaining) for q in (other, flagged, core)), "the flagged one stays too"
    assert control.last_unload["mode"] == "model"
    assert control.last_unload["unloaded"] == ["kept.safetensors (unet)"]
    assert control.last_unload["requested"] == [f"{id(kept.model):x}"] and "not_found" not in control.last_unload
    assert sorted(control.last_unload["kept"]) == sorted(["other.safetensors (unet)", "flagged.safetensors (unet)",
                                                          "Linear"])
    assert control.retained.keys() == [("other.safetensors",)], "the pack's hold on it is let go"
    assert not control.is_kept(kept) and control.is_kept(other)
    assert {m.name for m in control.loaded_models()} == {"other.safetensors", "flagged.safetensors", "Linear"}
    assert control.flows_started == target
    assert "unload models (model): unloaded kept.safetensors (unet)" in caplog.text
    free(mm, queue)  # the next plain /free: the /free rule again (the request was used up)
    assert control.last_unload["mode"] == "selective"
    assert not any(p is flagged for p in loaded(mm))


def test_unloading_one_part_of_a_kept_checkpoint_keeps_the_others_until_the_loader_runs(mm, control, make_model, queue):
    """A checkpoint loader's three outputs are one held load: unloading the VAE leaves the other
    two held; that loader's next run gets nothing held (it must return all three) and lets them go."""
    unet, clip, vae = (make_model(f"sd15.safetensors:{part}", keep_loaded=False) for part in ("unet", "clip", "vae"))
    control.retain(("checkpoint",), (unet, clip, vae), owner="checkpoint node")
    unload_by_id(mm, queue, control, vae)
    assert control.last_unload["unloaded"] == ["sd15.safetensors:vae (unet)"]
    assert {m.name: m.state for m in control.loaded_models()} == {
        "sd15.safetensors:unet": "loaded", "sd15.safetensors:clip": "loaded"}
    (item,) = control.retention_items()
    assert item[1].size_bytes == 2 * (256 * 256 * 4 + 256 * 4), "the retention budget counts what is left"
    assert control.retained_outputs(("checkpoint",), owner="checkpoint node") is None
    assert control.retained.keys() == []
    assert not any(p is unet or p is clip for p in loaded(mm)), "let go before the loader reads the file again"
    assert not control.is_kept(unet)


def test_a_model_only_the_pack_holds_is_unloaded_by_id(mm, control, make_model, queue):
    """After a host unload (OOM recovery) a keep_loaded model waits in RAM (state retained): its id
    still unloads it, which here means letting go of the hold."""
    kept = make_model("kept.safetensors", keep_loaded=False)
    control.retain(("kept",), (kept,))
    mm.unload_all_models()  # the host's meaning: off the devices, retained in RAM
    assert [(m.name, m.state) for m in control.loaded_models()] == [("kept.safetensors", "retained")]
    unload_by_id(mm, queue, control, kept)
    assert control.last_unload["unloaded"] == ["kept.safetensors (unet)"]
    assert control.loaded_models() == [] and len(control.retained) == 0


def test_an_id_gone_before_the_flow_unloads_nothing_else(mm, control, make_model, queue):
    first = make_model("first.safetensors", keep_loaded=False)
    second = make_model("second.safetensors", keep_loaded=False)
    control.request_model_unload("deadbeef")
    free(mm, queue)
    assert any(p is first for p in loaded(mm)) and any(p is second for p in loaded(mm))
    assert control.last_unload["mode"] == "model" and control.last_unload["unloaded"] == []
    assert control.last_unload["not_found"] == ["deadbeef"]


def test_requests_made_before_the_flow_add_up_and_force_wins(mm, control, make_model, queue):
    a, b, c = (make_model(f"{name}.safetensors", keep_loaded=True) for name in "abc")
    target = unload_by_id(mm, queue, control, a, b)
    assert sorted(control.last_unload["unloaded"]) == ["a.safetensors (unet)", "b.safetensors (unet)"]
    assert [p for p in loaded(mm)] == [c] and control.flows_started == target
    control.request_model_unload(f"{id(c.model):x}")
    control.request_force()
    free(mm, queue)
    assert control.last_unload["mode"] == "force" and loaded(mm) == []
    assert control.models_requested == {}


def test_another_holders_cache_lets_go_of_the_model_asked_for(mm, control, make_model, queue):
    cached = {"mode-a": [make_model("a.safetensors", keep_loaded=False)],
              "mode-b": [make_model("b.safetensors", keep_loaded=False)]}

    def release_models(unwanted):
        gone = [name for name, parts in cached.items() if any(unwanted(p) for p in parts)]
        for name in gone:
            del cached[name]
        return gone

    control.register_holder("test modes", lambda: [p for parts in cached.values() for p in parts], lambda: 0,
                            release_models=release_models)
    try:
        target = cached["mode-a"][0]
        free(mm, queue)  # flagged: off the host's list, still held by the cache (state retained)
        assert {m.name for m in control.loaded_models()} == {"a.safetensors", "b.safetensors"}
        unload_by_id(mm, queue, control, target)
        assert list(cached) == ["mode-b"]
        assert control.last_unload["unloaded"] == ["a.safetensors (unet)"]
        assert {m.name for m in control.loaded_models()} == {"b.safetensors"}
    finally:
        control.holders.pop("test modes", None)
