"""Errors as ComfyUI's user reads them: an exception's type by its class name, not by the path
of the folder ComfyUI imported the pack from, and a VALIDATE_INPUTS message that does not repeat
the input name ComfyUI puts before it."""
import types

import pytest

from distorch.logic.errors import PACK, type_name


def comfyui_type_name(cls) -> str:
    """What ComfyUI's execution.full_type_name shows for an exception of class ``cls``."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


@pytest.mark.parametrize("module, name", [
    ("distorch.host.load_pipeline", "SplitFailed"), ("distorch.host.split_patcher", "SplitUnsupported"),
    ("distorch.host.split_patcher", "ReleaseFailed"), ("distorch.host.diffusers_folder", "FolderError"),
    ("distorch.host.assets", "AssetsMissing"), ("distorch.host.assets", "AssetsInvalid"),
    ("distorch.logic.planner", "PlanError"), ("distorch.logic.allocation", "AllocationError"),
    ("distorch.logic.devices", "DeviceNameError"), ("distorch.logic.gguf_tables", "GGUFUnavailable"),
])
def test_the_packs_errors_are_shown_by_class_name_wherever_comfyui_imported_the_pack(mm, pack_module, module, name):
    cls = getattr(pack_module(module), name)  # imported under a package name, as ComfyUI does (its path)
    assert comfyui_type_name(cls) == f"{PACK}.{name}"
    assert issubclass(cls, Exception) and cls.__qualname__ == name


def test_another_packs_class_is_named_without_its_folders_path():
    patcher = type("SomePatcher", (), {"__module__": "/home/me/ComfyUI/custom_nodes/SomePack.patcher"})
    assert type_name(patcher) == "SomePatcher (SomePack)"
    assert type_name(types.SimpleNamespace) == "SimpleNamespace (types)"
    assert type_name(ValueError) == "ValueError"


def test_an_allocation_error_on_the_node_does_not_repeat_the_input_name(mm, pack_module):
    loaders = pack_module("nodes.loaders")
    message = loaders.validate_allocation("cpu,2xb")  # ComfyUI shows it as 'allocation - <message>'
    assert message.startswith("unknown unit 'xb'") and "'cpu,2xb'" in message, message
    assert loaders.validate_allocation("cpu,2xb", "expert_mode_allocations").startswith("unknown unit 'xb'")
    assert loaders.validate_allocation("cpu,*") is True
    with pytest.raises(ValueError, match=r"^allocation: unknown unit 'xb'"):  # elsewhere it names the input
        pack_module("distorch.logic.allocation").parse_allocation("cpu,2xb", ["cpu"], "allocation")
