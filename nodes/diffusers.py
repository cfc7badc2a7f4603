"""``DisTorchDiffusersLoader``: a diffusers-format folder from models/diffusers, like the core
(deprecated) 'DiffusersLoader', with each part on the device you choose, the diffusion model
optionally split, and ``keep_loaded``. Before any weight is read, the folder's layout is checked
(distorch/host/diffusers_folder.py) and its small assets (model_index.json, each part's config.json)
are made sure of (distorch/host/assets.py: fetched where missing, or refused in offline mode). Then
the load pipeline runs the host's own diffusers loader, unchanged.
"""
from __future__ import annotations

import nodes as core_nodes

from ..distorch.host import load_pipeline
from ..distorch.host.diffusers_folder import find_folder, read_layout
from .loaders import CATEGORY, validate_allocation, with_part_devices, with_tooltips
from .bound import runtime_of

LOADED_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")  # what comfy.diffusers_load reads
TOOLTIPS = {
    "model_path": "A diffusers-format folder (model_index.json with unet/, vae/, text_encoder/) under "
                  "models/diffusers. Stable Diffusion 1.x / 2.x and SDXL layouts, as ComfyUI's diffusers loader reads.",
    "hf_repo": "Hub repository the folder came from (owner/name), used to fetch a missing model_index.json or "
               "config.json (never weights). Empty: the repository model_index.json or README.md names, if any.",
    "offline": "On: never go online; a missing model_index.json or config.json fails the load before any weight "
               "is read, naming the files and the command that fetches them. Also on with DISTORCH_OFFLINE=1 or "
               "HF_HUB_OFFLINE=1.",
}


class DisTorchDiffusersLoader(core_nodes.DiffusersLoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load a diffusers-format folder (model_index.json, unet/, vae/, text_encoder/) from "
                   "models/diffusers, choosing a device for each part; the diffusion model can be split across "
                   "devices (virtual_vram_gb / allocation). A missing model_index.json or config.json is fetched "
                   "from the hub (never weights), or refused in offline mode.")

    @classmethod
    def INPUT_TYPES(cls):
        inputs = with_tooltips(core_nodes.DiffusersLoader.INPUT_TYPES())
        inputs["required"]["model_path"] = (inputs["required"]["model_path"][0], {"tooltip": TOOLTIPS["model_path"]})
        inputs = with_part_devices(inputs, "the diffusion model (unet/)", "the text encoder(s)")
        inputs["optional"]["hf_repo"] = ("STRING", {"default": "", "advanced": True, "tooltip": TOOLTIPS["hf_repo"]})
        inputs["optional"]["offline"] = ("BOOLEAN", {"default": False, "advanced": True,
                                                     "tooltip": TOOLTIPS["offline"]})
        return inputs

    @classmethod
    def VALIDATE_INPUTS(cls, allocation=""):
        return validate_allocation(allocation)

    def load_distorch(self, model_path, compute_device, clip_device, vae_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation="", hf_repo="", offline=False):
        from ..distorch.host.assets import ensure_assets

        folder = find_folder(model_path)
        # model_index.json and the configs of the parts the host's loader reads, before any weight
        ensure_assets(folder, repo=hf_repo.strip() or None, offline=True if offline else None, parts=LOADED_PARTS)
        layout = read_layout(folder)
        unet_weights = str(layout.weights["unet"])
        request = load_pipeline.build_request(
            self.__class__.__name__, model_path, keep_loaded,
            [load_pipeline.part_request("unet", compute_device, split=(virtual_vram_gb, donor_device, allocation)),
             load_pipeline.part_request("clip", clip_device, "clip_device"),
             load_pipeline.part_request("vae", vae_device, "vae_device")],
            load_pipeline.FileCheck("diffusers", (model_path,), "diffusers folder's diffusion model", "model_path",
                               paths=(unet_weights,)))
        return runtime_of(self).pipeline.load(request, lambda: self.load_checkpoint(model_path),
                                                ("unet", "clip", "vae"))


DIFFUSERS_NODES = {"DisTorchDiffusersLoader": DisTorchDiffusersLoader}
DIFFUSERS_DISPLAY_NAMES = {"DisTorchDiffusersLoader": "Load Diffusers Folder (DisTorch)"}
