"""DisTorch loader nodes.

Each extends the core loader it is named after: the same file lists (read from the core class at
call time, so they follow the host's version), the same outputs, the same errors for missing
files. What it adds: the device the model runs on, chosen per node and carried by the model, and
the ``keep_loaded`` flag, and for diffusion models and text encoders a split across devices
(``virtual_vram_gb`` + ``donor_device``, or the expert ``allocation`` string). The core loading
function runs unchanged inside a ``device_override`` block; nothing of it is copied. A split is
checked against the file's header before loading, then planned on the loaded model and applied
through the model's ModelPatcher (distorch/split_model.py).
"""
from __future__ import annotations

import gc
import logging
import os

import folder_paths
import nodes as core_nodes

from .. import device_utils
from ..distorch.checks import explain_load_failure
from ..distorch.device_context import add_device_context
from ..distorch.placement import ModelPlacement, attach
from ..distorch.split import split_request
from ..model_management_mgpu import device_override

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


def compute_name(device, role: str) -> str:
    """The device a model will run on: the node's choice, else what the host picks for ``role``."""
    if device is not None:
        return str(device)
    import comfy.model_management as mm

    return str(mm.text_encoder_device() if role == "clip" else mm.get_torch_device())


def request_for(compute: str, virtual_vram_gb, donor_device, allocation):
    """The split the inputs ask for (None = no split); raises ValueError naming the bad input."""
    return split_request(compute, device_utils.available_devices(), virtual_vram_gb, donor_device, allocation)


def validate_split(compute_device, role: str, virtual_vram_gb, donor_device, allocation):
    """VALIDATE_INPUTS helper for compute_device and the split inputs: True, or the message shown on
    the node (a bad device name is a DeviceNameError, a ValueError, so it is reported here too)."""
    try:
        device = device_utils.resolve_device(compute_device, "compute_device")
        compute = compute_name(device, role)
        request = request_for(compute, virtual_vram_gb, donor_device, allocation)
    except ValueError as exc:
        return str(exc)
    if request is not None and role == "clip" and compute != "cpu":
        # A text encoder under DynamicVRAM cannot be swapped for a plain copy: say so before loading.
        import comfy.model_patcher as model_patcher

        from ..distorch import dynamic_vram

        if dynamic_vram.host_uses_dynamic_vram(model_patcher):
            return dynamic_vram.MESSAGE
    return True


def split_runtime():
    """The split's runtime (host check and transfer checks, made once), held by the loaders."""
    global _split_runtime
    if _split_runtime is None:
        from ..distorch.split_model import SplitRuntime

        _split_runtime = SplitRuntime()
    return _split_runtime


_split_runtime = None


def check_split_host():
    """For the pack's registration: check this ComfyUI's internals the split uses now (the result
    is kept for every later split) and return the report (``.ok``, ``.summary()``)."""
    return split_runtime().host_report()


def precheck(request, folder: str, names: list[str], prefix: str = "", weight_dtype: str = "default") -> None:
    """Refuse an allocation that cannot hold the model, from the file header, before loading."""
    if request is None:
        return
    from ..distorch.planner import PlanError
    from ..distorch.split_model import precheck_files

    paths = [folder_paths.get_full_path(folder, name) for name in names]
    if any(path is None or not path.endswith((".safetensors", ".sft")) for path in paths):
        return  # the core reports missing files; other formats have no header to read
    try:
        precheck_files(paths, request, split_runtime(), prefix, weight_dtype)
    except PlanError:
        raise
    except Exception as exc:  # an unreadable header: the core load reports the file itself
        log.debug("no header precheck for %s: %s", names, exc)


