"""DisTorch loader nodes.

Each extends the core loader it is named after: the same file lists (read from the core class at
call time, so they follow the host's version), the same outputs, the same errors for missing
files. What it adds: the device the model runs on, chosen per node and carried by the model, and
the ``keep_loaded`` flag, and for diffusion models and text encoders a split across devices
(``virtual_vram_gb`` + ``donor_device``, or the expert ``allocation`` string). Each node is a
declaration: its inputs, and one call of the load pipeline (distorch/host/load_pipeline.py: request ->
plan -> the core loading function, unchanged, inside ``device_override`` -> place -> record).
"""
from __future__ import annotations

import logging

import nodes as core_nodes

from .. import device_utils
from ..distorch.host import load_pipeline
from .bound import runtime_of

log = logging.getLogger("distorch.loaders")
CATEGORY = "DisTorch/loaders"

# Tooltips for inputs the core classes declare without one (every input gets one).
CORE_INPUT_TOOLTIPS = {
    "unet_name": "Diffusion model (UNet / DiT) file from models/diffusion_models.",
    "weight_dtype": "Dtype the weights are stored in while loaded; 'default' keeps the file's own. "
                    "fp8 halves memory at some cost in quality.",
    "clip_name": "Text encoder file from models/text_encoders.",
    "clip_name1": "First text encoder file from models/text_encoders.",
    "clip_name2": "Second text encoder file from models/text_encoders.",
    "type": "Model family this text encoder is for (same recipes as the core CLIP loaders).",
    "vae_name": "VAE file from models/vae (or a TAESD approximation from models/vae_approx).",
    "ckpt_name": "Checkpoint file from models/checkpoints (diffusion model, text encoder and VAE in one).",
}
KEEP_LOADED_TOOLTIP = ("On: this model stays loaded when ComfyUI or ComfyUI-Manager unloads models (POST /free, "
                       "'Unload Models', 'Free model and node cache') and is reused without reading the file "
                       "again. Off: the model is flagged, and an unload removes exactly the flagged models. "
                       "POST /distorch/free with force unloads everything.")


SPLIT_TOOLTIPS = {
    "virtual_vram_gb": "GiB of this model's weights to park on donor_device instead of the compute device; "
                       "they are copied to the compute device layer by layer while it runs. 0 = no split "
                       "(the whole model on the compute device).",
    "donor_device": "Where the parked weights live: cpu (RAM as 'virtual VRAM') or another GPU. Used with "
                    "virtual_vram_gb, and with a fraction allocation such as 0.8.",
    "allocation": "Expert, overrides virtual_vram_gb: 'cuda:0,2.5gb;cpu,*' (bytes per device, * = the rest), "
                  "'cuda:0,25%;cpu,75%' (shares), or '0.8' (share kept on the compute device, the rest on "
                  "donor_device). Units are binary (1 gb = 1 GiB). Empty = use virtual_vram_gb.",
}


def split_inputs() -> dict:
    """The optional split inputs (optional so that workflows saved without them still run)."""
    return {
        "virtual_vram_gb": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1024.0, "step": 0.01,
                                      "tooltip": SPLIT_TOOLTIPS["virtual_vram_gb"]}),
        "donor_device": (device_utils.available_devices(), {"default": "cpu",
                                                            "tooltip": SPLIT_TOOLTIPS["donor_device"]}),
        "allocation": ("STRING", {"default": "", "multiline": False, "advanced": True,
                                  "tooltip": SPLIT_TOOLTIPS["allocation"]}),
    }


def add_split_inputs(inputs: dict) -> dict:
    inputs.setdefault("optional", {}).update(split_inputs())
    return inputs


def validation_message(message: str, input_name: str) -> str:
    """A VALIDATE_INPUTS message as ComfyUI shows it: it writes '<input> - <message>', so the
    message drops the '<input>: ' it starts with on the pack's other paths (routes, run time)."""
    prefix = f"{input_name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def validate_allocation(value, input_name: str = "allocation"):
    """VALIDATE_INPUTS helper for the allocation string: its grammar and device names, True or the
    message shown on that input. It is the only input a DisTorch node validates itself: ComfyUI
    reports a VALIDATE_INPUTS failure on every input the function takes, so devices (dropdowns)
    and virtual_vram_gb (a bounded number) are left to ComfyUI's own checks, which report one
    error on the input that holds the bad value. What depends on the compute device (its share in
    the allocation) is checked when the node runs, before anything loads."""
    from ..distorch.logic.allocation import parse_allocation

    try:
        parse_allocation(value, device_utils.available_devices(), input_name)
    except ValueError as exc:
        return validation_message(str(exc), input_name)
    return True


