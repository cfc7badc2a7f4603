"""Node types of ComfyUI-MultiGPU, so that workflows saved with it open and run.

ComfyUI-MultiGPU (archived) registered the core loaders again under its own type names, with a
device input (``UNETLoaderMultiGPU``) or a device, a split and an eject flag
(``UNETLoaderDisTorch2MultiGPU``). A saved UI workflow stores widget values by position, so each
node here declares what ComfyUI-MultiGPU declared, in the same order: the core loader's inputs as
the core declares them, then the variant's own. That interface is all that is matched: the loading
behind it is comfyui-distorch's, through the DisTorch loaders (nodes/loaders.py) or, for loaders
with no DisTorch class, the core loader run inside ``device_override`` with the same placement
record and split step (nodes/placement_helpers.py).

``COMPAT_NODES`` is the table: one row per type name, saying whose inputs come first, which
inputs follow and which pipeline loads it. A loader pack's rows (GGUF) are added the same way:
a row naming that pack's loader as ``core`` and a pipeline for it. The nodes are registered only
where ComfyUI-MultiGPU itself is not installed (``multigpu_installed``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import folder_paths

from .. import device_utils
from ..distorch.host import load_pipeline
from . import loaders
from .keep_loaded import honour_keep_loaded
from .placement_helpers import PatcherSlot, call_core, core_class, patcher_of, renamed, restamp
from .bound import bind, runtime_of

log = logging.getLogger("distorch.multigpu")
CATEGORY = "DisTorch/MultiGPU compatible"
TITLE_SUFFIX = " (MultiGPU compatible)"
PACK_FOLDER = "comfyui-multigpu"  # how ComfyUI-MultiGPU's folder is named (git clone, Manager), case aside

PLAIN = "plain"                   # + device
DISTORCH2 = "distorch2"           # + device, virtual_vram_gb, donor_device, expert_mode_allocations, eject_models
ADVANCED = "advanced"             # its own inputs: a device per checkpoint part
ADVANCED_DISTORCH2 = "advanced_distorch2"  # its own inputs: a split for the diffusion model and the text encoder


@dataclass(frozen=True)
class CompatNode:
    name: str                  # ComfyUI-MultiGPU's node type name (what saved workflows hold)
    core: str                  # the node whose inputs come first, in its order; its outputs are this node's
    pipeline: str              # key of PIPELINES: how comfyui-distorch loads it
    variant: str = PLAIN
    device_input: str = "device"  # ComfyUI-MultiGPU's name for the device the model runs on
    eject_default: bool = True    # eject_models' default (DISTORCH2)
    title: str = ""               # display name, before TITLE_SUFFIX


def _row(name, core, pipeline, title, clip=False):
    """The plain and the DisTorch2 row of one core loader (text encoders: their device input is
    ``device`` in both, and eject_models is off by default)."""
    return (CompatNode(name + "MultiGPU", core, pipeline, PLAIN, "device", True, title),
            CompatNode(name + "DisTorch2MultiGPU", core, pipeline, DISTORCH2, "device" if clip else "compute_device",
                       not clip, title + " DisTorch2"))


COMPAT_NODES: tuple[CompatNode, ...] = (
    *_row("UNETLoader", "UNETLoader", "unet", "Load Diffusion Model"),
    *_row("VAELoader", "VAELoader", "vae", "Load VAE"),
    *_row("CLIPLoader", "CLIPLoader", "clip", "Load CLIP", clip=True),
    *_row("DualCLIPLoader", "DualCLIPLoader", "dual_clip", "DualCLIPLoader", clip=True),
    *_row("TripleCLIPLoader", "TripleCLIPLoader", "placed", "TripleCLIPLoader", clip=True),
    *_row("QuadrupleCLIPLoader", "QuadrupleCLIPLoader", "placed", "QuadrupleCLIPLoader", clip=True),
    *_row("CLIPVisionLoader", "CLIPVisionLoader", "placed", "Load CLIP Vision", clip=True),
    *_row("CheckpointLoaderSimple", "CheckpointLoaderSimple", "checkpoint", "Load Checkpoint"),
    *_row("ControlNetLoader", "ControlNetLoader", "placed", "Load ControlNet Model"),
    *_row("DiffControlNetLoader", "DiffControlNetLoader", "placed", "Load ControlNet Model (diff)"),
    CompatNode("CheckpointLoaderAdvancedMultiGPU", "CheckpointLoaderSimple", "checkpoint_advanced", ADVANCED,
               "unet_device", title="Checkpoint Loader Advanced"),
    CompatNode("CheckpointLoaderAdvancedDisTorch2MultiGPU", "CheckpointLoaderSimple", "placed", ADVANCED_DISTORCH2,
               "unet_compute_device", title="Checkpoint Loader Advanced DisTorch2"),
    # ComfyUI-GGUF's loaders (registered only beside ComfyUI-GGUF; its node classes come first)
    *_row("UnetLoaderGGUF", "UnetLoaderGGUF", "gguf", "Unet Loader (GGUF)"),
    *_row("CLIPLoaderGGUF", "CLIPLoaderGGUF", "gguf", "CLIPLoader (GGUF)", clip=True),
    *_row("DualCLIPLoaderGGUF", "DualCLIPLoaderGGUF", "gguf", "DualCLIPLoader (GGUF)", clip=True),
)
GGUF_CORES = {"UnetLoaderGGUF": "DisTorchUnetLoaderGGUF", "CLIPLoaderGGUF": "DisTorchCLIPLoaderGGUF",
              "DualCLIPLoaderGGUF": "DisTorchDualCLIPLoaderGGUF"}  # ComfyUI-GGUF's node -> our GGUF loader
COMPAT_NAMES = tuple(row.name for row in COMPAT_NODES)


@dataclass(frozen=True)
class CoreFacts:
    """What the placement path needs to know about a core loader it runs itself."""
    role: str                  # device_override role: "compute", "text_encoder" or "vae"
    component: str             # placement record component
    folder: str                # models folder of its files
    files: tuple[str, ...]     # inputs that name a file
    kind: str | None           # what the file holds, for load-failure messages (None: the core's own)


CORE_FACTS = {
    "VAELoader": CoreFacts("vae", "vae", "vae", ("vae_name",), "VAE"),
    "TripleCLIPLoader": CoreFacts("text_encoder", "clip", "text_encoders",
                                  ("clip_name1", "clip_name2", "clip_name3"), "text encoder"),
    "QuadrupleCLIPLoader": CoreFacts("text_encoder", "clip", "text_encoders",
                                     ("clip_name1", "clip_name2", "clip_name3", "clip_name4"), "text encoder"),
    "CLIPVisionLoader": CoreFacts("text_encoder", "clip_vision", "clip_vision", ("clip_name",), "CLIP vision model"),
    "ControlNetLoader": CoreFacts("compute", "controlnet", "controlnet", ("control_net_name",), None),
    "DiffControlNetLoader": CoreFacts("compute", "controlnet", "controlnet", ("control_net_name",), None),
}

# ---- inputs ------------------------------------------------------------------------------------

CORE_TOOLTIPS = {  # inputs the core declares without a tooltip, beyond the DisTorch loaders' ones
    ("CLIPVisionLoader", "clip_name"): "CLIP vision (image encoder) file from models/clip_vision.",
    ("TripleCLIPLoader", "clip_name3"): "Third text encoder file from models/text_encoders.",
    ("QuadrupleCLIPLoader", "clip_name3"): "Third text encoder file from models/text_encoders.",
    ("QuadrupleCLIPLoader", "clip_name4"): "Fourth text encoder file from models/text_encoders.",
    ("ControlNetLoader", "control_net_name"): "ControlNet file from models/controlnet.",
    ("DiffControlNetLoader", "control_net_name"): "ControlNet file from models/controlnet.",
    ("DiffControlNetLoader", "model"): "The diffusion model a 'difference' ControlNet is added to.",
}
REFUSED = (" A saved device this machine does not have is refused when the prompt is queued, naming "
           "the devices here.")
TOOLTIPS = {
    "device": "Device this model runs on (ComfyUI-MultiGPU's device input)." + REFUSED,
    "compute_device": "Device that runs this model; with a split, part of its weights wait on donor_device "
                      "and are copied here layer by layer." + REFUSED,
    "virtual_vram_gb": "GiB of this model's weights to park on donor_device (ComfyUI-MultiGPU's 'virtual "
                       "VRAM'); 0 = no split. The DisTorch loaders' virtual_vram_gb.",
    "donor_device": loaders.SPLIT_TOOLTIPS["donor_device"],
    "expert_mode_allocations": "Expert, overrides virtual_vram_gb; the DisTorch loaders' allocation strings: "
                               "'cuda:0,2.5gb;cpu,*' (bytes per device, * = the rest), 'cuda:0,25%;cpu,75%', "
                               "or '0.8' (share kept on the compute device). Units are binary (1 gb = 1 GiB). "
                               "Empty = use virtual_vram_gb.",
    "eject_models": "On: the model is flagged, and the next 'Unload Models' / POST /free unloads it (the "
                    "DisTorch loaders' keep_loaded = off). Off: it stays loaded through those unloads and is "
                    "reused (keep_loaded = on). Nothing else is unloaded when this node runs.",
    "high_precision_loras": "Accepted so that ComfyUI-MultiGPU workflows load; no effect here (LoRAs are "
                            "applied the way ComfyUI applies them).",
}
PART_NAMES = {"unet": "diffusion model", "clip": "text encoder", "vae": "VAE"}


def default_device(devices: list[str]) -> str:
    """The device list's default: the first accelerator, else cpu (as ComfyUI-MultiGPU chose)."""
    return next((d for d in devices if d != "cpu"), devices[0])


