"""model_management_mgpu against the real comfy.model_management, imported in-process."""
import logging
import threading
import types

import pytest
import torch



@pytest.fixture
def patches(mm, pack_module):
    model_management_mgpu = pack_module("model_management_mgpu")
    targets = (*model_management_mgpu.DEVICE_OVERRIDE_TARGETS, *model_management_mgpu.MEMORY_CONTROL_TARGETS)
    originals = {name: getattr(mm, name) for name in targets}
    yield model_management_mgpu
    model_management_mgpu.uninstall(mm)
    for name, original in originals.items():
        assert getattr(mm, name) is original


def test_install_is_idempotent_and_uninstall_restores(mm, patches):
    before = mm.get_torch_device
    first = patches.install(mm)
    wrapper = mm.get_torch_device
    second = patches.install(mm)
    assert first.patched == second.patched == ["get_torch_device", "text_encoder_device", "vae_device",
                                               "unload_all_models", "soft_empty_cache"]
    assert mm.get_torch_device is wrapper and wrapper.__wrapped__ is before
    assert patches.uninstall(mm) == first.patched
    assert mm.get_torch_device is before


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
    patches.uninstall(host)


def test_switch_off_by_environment(mm, patches, monkeypatch):
    monkeypatch.setenv("DISTORCH_DISABLE_PATCHES", "device_override,memory_control")
    before = mm.get_torch_device, mm.unload_all_models
    report = patches.install(mm)
    assert report.patched == [] and (mm.get_torch_device, mm.unload_all_models) == before


def test_placement_travels_with_model_patcher_clones(mm, pack_module):
    import comfy.model_patcher

    placement_module = pack_module("distorch.placement")
    ModelPlacement, attach, placement_of = (placement_module.ModelPlacement, placement_module.attach,
                                            placement_module.placement_of)

    patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    placement = ModelPlacement("DisTorchUNETLoader", "unet", "cpu", "cpu", True, "x.safetensors")
    attach(patcher, placement)
    clone = patcher.clone()
    assert placement_of(clone) is placement
    assert clone.is_clone(patcher)