def with_pack_inputs(inputs: dict, runs: str, split: bool = True) -> dict:
    """A loader's inputs plus the pack's own: compute_device (the device that runs ``runs``),
    keep_loaded and, where the model can be split, the optional split inputs."""
    inputs.setdefault("required", {})
    inputs["required"]["compute_device"] = device_input(
        f"Device that runs {runs}. 'default' = the device ComfyUI would choose.")
    inputs["required"]["keep_loaded"] = keep_loaded_input()
    return add_split_inputs(inputs) if split else inputs


def with_part_devices(inputs: dict, diffusion_model: str = "the diffusion model",
                      text_encoder: str = "the text encoder") -> dict:
    """A loader of a whole model (checkpoint, diffusers folder): a device for each part,
    keep_loaded, and the split inputs, which split its diffusion model."""
    inputs["required"]["compute_device"] = device_input(
        f"Device that runs {diffusion_model}. 'default' = the device ComfyUI would choose.")
    inputs["required"]["clip_device"] = device_input(
        f"Device that runs {text_encoder}. 'default' = the device ComfyUI would choose for it.")
    inputs["required"]["vae_device"] = device_input(
        "Device that runs the VAE. 'default' = the device ComfyUI would choose for it.")
    inputs["required"]["keep_loaded"] = keep_loaded_input()
    inputs = add_split_inputs(inputs)
    for name in ("virtual_vram_gb", "allocation"):  # the split applies to the diffusion model
        options = inputs["optional"][name][1]
        options["tooltip"] = "Diffusion model only. " + options["tooltip"]
    return inputs


def device_input(tooltip: str):
    return (device_utils.device_choices(), {"default": device_utils.DEFAULT_DEVICE, "tooltip": tooltip})


def keep_loaded_input():
    return ("BOOLEAN", {"default": False, "tooltip": KEEP_LOADED_TOOLTIP})


def with_tooltips(core_inputs: dict, drop: tuple[str, ...] = ()) -> dict:
    """A copy of a core INPUT_TYPES dict, every input given a tooltip, ``drop`` removed."""
    result = {}
    for section, inputs in core_inputs.items():
        copied = {}
        for name, spec in inputs.items():
            if name in drop:
                continue
            options = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if "tooltip" not in options and name in CORE_INPUT_TOOLTIPS:
                options["tooltip"] = CORE_INPUT_TOOLTIPS[name]
            copied[name] = (spec[0], options)
        if copied:
            result[section] = copied
    return result


class DisTorchUNETLoader(core_nodes.UNETLoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load a diffusion model (UNet / DiT) like the core 'Load Diffusion Model' node, "
                   "on the device you choose; optionally split across devices (virtual_vram_gb / allocation).")

    @classmethod
    def INPUT_TYPES(cls):
        inputs = with_tooltips(core_nodes.UNETLoader.INPUT_TYPES())
        return with_pack_inputs(inputs, "this model")

    @classmethod
    def VALIDATE_INPUTS(cls, allocation=""):
        return validate_allocation(allocation)

    def load_distorch(self, unet_name, weight_dtype, compute_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation=""):
        request = load_pipeline.build_request(
            type(self).__name__, unet_name, keep_loaded,
            [load_pipeline.part_request("unet", compute_device, split=(virtual_vram_gb, donor_device, allocation))],
            load_pipeline.FileCheck("diffusion_models", (unet_name,), "diffusion model", "unet_name",
                               weight_dtype=weight_dtype))
        return runtime_of(self).pipeline.load(request, lambda: self.load_unet(unet_name, weight_dtype), ("unet",))


class DisTorchCLIPLoader(core_nodes.CLIPLoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load a text encoder like the core 'Load CLIP' node, on the device you choose; optionally "
                   "split across devices (virtual_vram_gb / allocation).")

    @classmethod
    def INPUT_TYPES(cls):
        # The core's optional 'device' (default/cpu) is replaced by compute_device.
        inputs = with_tooltips(core_nodes.CLIPLoader.INPUT_TYPES(), drop=("device",))
        return with_pack_inputs(inputs, "this text encoder")

    @classmethod
    def VALIDATE_INPUTS(cls, allocation=""):
        return validate_allocation(allocation)

    def load_distorch(self, clip_name, type, compute_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation=""):
        request = load_pipeline.build_request(
            self.__class__.__name__, clip_name, keep_loaded,
            [load_pipeline.part_request("clip", compute_device, split=(virtual_vram_gb, donor_device, allocation))],
            load_pipeline.FileCheck("text_encoders", (clip_name,), "text encoder", "clip_name"))
        return runtime_of(self).pipeline.load(request, lambda: self.load_clip(clip_name, type), ("clip",))