def device_spec(tooltip: str, default: str | None = None):
    devices = device_utils.available_devices()
    return (devices, {"default": default or default_device(devices), "tooltip": tooltip})


def _copy_core_inputs(core: str) -> dict:
    """The core node's INPUT_TYPES, copied, every input with a tooltip."""
    copied = {}
    cls = core_class(core)
    if cls is None:  # ComfyUI-GGUF's node, where its import failed: the node says so when it runs
        return {"required": {}}
    for section, inputs in cls.INPUT_TYPES().items():
        if section not in ("required", "optional"):
            continue
        copied[section] = {}
        for name, spec in inputs.items():
            options = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if not options.get("tooltip"):
                tooltip = CORE_TOOLTIPS.get((core, name)) or loaders.CORE_INPUT_TOOLTIPS.get(name)
                if tooltip:
                    options["tooltip"] = tooltip
            copied[section][name] = (spec[0], options)
    return copied


def _split_specs(prefix: str = "", virtual_default: float = 4.0, part: str = "") -> dict:
    about = f"{PART_NAMES[part].capitalize()} only. " if part else ""
    return {
        prefix + "virtual_vram_gb": ("FLOAT", {"default": virtual_default, "min": 0.0, "max": 128.0, "step": 0.1,
                                               "tooltip": about + TOOLTIPS["virtual_vram_gb"]}),
        prefix + "donor_device": device_spec(about + TOOLTIPS["donor_device"], "cpu"),
    }


