"""What makes two keep_loaded loads the same: every file input's file (or diffusers folder) as it
is on disk, so a kept copy is never reused after its file changed."""
from __future__ import annotations

import os

import pytest


@pytest.fixture
def keep_loaded(mm, pack_module, tmp_path, monkeypatch):
    import folder_paths

    for folder in ("text_encoders", "controlnet", "diffusers", "clip_vision", "checkpoints"):
        (tmp_path / folder).mkdir()
        monkeypatch.setitem(folder_paths.folder_names_and_paths, folder,
                            ([str(tmp_path / folder)], folder_paths.supported_pt_extensions | {""}))
    folder_paths.filename_list_cache.clear()
    return pack_module("nodes.keep_loaded"), tmp_path


def touch(path, data: bytes, when: int):
    path.write_bytes(data)
    os.utime(path, ns=(when, when))


@pytest.mark.parametrize("input_name, folder", [("clip_name3", "text_encoders"), ("clip_name4", "text_encoders"),
                                                ("control_net_name", "controlnet"), ("ckpt_name", "checkpoints")])
def test_a_changed_file_is_another_load(keep_loaded, input_name, folder):
    module, root = keep_loaded
    path = root / folder / "x.safetensors"
    touch(path, b"one", 1_000_000_000)
    before = module.retention_key("Loader", {input_name: "x.safetensors", "keep_loaded": True})
    assert before == module.retention_key("Loader", {input_name: "x.safetensors", "keep_loaded": False})
    touch(path, b"two", 2_000_000_000)  # same name and size, written again
    assert module.retention_key("Loader", {input_name: "x.safetensors"}) != before


def test_a_changed_file_inside_a_diffusers_folder_is_another_load(keep_loaded):
    module, root = keep_loaded
    unet = root / "diffusers" / "sd" / "unet"
    unet.mkdir(parents=True)
    touch(unet / "diffusion_pytorch_model.safetensors", b"weights", 1_000_000_000)
    touch(root / "diffusers" / "sd" / "model_index.json", b"{}", 1_000_000_000)
    before = module.retention_key("DisTorchDiffusersLoader", {"model_path": "sd"})
    assert before == module.retention_key("DisTorchDiffusersLoader", {"model_path": "sd"})
    touch(unet / "diffusion_pytorch_model.safetensors", b"WEIGHTS", 2_000_000_000)
    assert module.retention_key("DisTorchDiffusersLoader", {"model_path": "sd"}) != before


def test_a_loader_names_the_folder_of_its_own_file_inputs(keep_loaded):
    """CLIPVisionLoader's clip_name is in clip_vision, not text_encoders: its FILE_FOLDERS say so."""
    module, root = keep_loaded
    touch(root / "clip_vision" / "v.safetensors", b"one", 1_000_000_000)
    first = module.retention_key("CLIPVisionLoaderMultiGPU", {"clip_name": "v.safetensors"},
                                 {"clip_name": "clip_vision"})
    assert dict(first[1])["clip_name:file"][1] == 3  # found, with its size
    touch(root / "clip_vision" / "v.safetensors", b"two!", 2_000_000_000)
    assert module.retention_key("CLIPVisionLoaderMultiGPU", {"clip_name": "v.safetensors"},
                                {"clip_name": "clip_vision"}) != first


def test_every_file_input_of_every_loader_is_in_the_identity(mm, pack_module):
    """No loader has a file input the identity does not look at (the bug: model_path,
    control_net_name, clip_name3, clip_name4 were left out)."""
    keep_loaded = pack_module("nodes.keep_loaded")
    nodes = pack_module("nodes")
    multigpu = pack_module("nodes.multigpu")
    classes = {**nodes.LOADER_NODES, **nodes.DIFFUSERS_NODES, **multigpu.PLACED_LOADS}
    missing = {}
    for name, cls in classes.items():
        known = {**keep_loaded.FILE_INPUTS, **getattr(cls, "FILE_FOLDERS", {})}
        row = getattr(cls, "ROW", None)
        if row is not None and row.core in multigpu.CORE_FACTS:
            inputs = multigpu.CORE_FACTS[row.core].files
        else:
            declared = (multigpu.core_class(row.core) if row is not None else cls).INPUT_TYPES()
            inputs = [key for key in declared.get("required", {})
                      if key.endswith(("_name", "_name1", "_name2", "_name3", "_name4", "_path"))]
        gaps = [key for key in inputs if key not in known]
        if gaps:
            missing[name] = gaps
    assert not missing, missing