class DisTorchDualCLIPLoader(core_nodes.DualCLIPLoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load two text encoders like the core 'DualCLIPLoader' node, on the device you choose; "
                   "optionally split across devices (virtual_vram_gb / allocation).")

    @classmethod
    def INPUT_TYPES(cls):
        inputs = with_tooltips(core_nodes.DualCLIPLoader.INPUT_TYPES(), drop=("device",))
        return with_pack_inputs(inputs, "these text encoders")

    @classmethod
    def VALIDATE_INPUTS(cls, allocation=""):
        return validate_allocation(allocation)

    def load_distorch(self, clip_name1, clip_name2, type, compute_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation=""):
        request = load_pipeline.build_request(
            self.__class__.__name__, f"{clip_name1} + {clip_name2}", keep_loaded,
            [load_pipeline.part_request("clip", compute_device, split=(virtual_vram_gb, donor_device, allocation))],
            load_pipeline.FileCheck("text_encoders", (clip_name1, clip_name2), "text encoder", "clip_name1"))
        return runtime_of(self).pipeline.load(request, lambda: self.load_clip(clip_name1, clip_name2, type),
                                                ("clip",))


class DisTorchVAELoader(core_nodes.VAELoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = "Load a VAE like the core 'Load VAE' node, on the device you choose."

    @classmethod
    def INPUT_TYPES(cls):
        inputs = with_tooltips(core_nodes.VAELoader.INPUT_TYPES())
        return with_pack_inputs(inputs, "this VAE", split=False)

    def load_distorch(self, vae_name, compute_device, keep_loaded):
        request = load_pipeline.build_request(self.__class__.__name__, vae_name, keep_loaded,
                                         [load_pipeline.part_request("vae", compute_device)],
                                         load_pipeline.FileCheck("vae", (vae_name,), "VAE", "vae_name"))
        return runtime_of(self).pipeline.load(request, lambda: self.load_vae(vae_name), ("vae",))


class DisTorchCheckpointLoader(core_nodes.CheckpointLoaderSimple):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load a checkpoint like the core 'Load Checkpoint' node, choosing a device for "
                   "each part: diffusion model, text encoder, VAE; the diffusion model can be split across "
                   "devices (virtual_vram_gb / allocation).")

    @classmethod
    def INPUT_TYPES(cls):
        return with_part_devices(with_tooltips(core_nodes.CheckpointLoaderSimple.INPUT_TYPES()))

    @classmethod
    def VALIDATE_INPUTS(cls, allocation=""):
        return validate_allocation(allocation)

    def load_distorch(self, ckpt_name, compute_device, clip_device, vae_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation=""):
        request = load_pipeline.build_request(
            self.__class__.__name__, ckpt_name, keep_loaded,
            [load_pipeline.part_request("unet", compute_device, split=(virtual_vram_gb, donor_device, allocation)),
             load_pipeline.part_request("clip", clip_device, "clip_device"),
             load_pipeline.part_request("vae", vae_device, "vae_device")],
            load_pipeline.FileCheck("checkpoints", (ckpt_name,), "checkpoint", "ckpt_name", prefix="model.diffusion_model."))
        return runtime_of(self).pipeline.load(request, lambda: self.load_checkpoint(ckpt_name)[:3],
                                                ("unet", "clip", "vae"))


LOADER_NODES = {
    "DisTorchUNETLoader": DisTorchUNETLoader,
    "DisTorchCLIPLoader": DisTorchCLIPLoader,
    "DisTorchDualCLIPLoader": DisTorchDualCLIPLoader,
    "DisTorchVAELoader": DisTorchVAELoader,
    "DisTorchCheckpointLoader": DisTorchCheckpointLoader,
}
LOADER_DISPLAY_NAMES = {
    "DisTorchUNETLoader": "Load Diffusion Model (DisTorch)",
    "DisTorchCLIPLoader": "Load CLIP (DisTorch)",
    "DisTorchDualCLIPLoader": "DualCLIPLoader (DisTorch)",
    "DisTorchVAELoader": "Load VAE (DisTorch)",
    "DisTorchCheckpointLoader": "Load Checkpoint (DisTorch)",
}