def _expert_spec(part: str = ""):
    about = f"{PART_NAMES[part].capitalize()} only. " if part else ""
    return ("STRING", {"default": "", "multiline": False, "tooltip": about + TOOLTIPS["expert_mode_allocations"]})


def input_types(row: CompatNode) -> dict:
    """ComfyUI-MultiGPU's inputs for ``row``, in its order."""
    if row.variant == ADVANCED:
        core = _copy_core_inputs(row.core)
        for part, name in (("unet", "unet_device"), ("clip", "clip_device"), ("vae", "vae_device")):
            core["required"][name] = device_spec(f"Device that runs the {PART_NAMES[part]}." + REFUSED)
        return core
    if row.variant == ADVANCED_DISTORCH2:
        core = _copy_core_inputs(row.core)
        required = core["required"]
        for part, virtual_default in (("unet", 4.0), ("clip", 2.0)):
            required[f"{part}_compute_device"] = device_spec(
                f"Device that runs the {PART_NAMES[part]}; with a split, part of its weights wait on "
                f"{part}_donor_device." + REFUSED)
            required.update(_split_specs(f"{part}_", virtual_default, part))
        required["vae_device"] = device_spec("Device that runs the VAE." + REFUSED)
        core["optional"] = {"unet_expert_mode_allocations": _expert_spec("unet"),
                            "clip_expert_mode_allocations": _expert_spec("clip"),
                            "high_precision_loras": ("BOOLEAN", {"default": True,
                                                                 "tooltip": TOOLTIPS["high_precision_loras"]})}
        return core
    core = _copy_core_inputs(row.core)
    optional = core.setdefault("optional", {})
    # Assigned into the core's optional inputs: a core input of the same name (the CLIP loaders'
    # default/cpu 'device') is replaced where it stands, as ComfyUI-MultiGPU's node had it.
    optional[row.device_input] = device_spec(TOOLTIPS[row.device_input])
    if row.variant == DISTORCH2:
        optional.update(_split_specs())
        optional["expert_mode_allocations"] = _expert_spec()
        optional["eject_models"] = ("BOOLEAN", {"default": row.eject_default, "tooltip": TOOLTIPS["eject_models"]})
    return core