def apply_split_inputs(holder, get_patcher, label: str, virtual_vram_gb, donor_device, allocation, runtime=None):
    """Plan and apply the split on a loaded model; returns the holder to output. A MODEL holder is
    its patcher: the split patcher (a clone) is returned in its place. A CLIP holds ``.patcher``:
    it is replaced by the split one, after everything else succeeded. On failure the loaded
    model is as it was, and this function's references to it are dropped before the error is
    raised (no exception chain keeps them), so it is freed with the node's outputs."""
    patcher = get_patcher(holder)
    request = request_for(str(patcher.load_device), virtual_vram_gb, donor_device, allocation)
    if request is None:
        return holder
    from ..distorch.split_model import split_loaded_model

    runtime = runtime if runtime is not None else split_runtime()
    if runtime.split_blocked(label):  # before a DynamicVRAM copy reads the file again
        return holder
    from ..distorch.apply import release_if_loaded

    failure = None
    loaded = patcher
    try:
        if holder is patcher:  # a MODEL: under DynamicVRAM, split the host's plain copy of it
            holder = patcher = without_dynamic_vram(patcher, label)
        split = split_loaded_model(patcher, request, label, runtime).patcher
        if patcher is not loaded:
            # The dynamic model the copy replaces, released last (a model that fits may have been
            # loaded while it was built): a failure before this point leaves it as it was.
            release_if_loaded(loaded)
        if holder is patcher:
            holder = split
        else:
            holder.patcher = split
    except (ValueError, RuntimeError) as exc:  # PlanError, SplitUnsupported, ReleaseFailed
        failure = str(exc)
    if failure is not None:
        holder = patcher = loaded = split = None
        gc.collect()
        raise RuntimeError(failure)
    return holder


def without_dynamic_vram(patcher, label: str):
    """``patcher`` itself, or for a DynamicVRAM model the host's plain ModelPatcher copy of it
    (built again from the file; the caller releases and drops the dynamic one once the copy is
    split). Where the host has no such copy the split step refuses the model with its message."""
    import comfy.model_patcher as model_patcher
    import torch

    from ..distorch import dynamic_vram

    if not dynamic_vram.is_dynamic(patcher, model_patcher):
        return patcher
    # Rebuilt for the device the model runs on, as the first load was (dtype and cast choices).
    with device_override(compute=torch.device(patcher.load_device)):
        copy = dynamic_vram.static_copy(patcher, model_patcher)
    if copy is None:
        return patcher
    log.info("%s: ComfyUI's DynamicVRAM is on; splitting ComfyUI's own non-dynamic copy of the model "
             "(the file is read a second time; the dynamic one is dropped)", label)
    return copy


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


def validate_device_value(value, input_name: str):
    """VALIDATE_INPUTS helper: True, or the message the UI shows on the node."""
    try:
        device_utils.resolve_device(value, input_name)
    except device_utils.DeviceNameError as exc:
        return str(exc)
    return True


def device_label(device) -> str:
    return str(device) if device is not None else device_utils.DEFAULT_DEVICE


def run_load(load, path_folder: str, file_name: str, expected_kind: str, input_name: str):
    """Run a core loader; turn its failure into a message about the file and the next step."""
    try:
        return load()
    except Exception as exc:
        path = folder_paths.get_full_path(path_folder, file_name) if file_name else None
        if path is None or not os.path.exists(path):
            raise  # the core's own "not found" error is already clear
        raise RuntimeError(explain_load_failure(path, expected_kind, input_name, exc)) from exc


def record(patcher, node_class: str, component: str, requested: str, keep_loaded: bool, source: str):
    placement = ModelPlacement(loader=node_class, component=component,
                               compute_device=str(patcher.load_device), requested_device=requested,
                               keep_loaded=bool(keep_loaded), source=source)
    attach(patcher, placement)
    if component == "unet":
        add_device_context(patcher)
    log.info("%s: %s '%s' on %s (keep_loaded=%s)", node_class, component, source,
             placement.compute_device, placement.keep_loaded)
    return placement


class DisTorchUNETLoader(core_nodes.UNETLoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load a diffusion model (UNet / DiT) like the core 'Load Diffusion Model' node, "
                   "on the device you choose; optionally split across devices (virtual_vram_gb / allocation).")

    @classmethod
    def INPUT_TYPES(cls):
        inputs = with_tooltips(core_nodes.UNETLoader.INPUT_TYPES())
        inputs["required"]["compute_device"] = device_input(
            "Device that runs this model. 'default' = the device ComfyUI would choose.")
        inputs["required"]["keep_loaded"] = keep_loaded_input()
        return add_split_inputs(inputs)

    @classmethod
    def VALIDATE_INPUTS(cls, compute_device, virtual_vram_gb=0.0, donor_device="cpu", allocation=""):
        return validate_split(compute_device, "unet", virtual_vram_gb, donor_device, allocation)

    def load_distorch(self, unet_name, weight_dtype, compute_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation=""):
        device = device_utils.resolve_device(compute_device, "compute_device")
        precheck(request_for(compute_name(device, "unet"), virtual_vram_gb, donor_device, allocation),
                 "diffusion_models", [unet_name], weight_dtype=weight_dtype)
        with device_override(compute=device):
            (model,) = run_load(lambda: self.load_unet(unet_name, weight_dtype), "diffusion_models",
                                unet_name, "diffusion model", "unet_name")
        record(model, self.__class__.__name__, "unet", compute_device, keep_loaded, unet_name)
        model = apply_split_inputs(model, lambda m: m, f"{self.__class__.__name__} '{unet_name}'",
                                   virtual_vram_gb, donor_device, allocation)
        return (model,)


