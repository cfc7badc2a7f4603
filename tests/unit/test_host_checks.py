"""The start-up check of the host internals the split uses, on the real ComfyUI (in-process): a
good host passes; a changed one fails with a reason, and a split then runs the model unsplit with
one warning line."""
import pytest
import torch


@pytest.fixture(scope="module")
def host(mm):
    import comfy.model_patcher
    import comfy.ops

    return comfy.model_patcher, comfy.ops


def linear_model(host):
    """Six 1.5 MiB host Linear layers: a model the split offloads part of."""
    ops = host[1].disable_weight_init
    model = torch.nn.Sequential(*[ops.Linear(640, 640) for _ in range(6)])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.04)
    return model


def split_with(runtime, host):
    from distorch.logic.split_request import split_request
    from distorch.host.split_loaded import split_loaded_model

    cpu = torch.device("cpu")
    patcher = host[0].ModelPatcher(linear_model(host), load_device=cpu, offload_device=cpu)
    return patcher, split_loaded_model(patcher, split_request("cpu", ["cpu"], 0.006, "cpu", ""), "test model",
                                       runtime)


def test_the_test_host_passes_and_the_result_is_kept(host, monkeypatch):
    from distorch.host import internals_check as host_checks
    from distorch.host import split_loaded as split_model
    from distorch.host.split_patcher import DisTorchModelPatcher

    report = host_checks.check_host()
    assert report.ok, report.summary()
    runs = []
    monkeypatch.setattr(split_model, "check_host", lambda: runs.append(1) or report)
    runtime = split_model.SplitRuntime()
    assert runtime.host_report() is report and runtime.host_report() is report and runs == [1]
    _, result = split_with(runtime, host)
    assert isinstance(result.patcher, DisTorchModelPatcher) and result.plan.modules_on("cpu (donor)")
    assert runs == [1]  # checked once per runtime


def reordered_load_list(original):
    """A host whose _load_list puts the module name first: (name, module, params, offload, size)."""
    def _load_list(self, *args, **kwargs):
        return [(n, m, params, offload, size) for offload, size, n, m, params in original(self, *args, **kwargs)]
    return _load_list


def test_another_load_list_layout_fails_and_the_model_runs_unsplit_with_one_warning(host, monkeypatch, caplog):
    from distorch.host import internals_check as host_checks
    from distorch.host.split_loaded import SplitRuntime

    model_patcher = host[0]
    monkeypatch.setattr(model_patcher.ModelPatcher, "_load_list",
                        reordered_load_list(model_patcher.ModelPatcher._load_list))
    report = host_checks.check_host()
    assert not report.ok
    assert "ModelPatcher._load_list() entry" in report.summary() and "third from the end" in report.summary()
    with caplog.at_level("INFO", logger="distorch"):
        patcher, result = split_with(SplitRuntime(), host)
    assert result.patcher is patcher and result.plan is None
    assert type(patcher) is model_patcher.ModelPatcher and "distorch.split" not in patcher.attachments
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("distorch")]
    assert len(lines) == 1 and caplog.records[-1].levelname == "WARNING", lines
    assert "test model runs unsplit" in lines[0] and "_load_list()" in lines[0]


@pytest.mark.parametrize("missing", ["LowVramPatch", "wipe_lowvram_weight", "get_key_weight"])
def test_a_missing_host_function_is_named(host, monkeypatch, missing):
    from distorch.host import internals_check as host_checks

    monkeypatch.delattr(host[0], missing)
    report = host_checks.check_host()
    assert not report.ok and f"comfy.model_patcher.{missing} is missing" in report.summary()


def test_a_changed_lowvram_patch_is_named(host, monkeypatch):
    from distorch.host import internals_check as host_checks

    class LowVramPatch:  # a newer signature the split does not know
        def __init__(self, key, patches, convert_func, set_func, extra):
            pass

    monkeypatch.setattr(host[0], "LowVramPatch", LowVramPatch)
    report = host_checks.check_host()
    assert not report.ok and "does not take (key, patches, convert_func, set_func)" in report.summary()


def test_the_runtime_keeps_the_check_made_at_registration(host, pack_module):
    runtime = pack_module("distorch.host.runtime").Runtime()
    report = runtime.pipeline.split_runtime.host_report()
    assert report.ok and runtime.pipeline.split_runtime.host_report() is report  # made once, kept