# ---- what the inputs ask for -----------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    """One model's placement, in the DisTorch loaders' terms."""
    device: str
    keep_loaded: bool
    virtual_vram_gb: float = 0.0
    donor_device: str = "cpu"
    allocation: str = ""

    def split(self) -> dict:
        return {"virtual_vram_gb": self.virtual_vram_gb, "donor_device": self.donor_device,
                "allocation": self.allocation}


OWN_INPUTS = ("virtual_vram_gb", "donor_device", "expert_mode_allocations", "eject_models")


def placement_from(row: CompatNode, inputs: dict) -> Placement:
    """Take the variant's own inputs out of ``inputs`` (what remains is the core's) and map them:
    eject_models on = keep_loaded off; a node without eject_models keeps nothing (as a core loader).
    The checkpoint loaders with a device per part keep those inputs (their pipeline reads them)."""
    if row.variant in (ADVANCED, ADVANCED_DISTORCH2):
        return Placement("", keep_loaded=False)
    device = inputs.pop(row.device_input, None) or default_device(device_utils.available_devices())
    own = {name: inputs.pop(name) for name in OWN_INPUTS if name in inputs}
    if row.variant != DISTORCH2:
        return Placement(device, keep_loaded=False)
    return Placement(device, keep_loaded=not own.get("eject_models", row.eject_default),
                     virtual_vram_gb=own.get("virtual_vram_gb", 4.0), donor_device=own.get("donor_device", "cpu"),
                     allocation=own.get("expert_mode_allocations", "") or "")


def input_names(row: CompatNode, prefix: str = "") -> dict[str, str]:
    """The DisTorch loaders' input names -> this node's, for messages."""
    device = f"{prefix}compute_device" if prefix else row.device_input
    return {"compute_device": device, "allocation": f"{prefix}expert_mode_allocations",
            "virtual_vram_gb": f"{prefix}virtual_vram_gb", "donor_device": f"{prefix}donor_device",
            "virtual_vram_gb/donor_device": f"{prefix}virtual_vram_gb/{prefix}donor_device"}


# ---- pipelines: the inputs -> comfyui-distorch's loading ------------------------------------

def _distorch(node, loader_name: str, **inputs) -> tuple:
    """Run DisTorch loader ``loader_name`` (keep_loaded holder included) as this node."""
    return node.run_loader(getattr(loaders, loader_name), inputs)


def _unet(node, row, core, place):
    return _distorch(node, "DisTorchUNETLoader", **core, compute_device=place.device,
                     keep_loaded=place.keep_loaded, **place.split())


def _clip(node, row, core, place):
    return _distorch(node, "DisTorchCLIPLoader", **core, compute_device=place.device,
                     keep_loaded=place.keep_loaded, **place.split())


def _dual_clip(node, row, core, place):
    return _distorch(node, "DisTorchDualCLIPLoader", **core, compute_device=place.device,
                     keep_loaded=place.keep_loaded, **place.split())


def _vae(node, row, core, place):
    if row.variant == DISTORCH2:  # DisTorchVAELoader has no split inputs
        return _placed(node, row, core, place)
    return _distorch(node, "DisTorchVAELoader", **core, compute_device=place.device, keep_loaded=place.keep_loaded)


def _checkpoint(node, row, core, place):
    # ComfyUI-MultiGPU's device moved what follows the host's main device: the diffusion model
    # and the VAE; the text encoder stays on the host's text encoder device.
    return _distorch(node, "DisTorchCheckpointLoader", **core, compute_device=place.device,
                     clip_device=device_utils.DEFAULT_DEVICE, vae_device=place.device,
                     keep_loaded=place.keep_loaded, **place.split())


def _checkpoint_advanced(node, row, core, place):
    devices = {name: core.pop(name) for name in ("unet_device", "clip_device", "vae_device")}
    return _distorch(node, "DisTorchCheckpointLoader", **core, compute_device=devices["unet_device"],
                     clip_device=devices["clip_device"], vae_device=devices["vae_device"], keep_loaded=False)


def _placed(node, row, core, place):
    """Loaders with no DisTorch class: through the row's PlacedLoad (keep_loaded holder included)."""
    inputs = dict(core)
    if row.variant != ADVANCED_DISTORCH2:
        inputs.update(device=place.device, **place.split())
    return node.run_loader(PLACED_LOADS[row.name], {"keep_loaded": place.keep_loaded, **inputs})