class DisTorchCLIPLoader(core_nodes.CLIPLoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load a text encoder like the core 'Load CLIP' node, on the device you choose; optionally "
                   "split across devices (virtual_vram_gb / allocation).")

    @classmethod
    def INPUT_TYPES(cls):
        # The core's optional 'device' (default/cpu) is replaced by compute_device.
        inputs = with_tooltips(core_nodes.CLIPLoader.INPUT_TYPES(), drop=("device",))
        inputs["required"]["compute_device"] = device_input(
            "Device that runs this text encoder. 'default' = the device ComfyUI would choose.")
        inputs["required"]["keep_loaded"] = keep_loaded_input()
        return add_split_inputs(inputs)

    @classmethod
    def VALIDATE_INPUTS(cls, compute_device, virtual_vram_gb=0.0, donor_device="cpu", allocation=""):
        return validate_split(compute_device, "clip", virtual_vram_gb, donor_device, allocation)

    def load_distorch(self, clip_name, type, compute_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation=""):
        device = device_utils.resolve_device(compute_device, "compute_device")
        precheck(request_for(compute_name(device, "clip"), virtual_vram_gb, donor_device, allocation),
                 "text_encoders", [clip_name])
        with device_override(text_encoder=device):
            (clip,) = run_load(lambda: self.load_clip(clip_name, type), "text_encoders",
                               clip_name, "text encoder", "clip_name")
        record(clip.patcher, self.__class__.__name__, "clip", compute_device, keep_loaded, clip_name)
        clip = apply_split_inputs(clip, lambda c: c.patcher, f"{self.__class__.__name__} '{clip_name}'",
                                  virtual_vram_gb, donor_device, allocation)
        return (clip,)


class DisTorchDualCLIPLoader(core_nodes.DualCLIPLoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load two text encoders like the core 'DualCLIPLoader' node, on the device you choose; "
                   "optionally split across devices (virtual_vram_gb / allocation).")

    @classmethod
    def INPUT_TYPES(cls):
        inputs = with_tooltips(core_nodes.DualCLIPLoader.INPUT_TYPES(), drop=("device",))
        inputs["required"]["compute_device"] = device_input(
            "Device that runs these text encoders. 'default' = the device ComfyUI would choose.")
        inputs["required"]["keep_loaded"] = keep_loaded_input()
        return add_split_inputs(inputs)

    @classmethod
    def VALIDATE_INPUTS(cls, compute_device, virtual_vram_gb=0.0, donor_device="cpu", allocation=""):
        return validate_split(compute_device, "clip", virtual_vram_gb, donor_device, allocation)

    def load_distorch(self, clip_name1, clip_name2, type, compute_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation=""):
        device = device_utils.resolve_device(compute_device, "compute_device")
        precheck(request_for(compute_name(device, "clip"), virtual_vram_gb, donor_device, allocation),
                 "text_encoders", [clip_name1, clip_name2])
        with device_override(text_encoder=device):
            (clip,) = run_load(lambda: self.load_clip(clip_name1, clip_name2, type), "text_encoders",
                               clip_name1, "text encoder", "clip_name1")
        record(clip.patcher, self.__class__.__name__, "clip", compute_device, keep_loaded,
               f"{clip_name1} + {clip_name2}")
        clip = apply_split_inputs(clip, lambda c: c.patcher,
                                  f"{self.__class__.__name__} '{clip_name1} + {clip_name2}'",
                                  virtual_vram_gb, donor_device, allocation)
        return (clip,)


