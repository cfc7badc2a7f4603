"""The pack on a DynamicVRAM host (ComfyUI 0.33.0 with DynamicVRAM on, a GPU): loads build
``ModelPatcherDynamic`` models; a split goes through the host's non-dynamic copy and places the
bytes its plan says, CPU donors pinned; ``keep_loaded`` and the per-model unload work on dynamic
models, beside the host's ``free_memory(for_dynamic=True)``; the memory report's figures for a
dynamic model agree with the device's. From one run of tests/host/gpu_dynamic_probe.py.

Marked ``gpu`` (skipped where there is no CUDA device, a failure under DISTORCH_REQUIRE_GPU=1),
and skipped where DynamicVRAM is off in the run: a host without it (0.3.75) or the run did not ask
for it (DISTORCH_DYNAMIC_VRAM=on, tests/host/gpu_host.py), each skip naming which; in the GPU
check's "0.33.0, DynamicVRAM on" run such a skip fails the check. The CPU stand-ins for these paths
(a ``ModelPatcherDynamic`` stand-in on 0.3.75) are tests/unit/test_apply.py's
``test_dynamic_vram_*`` and tests/unit/test_memory_control.py's
``test_a_dynamic_vram_model_is_reported_where_its_weights_are``. Each test fails for the reason its
name gives."""
import pytest

import gpu_host
import hostenv
from gpu_reports import run_probe

pytestmark = [pytest.mark.gpu, pytest.mark.host]
MiB = 2**20
# Allocator and driver granularity between two readings of the device's use, plus a share of the
# model for what the host allocates beside the weights (aimdo's cast buffer, small per-model tensors).
SLACK_BYTES, SLACK_SHARE = 64 * MiB, 0.03


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # Checked here, not at import: the gpu marker's skip for want of CUDA comes first.
    why = gpu_host.dynamic_vram_skip_reason(hostenv.comfyui_dir())
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("dynamic") / "dynamic-probe.json"
    return run_probe("gpu_dynamic_probe.py", out, "--device", "cuda:0", timeout=900)


def slack(model_bytes: int) -> float:
    return SLACK_BYTES + SLACK_SHARE * model_bytes


def test_the_host_runs_with_dynamic_vram_on(report):
    assert report["dynamic_vram"] is True, "CoreModelPatcher is not ModelPatcherDynamic"
    assert report["aimdo_enabled"] is True, "comfy.memory_management.aimdo_enabled is off"
    assert report["memory_report"]["offload_settings_dynamic_vram"] is True, (
        "the memory report's offload settings say DynamicVRAM is off")


def test_a_plain_load_through_a_pack_loader_is_a_model_patcher_dynamic(report):
    for role in ("kept", "flagged"):
        load = report["loads"][role]
        assert load["class"] == "ModelPatcherDynamic" and load["is_dynamic"], f"{role}: a {load['class']}"
        assert load["finite"], f"{role}: the sampled latent holds NaN or inf"
    assert report["loads"]["loaded_after_sampling"] == {"kept": True, "flagged": True}


def test_the_split_goes_through_the_hosts_static_copy(report):
    split = report["split"]
    assert split["static_copies"] == 1, f"clone(disable_dynamic=True) was called {split['static_copies']} times"
    assert split["split"] and split["class"] == "DisTorchModelPatcher" and not split["is_dynamic"], (
        f"the split model is a {split['class']} (dynamic: {split['is_dynamic']})")
    assert split["parent_is_none"], "the split copy keeps the dynamic model as its parent"
    assert split["finite"], "the split model's latent holds NaN or inf"


def test_the_static_copys_split_places_the_bytes_the_plan_says(report):
    split = report["split"]
    assert split["placed_by_device"] == split["planned_by_device"], "tensors are not where the plan put them"
    assert split["planned_by_device"].get("cpu", 0) > 0 and split["planned_by_device"].get("cuda:0", 0) > 0


def test_the_static_copys_cpu_donor_weights_are_pinned(report):
    donors = report["split"]["donors"]
    assert donors["tensors"] > 0, "nothing was offloaded to the CPU"
    assert donors["pinned"] == donors["tensors"], (
        f"{donors['tensors'] - donors['pinned']} of {donors['tensors']} CPU donor tensors are not pinned, "
        f"e.g. {donors['unpinned_examples']}")


def test_free_memory_for_dynamic_leaves_both_dynamic_models_loaded(report):
    freed = report["free_memory_for_dynamic"]
    assert freed["kept_before"] and freed["flagged_before"]
    assert freed["kept_after"] and freed["flagged_after"], (
        f"free_memory(for_dynamic=True) unloaded a dynamic model: kept {freed['kept_after']}, "
        f"flagged {freed['flagged_after']}")


def test_a_per_model_unload_takes_the_keep_loaded_dynamic_model_and_only_it(report):
    unload = report["model_unload"]
    assert unload["mode"] == "model" and len(unload["unloaded"]) == 1, unload
    assert not unload["kept_after"] and unload["kept_loaded_size_after"] == 0, (
        "the requested model is still loaded")
    assert unload["flagged_after"], "the per-model unload took the other model too"


def test_the_free_flow_unloads_the_flagged_dynamic_model_and_keeps_the_keep_loaded_one(report):
    flow = report["free_flow"]
    assert flow["mode"] == "selective", flow
    assert not flow["flagged_after"] and flow["flagged_loaded_size_after"] == 0, "the flagged model stays loaded"
    assert flow["kept_after"] and flow["kept_loaded_size_after"] > 0, "the keep_loaded model was unloaded"


def test_the_memory_report_gives_a_dynamic_model_no_more_than_the_device_uses(report):
    memory = report["memory_report"]
    reported = memory["devices"].get("cuda:0", 0)
    assert reported > 0, f"the report puts none of the loaded dynamic model on cuda:0: {memory['devices']}"
    assert reported <= memory["device_used_delta"] + slack(memory["model_bytes"]), (
        f"the report gives the model {reported / MiB:.1f} MiB on cuda:0; the device's use grew by "
        f"{memory['device_used_delta'] / MiB:.1f} MiB since before its load")
    assert memory["devices"].get("cpu", 0) + reported >= memory["model_bytes"] - slack(memory["model_bytes"]), (
        "the report loses weights: CPU and cuda:0 together hold less than the model")


def test_the_memory_reports_cuda_bytes_for_a_dynamic_model_are_what_its_unload_gives_back(report):
    unload, model_bytes = report["model_unload"], report["memory_report"]["model_bytes"]
    reported = unload["kept_report_devices_before"].get("cuda:0", 0)
    assert abs(reported - unload["device_freed"]) <= slack(model_bytes), (
        f"the report gave the model {reported / MiB:.1f} MiB on cuda:0; unloading it gave the device back "
        f"{unload['device_freed'] / MiB:.1f} MiB")
    assert unload["kept_report_devices_after"].get("cuda:0", 0) == 0, (
        f"after its unload the report still puts {unload['kept_report_devices_after']} on a device")