def _gguf(node, row, core, place):
    from .gguf import GGUF_LOADER_CLASSES

    loader = honour_keep_loaded(GGUF_LOADER_CLASSES[GGUF_CORES[row.core]])
    return node.run_loader(loader, {**core, "compute_device": place.device, "keep_loaded": place.keep_loaded,
                                    **place.split()})


PIPELINES = {"gguf": _gguf, "unet": _unet, "clip": _clip, "dual_clip": _dual_clip, "vae": _vae, "checkpoint": _checkpoint,
             "checkpoint_advanced": _checkpoint_advanced, "placed": _placed}


def load_single(pipeline, row: CompatNode, inputs: dict, keep_loaded: bool):
    """A core loader with one model output, on the chosen device, recorded and split: the load
    pipeline with the core node as the host's loader."""
    facts = CORE_FACTS[row.core]
    device_value = inputs.pop("device")
    split = tuple(inputs.pop(name) for name in ("virtual_vram_gb", "donor_device", "allocation"))
    files = tuple(inputs[name] for name in facts.files)
    part = load_pipeline.part_request(facts.component, device_value, row.device_input, split, role=facts.role)
    checks = load_pipeline.FileCheck(facts.folder, files, facts.kind, facts.files[0]) if facts.kind else None
    request = load_pipeline.build_request(row.name, " + ".join(files), keep_loaded, [part], checks)

    def host_load():
        (holder,) = call_core(row.core, **inputs)
        if patcher_of(holder) is holder or hasattr(holder, "patcher"):
            return (holder,)
        return (PatcherSlot(holder, "control_model_wrapped"),)  # a ControlNet keeps its patcher there

    (placed,) = pipeline.load(request, host_load, (facts.component,))
    return (placed._owner if isinstance(placed, PatcherSlot) else placed,)


def load_checkpoint_split(pipeline, row: CompatNode, inputs: dict, keep_loaded: bool):
    """CheckpointLoaderAdvancedDisTorch2MultiGPU: a device per part, a split for the diffusion
    model and for the text encoder."""
    ckpt_name = inputs["ckpt_name"]
    parts = []
    for part, component, role in (("unet", "unet", "compute"), ("clip", "clip", "text_encoder")):
        split = (inputs[f"{part}_virtual_vram_gb"], inputs[f"{part}_donor_device"],
                 inputs.get(f"{part}_expert_mode_allocations", ""))
        try:
            parts.append(load_pipeline.part_request(component, inputs[f"{part}_compute_device"],
                                               f"{part}_compute_device", split, role))
        except ValueError as exc:
            raise ValueError(renamed(str(exc), input_names(row, f"{part}_"))) from None
    parts.append(load_pipeline.part_request("vae", inputs["vae_device"], "vae_device"))
    request = load_pipeline.build_request(row.name, ckpt_name, keep_loaded, parts,
                                     load_pipeline.FileCheck("checkpoints", (ckpt_name,), "checkpoint", "ckpt_name",
                                                        prefix="model.diffusion_model."))
    failure = None
    try:
        outputs = pipeline.load(
            request, lambda: call_core("CheckpointLoaderSimple", ckpt_name=ckpt_name)[:3], ("unet", "clip", "vae"))
    except load_pipeline.SplitFailed as exc:
        failure = renamed(str(exc), input_names(row, "clip_" if exc.component == "clip" else "unet_"))
    if failure is not None:
        raise RuntimeError(failure)
    return outputs


class PlacedLoad:
    """A compatibility node's load where there is no DisTorch loader class, as a loader the
    keep_loaded holder wraps. One subclass per row, named as the row: the holder keys what it keeps
    by that name and every input, and names the node in its log lines by it."""
    ROW: CompatNode
    FUNCTION = "load_placed"

    def load_placed(self, keep_loaded: bool, **inputs):
        pipeline = runtime_of(self).pipeline
        if self.ROW.variant == ADVANCED_DISTORCH2:
            return load_checkpoint_split(pipeline, self.ROW, dict(inputs), keep_loaded)
        return load_single(pipeline, self.ROW, dict(inputs), keep_loaded)


honour_keep_loaded(PlacedLoad)
PLACED_LOADS = {row.name: type(row.name, (PlacedLoad,), {
    "ROW": row, "FILE_FOLDERS": {name: CORE_FACTS[row.core].folder for name in CORE_FACTS[row.core].files}
    if row.core in CORE_FACTS else {}})
                for row in COMPAT_NODES if row.pipeline == "placed" or (row.pipeline, row.variant) == ("vae", DISTORCH2)}


