"""Place nodes: a MODEL / CLIP / VAE from any loader (core, ComfyUI-GGUF, another pack) gets a
compute device, a split and the keep_loaded flag, without loading anything again. The input is
never changed: the node works on a clone (the host's own ``clone()``), through the same pipeline
steps as the DisTorch loaders (place -> record).

A device other than the one the loader built the model for is a retarget of the clone: the
weights keep the dtype the loader chose for its own device. Where that matters (fp8 or fp16
weights meant for a GPU, run on the CPU), choose the device on a DisTorch loader instead.
"""
from __future__ import annotations

import copy
import logging

import torch

from ..distorch.host import load_pipeline
from .loaders import add_split_inputs, device_input, validate_allocation
from .bound import runtime_of

log = logging.getLogger("distorch.place")
CATEGORY = "DisTorch/place"
KEEP_TOOLTIP = ("On: this model stays loaded when ComfyUI or ComfyUI-Manager unloads models. Off: it is flagged, "
                "and an unload removes it. (The loader before this node runs again after 'Free model and node "
                "cache'; only DisTorch loaders can hold a model through that.)")


def _keep_input():
    return ("BOOLEAN", {"default": False, "tooltip": KEEP_TOOLTIP})


def _retargeted(patcher, part, label: str):
    """``patcher`` moved to the part's device where one was chosen (the clone only)."""
    if part.device is None or str(patcher.load_device) == part.compute:
        return patcher
    log.info("%s: runs on %s instead of %s, where its loader built it (weights keep the loader's dtype)", label,
             part.compute, patcher.load_device)
    patcher.load_device = torch.device(part.compute)
    return patcher


def _source_of(patcher) -> str:
    from ..distorch.logic.placement_record import placement_of

    placement = placement_of(patcher)
    inner = getattr(patcher, "model", None)
    return placement.source if placement is not None else type(inner).__name__


class DisTorchPlaceModel:
    CATEGORY = CATEGORY
    FUNCTION = "place"
    RETURN_TYPES = ("MODEL",)
    DESCRIPTION = ("Give a diffusion model from any loader a compute device, a split across devices "
                   "(virtual_vram_gb / allocation) and keep_loaded, without loading it again.")

    @classmethod
    def INPUT_TYPES(cls):
        return add_split_inputs({"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model, from any loader."}),
            "compute_device": device_input("Device that runs this model. 'default' = where its loader put it."),
            "keep_loaded": _keep_input()}})

    @classmethod
    def VALIDATE_INPUTS(cls, allocation=""):
        return validate_allocation(allocation)

    def place(self, model, compute_device, keep_loaded, virtual_vram_gb=0.0, donor_device="cpu", allocation=""):
        part = load_pipeline.part_request("unet", compute_device, split=(virtual_vram_gb, donor_device, allocation))
        clone = _retargeted(model.clone(), part, type(self).__name__)
        if compute_device == "default":  # "where the loader put it": plan for that device
            part = load_pipeline.part_request("unet", str(clone.load_device),
                                         split=(virtual_vram_gb, donor_device, allocation))
        request = load_pipeline.build_request(type(self).__name__, _source_of(model), keep_loaded, [part])
        return runtime_of(self).pipeline.place(request, (clone,), ("unet",))


class DisTorchPlaceCLIP:
    CATEGORY = CATEGORY
    FUNCTION = "place"
    RETURN_TYPES = ("CLIP",)
    DESCRIPTION = ("Give a text encoder from any loader a compute device, a split across devices "
                   "(virtual_vram_gb / allocation) and keep_loaded, without loading it again.")

    @classmethod
    def INPUT_TYPES(cls):
        return add_split_inputs({"required": {
            "clip": ("CLIP", {"tooltip": "The text encoder, from any loader."}),
            "compute_device": device_input("Device that runs this text encoder. 'default' = where its loader "
                                           "put it."),
            "keep_loaded": _keep_input()}})

    @classmethod
    def VALIDATE_INPUTS(cls, allocation=""):
        return validate_allocation(allocation)

    def place(self, clip, compute_device, keep_loaded, virtual_vram_gb=0.0, donor_device="cpu", allocation=""):
        part = load_pipeline.part_request("clip", compute_device, split=(virtual_vram_gb, donor_device, allocation))
        clone = clip.clone()
        _retargeted(clone.patcher, part, type(self).__name__)
        if compute_device == "default":
            part = load_pipeline.part_request("clip", str(clone.patcher.load_device),
                                         split=(virtual_vram_gb, donor_device, allocation))
        request = load_pipeline.build_request(type(self).__name__, _source_of(clip.patcher), keep_loaded, [part])
        return runtime_of(self).pipeline.place(request, (clone,), ("clip",))


class DisTorchPlaceVAE:
    CATEGORY = CATEGORY
    FUNCTION = "place"
    RETURN_TYPES = ("VAE",)
    DESCRIPTION = "Give a VAE from any loader a compute device and keep_loaded, without loading it again."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": ("VAE", {"tooltip": "The VAE, from any loader."}),
            "compute_device": device_input("Device that runs this VAE. 'default' = where its loader put it."),
            "keep_loaded": _keep_input()}}

    def place(self, vae, compute_device, keep_loaded):
        part = load_pipeline.part_request("vae", compute_device)
        # The host's VAE has no clone(): a shallow copy with its own patcher clone is one.
        clone = copy.copy(vae)
        clone.patcher = vae.patcher.clone()
        if part.device is not None and str(clone.patcher.load_device) != part.compute:
            _retargeted(clone.patcher, part, type(self).__name__)
            clone.device = clone.patcher.load_device
        request = load_pipeline.build_request(type(self).__name__, _source_of(vae.patcher), keep_loaded, [part])
        return runtime_of(self).pipeline.place(request, (clone,), ("vae",))


PLACE_NODES = {"DisTorchPlaceModel": DisTorchPlaceModel, "DisTorchPlaceCLIP": DisTorchPlaceCLIP,
               "DisTorchPlaceVAE": DisTorchPlaceVAE}
PLACE_DISPLAY_NAMES = {"DisTorchPlaceModel": "Place Model (DisTorch)", "DisTorchPlaceCLIP": "Place CLIP (DisTorch)",
                       "DisTorchPlaceVAE": "Place VAE (DisTorch)"}
