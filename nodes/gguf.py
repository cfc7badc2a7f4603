"""DisTorch loaders for ComfyUI-GGUF's quantized models: registered only where ComfyUI-GGUF is
installed. Each one is ComfyUI-GGUF's own loader node (looked up in ComfyUI's registry when it
runs, never imported or copied) plus the pack's inputs, through the same load pipeline as the
other DisTorch loaders: the device, a split whose offloaded layers stay quantized on the donor
(ComfyUI-GGUF's layers dequantize each one on the compute device as it runs), and keep_loaded.
"""
from __future__ import annotations

import logging
import os
import sys

from ..distorch.host import load_pipeline
from .loaders import validate_allocation, with_pack_inputs, with_tooltips
from .bound import runtime_of

log = logging.getLogger("distorch.gguf")
CATEGORY = "DisTorch/loaders (GGUF)"
PACK_INPUTS = ("compute_device", "keep_loaded", "virtual_vram_gb", "donor_device", "allocation")
# our node -> (ComfyUI-GGUF's node, the part it loads, the inputs naming its files, folder)
GGUF_LOADERS = {
    "DisTorchUnetLoaderGGUF": ("UnetLoaderGGUF", "unet", ("unet_name",), "diffusion_models", "diffusion model"),
    "DisTorchCLIPLoaderGGUF": ("CLIPLoaderGGUF", "clip", ("clip_name",), "text_encoders", "text encoder"),
    "DisTorchDualCLIPLoaderGGUF": ("DualCLIPLoaderGGUF", "clip", ("clip_name1", "clip_name2"), "text_encoders",
                                   "text encoder"),
}
DISPLAY_NAMES = {
    "DisTorchUnetLoaderGGUF": "Unet Loader GGUF (DisTorch)",
    "DisTorchCLIPLoaderGGUF": "CLIPLoader GGUF (DisTorch)",
    "DisTorchDualCLIPLoaderGGUF": "DualCLIPLoader GGUF (DisTorch)",
}
MISSING = ("ComfyUI-GGUF's {node} node is not loaded in this ComfyUI (its import may have failed: see the "
           "log under 'Import times for custom nodes'). Install or repair ComfyUI-GGUF, then restart ComfyUI.")


def comfyui_gguf_installed() -> bool:
    """Whether ComfyUI-GGUF is (or will be) loaded: already registered, or a folder of it in
    custom_nodes (packs load in folder order, so it may come after this one)."""
    registry = getattr(sys.modules.get("nodes"), "NODE_CLASS_MAPPINGS", {}) or {}
    if "UnetLoaderGGUF" in registry:
        return True
    try:
        import folder_paths

        roots = folder_paths.get_folder_paths("custom_nodes")
    except Exception:
        return False
    for root in roots:
        try:
            entries = os.listdir(root)
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".disabled"):
                continue
            source = os.path.join(root, entry, "nodes.py")
            try:
                with open(source, encoding="utf-8", errors="replace") as handle:
                    if "class UnetLoaderGGUF" in handle.read():
                        return True
            except OSError:
                continue
    return False


def upstream(name: str):
    """ComfyUI-GGUF's node class, from ComfyUI's registry."""
    import nodes as core_nodes

    found = core_nodes.NODE_CLASS_MAPPINGS.get(name)
    if found is None:
        raise RuntimeError(MISSING.format(node=name))
    return found


def make_loader(node_name: str):
    upstream_name, component, file_inputs, folder, kind = GGUF_LOADERS[node_name]

    class Loader:
        CATEGORY = globals()["CATEGORY"]
        FUNCTION = "load_distorch"
        RETURN_TYPES = ("MODEL",) if component == "unet" else ("CLIP",)
        DESCRIPTION = (f"ComfyUI-GGUF's {upstream_name} on the device you choose, optionally split across devices "
                       "(virtual_vram_gb / allocation): the parked layers stay quantized on the donor and are "
                       "dequantized one at a time on the compute device.")

        @classmethod
        def INPUT_TYPES(cls):
            try:
                inputs = with_tooltips(upstream(upstream_name).INPUT_TYPES())
            except RuntimeError:
                inputs = {"required": {}}
            return with_pack_inputs(inputs, "this model")

        @classmethod
        def VALIDATE_INPUTS(cls, allocation=""):
            return validate_allocation(allocation)

        def load_distorch(self, compute_device, keep_loaded, virtual_vram_gb=0.0, donor_device="cpu",
                          allocation="", **core_inputs):
            names = tuple(str(core_inputs.get(name, "")) for name in file_inputs)
            request = load_pipeline.build_request(
                type(self).__name__, " + ".join(names), keep_loaded,
                [load_pipeline.part_request(component, compute_device,
                                       split=(virtual_vram_gb, donor_device, allocation))],
                load_pipeline.FileCheck(folder, names, kind, file_inputs[0]))
            core = upstream(upstream_name)()
            return runtime_of(self).pipeline.load(
                request, lambda: getattr(core, core.FUNCTION)(**core_inputs), (component,))

    Loader.__name__ = Loader.__qualname__ = node_name
    return Loader


# The node classes (definitions, built once like the other loader classes; registered only beside
# ComfyUI-GGUF). The MultiGPU-compatible GGUF nodes load through them too.
GGUF_LOADER_CLASSES = {name: make_loader(name) for name in GGUF_LOADERS}


def gguf_nodes() -> tuple[dict, dict]:
    """(class mappings, display names) of the GGUF loaders, empty where ComfyUI-GGUF is absent."""
    if not comfyui_gguf_installed():
        log.info("comfyui-distorch: ComfyUI-GGUF is not installed, so the DisTorch GGUF loaders are not "
                 "registered (install ComfyUI-GGUF to split .gguf models)")
        return {}, {}
    return dict(GGUF_LOADER_CLASSES), dict(DISPLAY_NAMES)