class MultiGPUCompatNode:
    """Base of the compatibility nodes: ComfyUI-MultiGPU's inputs -> a PIPELINES entry."""
    ROW: CompatNode
    CATEGORY = CATEGORY
    FUNCTION = "load_compat"

    @classmethod
    def INPUT_TYPES(cls):
        return input_types(cls.ROW)

    def run_loader(self, loader_class, inputs: dict) -> tuple:
        """Run a loader class's function as this node (one loader object per node, so that what the
        keep_loaded holder keeps for this node is found again)."""
        held = self.__dict__.setdefault("_distorch_loaders", {})
        if loader_class not in held:
            held[loader_class] = bind(loader_class, runtime_of(self))()
        loader = held[loader_class]
        return getattr(loader, loader_class.FUNCTION)(**inputs)

    def load_compat(self, **inputs):
        row = self.ROW
        place = placement_from(row, inputs)
        failure = None
        try:
            outputs = PIPELINES[row.pipeline](self, row, inputs, place)
        except (ValueError, RuntimeError) as exc:
            failure = renamed(str(exc), input_names(row))
            if failure == str(exc):
                raise
        if failure is not None:  # said in this node's input names; raised here, no chain keeps the model
            raise RuntimeError(failure)
        restamp(outputs, row.name)
        return outputs


def validate_expert(value, input_name: str = "expert_mode_allocations"):
    """VALIDATE_INPUTS helper: the DisTorch loaders' allocation check, under this node's input name."""
    return loaders.validate_allocation(value, input_name)


def _validate_expert_mode_allocations(cls, expert_mode_allocations=""):
    return validate_expert(expert_mode_allocations)


def make_node(row: CompatNode) -> type:
    core = core_class(row.core)
    attributes = {
        "ROW": row,
        "RETURN_TYPES": tuple(core.RETURN_TYPES),
        "DESCRIPTION": (f"Compatibility node: runs workflows saved with ComfyUI-MultiGPU's {row.name} (same inputs, "
                        f"same order). The loading is comfyui-distorch's: per-node device, keep_loaded rule"
                        f"{', split across devices' if row.variant in (DISTORCH2, ADVANCED_DISTORCH2) else ''}."),
    }
    if row.variant == DISTORCH2:
        # One input per VALIDATE_INPUTS: ComfyUI reports its verdict on every input it takes. Device
        # inputs are checked by ComfyUI's own list check (one error, on the input, listing the devices).
        attributes["VALIDATE_INPUTS"] = classmethod(_validate_expert_mode_allocations)
    return type(row.name, (MultiGPUCompatNode,), attributes)


# ---- registration ----------------------------------------------------------------------------

def multigpu_installed(custom_nodes_dirs: list[str] | None = None, registered=None) -> str | None:
    """Where ComfyUI-MultiGPU is installed (a folder in custom_nodes, in any case and whether it
    loads before or after this pack), or which of its node types another pack already registered;
    None when neither."""
    if custom_nodes_dirs is None:
        custom_nodes_dirs = folder_paths.get_folder_paths("custom_nodes")
    for folder in custom_nodes_dirs:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in sorted(entries):
            if entry.lower().replace("_", "-") == PACK_FOLDER and os.path.isdir(os.path.join(folder, entry)):
                return os.path.join(folder, entry)
    if registered is None:
        import nodes as core_nodes

        registered = core_nodes.NODE_CLASS_MAPPINGS
    taken = sorted(name for name in COMPAT_NAMES if name in registered)
    return f"node types already registered: {', '.join(taken)}" if taken else None


def compat_nodes() -> tuple[dict, dict]:
    """The compatibility nodes to register and their display names: none where ComfyUI-MultiGPU is
    installed (one log line says so), none for a core loader this ComfyUI does not have."""
    found = multigpu_installed()
    if found is not None:
        log.info("ComfyUI-MultiGPU is installed (%s): its node types stay its own; comfyui-distorch registers "
                 "none of its %d MultiGPU-compatible nodes", found, len(COMPAT_NODES))
        return {}, {}
    from .gguf import comfyui_gguf_installed

    classes, titles = {}, {}
    gguf = comfyui_gguf_installed()
    for row in COMPAT_NODES:
        if row.pipeline == "gguf":
            if not gguf:  # ComfyUI-GGUF may load after this pack: its folder decides
                continue
        elif core_class(row.core) is None:
            continue
        classes[row.name] = make_node(row)
        titles[row.name] = row.title + TITLE_SUFFIX
    return classes, titles
