"""Checks, on the running ComfyUI, of the host internals a split relies on.

``DisTorchModelPatcher`` extends private parts of ComfyUI's ``ModelPatcher``: it reads entries of
``_load_list()`` by position (the module name third from the end, the module after it) and uses
``wipe_lowvram_weight``, ``move_weight_functions``, ``get_key_weight``, ``LowVramPatch``,
``patch_weight_to_device``, ``pin_weight_to_device``, ``unpin_weight``, ``backup``,
``weight_wrapper_patches`` and the model's ``model_loaded_weight_memory``. A ComfyUI release may
change any of them. ``check_host`` builds a tiny real ``ModelPatcher`` over a two-layer module on
the CPU and checks each on it; the split runs only on a host that passes (otherwise the model runs
unsplit, with one warning naming what differs), so a changed host never silently loads the
modules meant for a donor onto the compute device.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

PROBE_NAMES = ("first", "inner.second")


@dataclass(frozen=True)
class HostReport:
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return "the host's ModelPatcher internals match" if self.ok else "; ".join(self.problems)


def check_host(model_patcher=None, model_management=None, ops=None) -> HostReport:
    """Every internal the split uses, checked on a tiny real ModelPatcher. The host modules are
    imported unless passed in."""
    if model_patcher is None:
        import comfy.model_patcher as model_patcher
    if model_management is None:
        import comfy.model_management as model_management
    if ops is None:
        import comfy.ops as ops
    problems: list[str] = []
    try:
        patcher = model_patcher.ModelPatcher(_probe_model(ops), load_device=torch.device("cpu"),
                                             offload_device=torch.device("cpu"))
    except Exception as exc:
        return HostReport((f"ModelPatcher(model, load_device, offload_device) failed ({type(exc).__name__}: {exc})",))
    problems += _load_list_problems(patcher)
    problems += _name_problems(model_patcher, model_management, patcher)
    if not problems:
        problems += _lowvram_patch_problems(model_patcher, patcher)
    return HostReport(tuple(problems))


def _probe_model(ops):
    linear = ops.disable_weight_init.Linear

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first = linear(4, 4)
            self.inner = torch.nn.Module()
            self.inner.second = linear(4, 2)

    model = Probe()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(0.5)
    return model


def _load_list_problems(patcher) -> list[str]:
    """Entries end with (module name, module, parameter names) on every layout the split knows:
    0.3.x (offload bytes, bytes, name, module, params), newer legacy 5 fields, newer dynamic 6."""
    try:
        entries = patcher._load_list()
    except Exception as exc:
        return [f"ModelPatcher._load_list() failed ({type(exc).__name__}: {exc})"]
    modules = dict(patcher.model.named_modules())
    problems, seen = [], set()
    for entry in entries:
        if not isinstance(entry, (tuple, list)) or len(entry) < 3:
            return [f"ModelPatcher._load_list() entries are {type(entry).__name__} {entry!r:.80}; expected tuples "
                    "ending with (module name, module, parameter names)"]
        name, module, params = entry[-3], entry[-2], entry[-1]
        if not isinstance(name, str) or modules.get(name) is not module:
            problems.append(f"ModelPatcher._load_list() entry {tuple(type(f).__name__ for f in entry)}: the field "
                            f"third from the end is {type(name).__name__} {name!r:.40}, not the name of the module "
                            "after it")
            break
        if sorted(params) != sorted(n for n, _ in module.named_parameters(recurse=False)):
            problems.append(f"ModelPatcher._load_list() entry for '{name}': the last field {params!r:.60} is not the "
                            "module's parameter names")
            break
        seen.add(name)
    if not problems and not set(PROBE_NAMES) <= seen:
        problems.append(f"ModelPatcher._load_list() lists {sorted(seen)}, not the probe's layers {list(PROBE_NAMES)}")
    return problems


def _name_problems(model_patcher, model_management, patcher) -> list[str]:
    problems = []
    for name in ("wipe_lowvram_weight", "move_weight_functions", "get_key_weight", "LowVramPatch"):
        if not callable(getattr(model_patcher, name, None)):
            problems.append(f"comfy.model_patcher.{name} is missing")
    for name in ("patch_weight_to_device", "pin_weight_to_device", "unpin_weight", "_load_list", "load",
                 "unpatch_model"):
        if not callable(getattr(patcher, name, None)):
            problems.append(f"ModelPatcher.{name} is missing")
    for name in ("backup", "weight_wrapper_patches", "patches"):
        if not isinstance(getattr(patcher, name, None), dict):
            problems.append(f"ModelPatcher.{name} is {type(getattr(patcher, name, None)).__name__}, not a dict")
    for name in ("model_loaded_weight_memory", "lowvram_patch_counter"):
        if not isinstance(getattr(patcher.model, name, None), (int, float)):
            problems.append(f"ModelPatcher does not set model.{name}")
    if not isinstance(getattr(model_management, "current_loaded_models", None), list):
        problems.append("comfy.model_management.current_loaded_models is missing")
    if not callable(getattr(getattr(model_management, "LoadedModel", None), "model_unload", None)):
        problems.append("comfy.model_management.LoadedModel.model_unload is missing")
    low_vram_patch = getattr(model_patcher, "LowVramPatch", None)
    if low_vram_patch is not None:
        try:
            inspect.signature(low_vram_patch).bind("key", {}, None, None)
        except (TypeError, ValueError):
            problems.append(f"comfy.model_patcher.LowVramPatch{inspect.signature(low_vram_patch)} does not take "
                            "(key, patches, convert_func, set_func)")
    return problems


def _lowvram_patch_problems(model_patcher, patcher) -> list[str]:
    """The host's per-forward patch (what its lowvram mode puts in ``weight_function``) applied to
    the probe's weight must give weight + diff."""
    key = "first.weight"
    diff = torch.full((4, 4), 0.25)
    try:
        patcher.add_patches({key: ("diff", (diff,))}, 1.0)
        weight, set_func, convert_func = model_patcher.get_key_weight(patcher.model, key)
        patched = model_patcher.LowVramPatch(key, patcher.patches, convert_func, set_func)(weight.detach().clone())
    except Exception as exc:
        return [f"comfy.model_patcher.LowVramPatch failed on a diff patch ({type(exc).__name__}: {exc})"]
    if not torch.equal(patched, torch.full((4, 4), 0.75)):
        return ["comfy.model_patcher.LowVramPatch did not apply a diff patch as weight + diff"]
    return []
