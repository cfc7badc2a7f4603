"""model_management_mgpu against the real comfy.model_management, imported in-process."""
import logging
import threading
import types

import pytest
import torch



@pytest.fixture
def registry(pack_module):
    return pack_module("distorch.logic.patch_registry").PatchRegistry()


@pytest.fixture
def patches(mm, pack_module, registry):
    """model_management_mgpu with ``install(host)`` into the test's registry; afterwards every host
    attribute is the original object again."""
    model_management_mgpu = pack_module("model_management_mgpu")
    targets = (*model_management_mgpu.DEVICE_OVERRIDE_TARGETS, *model_management_mgpu.MEMORY_CONTROL_TARGETS)
    originals = {name: getattr(mm, name) for name in targets}
    module = types.SimpleNamespace(
        install=lambda host, **kw: model_management_mgpu.install(registry, host, **kw),
        device_override=pack_module("distorch.logic.device_choice").device_override,
        DEVICE_OVERRIDE_TARGETS=model_management_mgpu.DEVICE_OVERRIDE_TARGETS)
    yield module
    registry.uninstall()
    for name, original in originals.items():
        assert getattr(mm, name) is original


def test_install_is_idempotent_and_uninstall_restores(mm, patches, registry):
    before = mm.get_torch_device
    first = patches.install(mm)
    wrapper = mm.get_torch_device
    second = patches.install(mm)
    assert first.patched == second.patched == ["get_torch_device", "text_encoder_device", "vae_device",
                                               "unload_all_models", "soft_empty_cache"]
    assert mm.get_torch_device is wrapper and wrapper is not before and registry.is_ours(wrapper)
    assert len(registry) == 5, registry.labels()  # the second install added nothing
    report = registry.uninstall()
    assert sorted(report.restored) == sorted(f"comfy.model_management.{name}" for name in first.patched)
    assert mm.get_torch_device is before and len(registry) == 0


def test_a_pack_that_wraps_ours_later_keeps_its_wrapper_and_ours_stops(mm, patches, registry, monkeypatch):
    """Another pack wraps the unload after us with functools.wraps (which copies any marker on our
    wrapper onto theirs). Uninstall must leave theirs in place, running, and take ours out of the
    call: their wrapper now reaches the host's original directly."""
    import functools

    original = mm.unload_all_models
    control = patches.install(mm).memory
    ours = mm.unload_all_models
    calls = []

    @functools.wraps(ours)
    def theirs(*args, **kwargs):
        calls.append("theirs")
        return ours(*args, **kwargs)

    mm.unload_all_models = theirs  # the other pack installs after us
    try:
        monkeypatch.setattr(mm, "current_loaded_models", [])
        host_calls = []
        monkeypatch.setattr(mm, "free_memory", lambda *args, **kwargs: host_calls.append("host"))
        assert not registry.is_ours(theirs)
        report = registry.uninstall()
        assert "comfy.model_management.unload_all_models" in report.bypassed
        assert mm.unload_all_models is theirs, "uninstall removed the other pack's wrapper"
        control.arm_free_flow()  # were ours still working, this call would be a /free flow it records
        mm.unload_all_models()
        assert calls == ["theirs"] and host_calls, "their wrapper and the host's unload must still run"
        assert control.last_unload is None, "our wrapper still ran the pack's unload rule after uninstall"
    finally:
        mm.unload_all_models = original  # the other pack goes too (its removal is its own business)


def test_with_nobody_else_every_host_attribute_is_the_original_object_again(mm, pack_module, registry):
    import execution

    class _Server:
        def queue_updated(self):
            pass

    patches = pack_module("model_management_mgpu")
    queue_control = pack_module("distorch.host.queue_control")
    queue = execution.PromptQueue(_Server())
    names = (*patches.DEVICE_OVERRIDE_TARGETS, *patches.MEMORY_CONTROL_TARGETS)
    before = {name: getattr(mm, name) for name in names}
    queue_before = dict(vars(queue))
    report = patches.install(registry, mm, queue=queue)
    assert report.free_requests_watched
    assert queue_control.QueueControl().install(queue, registry) is None
    assert set(vars(queue)) > set(queue_before)
    registry.uninstall()
    assert {name: getattr(mm, name) for name in names} == before
    assert all(getattr(mm, name) is before[name] for name in names)
    assert vars(queue).keys() == queue_before.keys(), "a wrapper stayed on the queue object"
    assert queue.get.__func__ is execution.PromptQueue.get


def test_pass_through_without_override(mm, patches):
    expected = (mm.get_torch_device(), mm.text_encoder_device(), mm.vae_device())
    patches.install(mm)
    assert (mm.get_torch_device(), mm.text_encoder_device(), mm.vae_device()) == expected


def test_override_only_inside_the_block_and_only_in_its_thread(mm, patches):
    patches.install(mm)
    host_choice = mm.get_torch_device()
    chosen = torch.device("meta")  # any device object will do: the wrapper returns it as is
    seen_elsewhere = []
    with patches.device_override(compute=chosen, vae=chosen):
        assert mm.get_torch_device() == chosen
        assert mm.vae_device() == chosen
    with patches.device_override(text_encoder=chosen):
        assert mm.text_encoder_device() == chosen
        assert mm.get_torch_device() == host_choice
    with patches.device_override(compute=chosen):
        worker = threading.Thread(target=lambda: seen_elsewhere.append(mm.get_torch_device()))
        worker.start()
        worker.join()
    assert seen_elsewhere == [host_choice]
    assert mm.get_torch_device() == host_choice


def test_override_restored_after_an_exception(mm, patches):
    patches.install(mm)
    host_choice = mm.get_torch_device()
    with pytest.raises(RuntimeError):
        with patches.device_override(compute=torch.device("meta")):
            raise RuntimeError("load failed")
    assert mm.get_torch_device() == host_choice


def test_missing_or_changed_host_function_is_skipped_with_one_line(patches, caplog):
    host = types.SimpleNamespace(get_torch_device=lambda: "cpu", text_encoder_device=lambda device: device)
    with caplog.at_level(logging.WARNING, logger="distorch"):
        report = patches.install(host)
    assert report.patched == ["get_torch_device"]
    assert set(report.skipped) == {"text_encoder_device", "vae_device", "unload_all_models", "soft_empty_cache"}
    assert "not found" in report.skipped["vae_device"] and "signature" in report.skipped["text_encoder_device"]
    assert len(caplog.records) == 4


def test_switch_off_by_environment(mm, patches, monkeypatch):
    monkeypatch.setenv("DISTORCH_DISABLE_PATCHES", "device_override,memory_control")
    before = mm.get_torch_device, mm.unload_all_models
    report = patches.install(mm)
    assert report.patched == [] and (mm.get_torch_device, mm.unload_all_models) == before


def test_placement_travels_with_model_patcher_clones(mm, pack_module):
    import comfy.model_patcher

    placement_module = pack_module("distorch.logic.placement_record")
    PlacementRecord, attach, placement_of = (placement_module.PlacementRecord, placement_module.attach,
                                            placement_module.placement_of)

    patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    placement = PlacementRecord("DisTorchUNETLoader", "unet", "cpu", "cpu", "x.safetensors")
    attach(patcher, placement)
    clone = patcher.clone()
    assert placement_of(clone) is placement
    assert clone.is_clone(patcher)