class DisTorchVAELoader(core_nodes.VAELoader):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = "Load a VAE like the core 'Load VAE' node, on the device you choose."

    @classmethod
    def INPUT_TYPES(cls):
        inputs = with_tooltips(core_nodes.VAELoader.INPUT_TYPES())
        inputs["required"]["compute_device"] = device_input(
            "Device that runs this VAE. 'default' = the device ComfyUI would choose.")
        inputs["required"]["keep_loaded"] = keep_loaded_input()
        return inputs

    @classmethod
    def VALIDATE_INPUTS(cls, compute_device):
        return validate_device_value(compute_device, "compute_device")

    def load_distorch(self, vae_name, compute_device, keep_loaded):
        device = device_utils.resolve_device(compute_device, "compute_device")
        with device_override(vae=device):
            (vae,) = run_load(lambda: self.load_vae(vae_name), "vae", vae_name, "VAE", "vae_name")
        record(vae.patcher, self.__class__.__name__, "vae", compute_device, keep_loaded, vae_name)
        return (vae,)


class DisTorchCheckpointLoader(core_nodes.CheckpointLoaderSimple):
    CATEGORY = CATEGORY
    FUNCTION = "load_distorch"
    DESCRIPTION = ("Load a checkpoint like the core 'Load Checkpoint' node, choosing a device for "
                   "each part: diffusion model, text encoder, VAE; the diffusion model can be split across "
                   "devices (virtual_vram_gb / allocation).")

    @classmethod
    def INPUT_TYPES(cls):
        inputs = with_tooltips(core_nodes.CheckpointLoaderSimple.INPUT_TYPES())
        inputs["required"]["compute_device"] = device_input(
            "Device that runs the diffusion model. 'default' = the device ComfyUI would choose.")
        inputs["required"]["clip_device"] = device_input(
            "Device that runs the text encoder. 'default' = the device ComfyUI would choose for it.")
        inputs["required"]["vae_device"] = device_input(
            "Device that runs the VAE. 'default' = the device ComfyUI would choose for it.")
        inputs["required"]["keep_loaded"] = keep_loaded_input()
        inputs = add_split_inputs(inputs)
        for name in ("virtual_vram_gb", "allocation"):  # the split applies to the diffusion model
            options = inputs["optional"][name][1]
            options["tooltip"] = "Diffusion model only. " + options["tooltip"]
        return inputs

    @classmethod
    def VALIDATE_INPUTS(cls, compute_device, clip_device, vae_device, virtual_vram_gb=0.0, donor_device="cpu",
                        allocation=""):
        for value, name in ((compute_device, "compute_device"), (clip_device, "clip_device"),
                            (vae_device, "vae_device")):
            verdict = validate_device_value(value, name)
            if verdict is not True:
                return verdict
        return validate_split(compute_device, "unet", virtual_vram_gb, donor_device, allocation)

    def load_distorch(self, ckpt_name, compute_device, clip_device, vae_device, keep_loaded, virtual_vram_gb=0.0,
                      donor_device="cpu", allocation=""):
        import comfy.model_management as mm

        unet = device_utils.resolve_device(compute_device, "compute_device")
        clip = device_utils.resolve_device(clip_device, "clip_device")
        vae = device_utils.resolve_device(vae_device, "vae_device")
        # The host derives the text encoder's and VAE's device from get_torch_device(); pin their
        # "default" to what the host would choose before the diffusion model's choice is applied.
        if unet is not None:
            clip = clip if clip is not None else mm.text_encoder_device()
            vae = vae if vae is not None else mm.vae_device()
        precheck(request_for(compute_name(unet, "unet"), virtual_vram_gb, donor_device, allocation),
                 "checkpoints", [ckpt_name], prefix="model.diffusion_model.")
        with device_override(compute=unet, text_encoder=clip, vae=vae):
            model, clip_model, vae_model = run_load(lambda: self.load_checkpoint(ckpt_name), "checkpoints",
                                                    ckpt_name, "checkpoint", "ckpt_name")
        name = self.__class__.__name__
        record(model, name, "unet", compute_device, keep_loaded, ckpt_name)
        model = apply_split_inputs(model, lambda m: m, f"{name} '{ckpt_name}'", virtual_vram_gb, donor_device,
                                   allocation)
        if clip_model is not None:
            record(clip_model.patcher, name, "clip", clip_device, keep_loaded, ckpt_name)
        if vae_model is not None and getattr(vae_model, "patcher", None) is not None:
            record(vae_model.patcher, name, "vae", vae_device, keep_loaded, ckpt_name)
        return (model, clip_model, vae_model)


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
