"""The one load pipeline every entry point calls (loader nodes, modes, later place nodes):

    request  ->  plan           ->  load                  ->  place                 ->  record
    (parsed      (from the file's    (the host's loader,       (a split patcher built     (placement record,
     once)        header, pure       unchanged, inside         through clone(); the       device context,
                  planner)           device_override)          loaded one untouched)      one log line)

``LoadRequest`` holds every input already parsed and checked: devices resolved, the allocation
parsed into a ``SplitRequest`` per part. ``LoadPipeline.load`` runs the steps; ``place`` runs the
last two on models another loader built. This module is where a load meets ComfyUI; the planner,
the grammar and the placement records it uses are pure.
"""
from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..logic.load_failure import explain_load_failure
from ..logic.device_choice import device_override
from .device_context import add_device_context
from ..logic.placement_record import PlacementRecord, attach
from ..logic.split_request import SplitInputs, SplitRequest, parse_split_inputs
from ..logic.errors import shown_by_name

log = logging.getLogger("distorch.pipeline")

COMPONENTS = ("unet", "clip", "vae")
# which host device function decides each part's device when the user leaves it at "default"
HOST_ROLE = {"unet": "compute", "clip": "text_encoder", "vae": "vae"}


@dataclass(frozen=True)
class PartRequest:
    """One model of a load: where it runs and how it is split."""

    component: str                 # "unet", "clip" or "vae"
    requested_device: str          # as the user gave it ("default", "cuda:1")
    device: object | None          # the torch.device chosen, None = the host's choice
    compute: str                   # the device it will run on, as torch names it
    split: SplitRequest | None = None
    split_inputs: SplitInputs | None = None  # the split inputs as parsed (bound to ``compute`` in ``split``)
    role: str = ""                 # the host's device role when the component does not say it
                                   # ("compute", "text_encoder", "vae"; e.g. a ControlNet: compute)

    @property
    def host_role(self) -> str:
        return self.role or HOST_ROLE[self.component]


@dataclass(frozen=True)
class FileCheck:
    """The file(s) a load reads, for the header precheck and for explaining a failed load."""

    folder: str                    # ComfyUI folder name ("diffusion_models", "checkpoints", ...)
    names: tuple[str, ...]
    kind: str                      # what the file should hold ("diffusion model", "checkpoint", ...)
    input_name: str                # the input naming the file ("unet_name")
    prefix: str = ""               # tensor-name prefix of the part that is split (checkpoints)
    weight_dtype: str = "default"
    paths: tuple[str, ...] | None = None  # where the files are, when not in a ComfyUI folder (modes)

    def resolved(self) -> list[str | None]:
        if self.paths is not None:
            return list(self.paths)
        import folder_paths

        return [folder_paths.get_full_path(self.folder, name) for name in self.names]


@dataclass(frozen=True)
class LoadRequest:
    loader: str                    # node class (or entry point) the models are recorded under
    source: str                    # file name(s) as the user picked them
    keep_loaded: bool
    parts: Mapping[str, PartRequest] = field(default_factory=dict)
    files: FileCheck | None = None
    name: str = ""                 # how the log and split errors name this load (default: loader 'source')

    def part(self, component: str) -> PartRequest | None:
        return self.parts.get(component)

    @property
    def label(self) -> str:
        return self.name or f"{self.loader} '{self.source}'"


def compute_name(device, role: str) -> str:
    """The device a part will run on: the chosen one, else what the host picks for its role
    ("compute", "text_encoder", "vae"; component names "unet", "clip" are read as their roles)."""
    if device is not None:
        return str(device)
    import comfy.model_management as mm

    role = HOST_ROLE.get(role, role)
    return str({"compute": mm.get_torch_device, "text_encoder": mm.text_encoder_device,
                "vae": mm.vae_device}[role]())


def part_request(component: str, device_value, device_input: str = "compute_device",
                 split: tuple | None = None, role: str = "") -> PartRequest:
    """Parse one part's inputs; raises ValueError naming the input that holds a bad value.
    ``split`` is (virtual_vram_gb, donor_device, allocation) for parts that can be split."""
    from ... import device_utils

    device = device_utils.resolve_device(device_value, device_input)
    compute = compute_name(device, role or component)
    request = inputs = None
    if split is not None:
        virtual_vram_gb, donor_device, allocation = split
        inputs = parse_split_inputs(device_utils.available_devices(), virtual_vram_gb, donor_device, allocation)
        request = inputs.request_for(compute) if inputs is not None else None
    return PartRequest(component, device_utils.DEFAULT_DEVICE if device is None else str(device_value), device,
                       compute, request, inputs, role)


def build_request(loader: str, source: str, keep_loaded, parts: Sequence[PartRequest],
                  files: FileCheck | None = None, name: str = "") -> LoadRequest:
    return LoadRequest(loader, source, bool(keep_loaded), {p.component: p for p in parts}, files, name)


@shown_by_name
class SplitFailed(RuntimeError):
    """A part's split could not be planned or applied; ``component`` says which part."""

    def __init__(self, message: str, component: str):
        super().__init__(message)
        self.component = component


@dataclass
class LoadPipeline:
    """The steps, with what they share for the process: the split's runtime (host check, transfer
    checks). One instance per process, owned by the pack's ``Runtime``; tests build their own.
    ``registry``: where host changes (the transfer check's) are recorded; ``notices``: one-time
    log lines already given."""

    split_runtime: object = None
    registry: object = None
    notices: set | None = None

    def __post_init__(self):
        if self.split_runtime is None:
            from .split_loaded import SplitRuntime
            from .transfer_checks import TransferChecks

            self.split_runtime = SplitRuntime(TransferChecks(self.registry),
                                              notices=self.notices if self.notices is not None else set())

    # -- the steps ---------------------------------------------------------------------------
    def load(self, request: LoadRequest, host_load: Callable[[], tuple], outputs: Sequence[str | None]) -> tuple:
        """Run ``host_load`` (the host's own loader) for ``request``; ``outputs`` names the part each
        output is (None: not a model). Returns the outputs, placed and recorded."""
        self.plan(request)
        devices = self._override_devices(request)
        with device_override(**devices):
            loaded = self._run_host_load(request, host_load)
        return self.place(request, loaded, outputs)

    def plan(self, request: LoadRequest) -> None:
        """Refuse an allocation that cannot hold the model, from the file's header, before loading."""
        files = request.files
        split_parts = [p for p in request.parts.values() if p.split is not None]
        if files is None or not split_parts:
            return
        from ..logic.planner import PlanError
        from .split_loaded import precheck_files

        paths = files.resolved()
        if any(path is None or not path.endswith((".safetensors", ".sft", ".gguf")) for path in paths):
            return  # the host reports missing files; other formats have no header to read here
        for part in split_parts:
            try:
                precheck_files(paths, part.split, self.split_runtime, files.prefix, files.weight_dtype)
            except PlanError as exc:
                raise SplitFailed(str(exc), part.component) from None
            except Exception as exc:  # an unreadable header: the host's load reports the file itself
                log.debug("no header precheck for %s: %s", files.names, exc)

    def place(self, request: LoadRequest, loaded: tuple, outputs: Sequence[str | None]) -> tuple:
        """Record each output's placement and apply its part's split; returns the outputs (a split
        MODEL is a new patcher, a split CLIP carries one)."""
        placed = list(loaded)
        for index, component in enumerate(outputs):
            holder = placed[index] if index < len(placed) else None
            part = request.part(component) if component else None
            if holder is None or part is None:
                continue
            patcher = holder if hasattr(holder, "attachments") else getattr(holder, "patcher", None)
            if patcher is None:
                continue
            record(patcher, request, part)
            if part.split is not None:
                placed[index] = self.split(holder, component, part, request.label)
        return tuple(placed)

    def split(self, holder, component: str, part: PartRequest, label: str):
        """Apply the part's split to a loaded MODEL (returned in its place) or CLIP (its patcher
        replaced, after everything else succeeded). On failure the loaded model is as it was, and
        this function's references to it are dropped before the error is raised (no exception chain
        keeps them), so it is freed with the node's outputs."""
        from .split_patcher import release_if_loaded
        from .split_loaded import split_loaded_model

        runtime = self.split_runtime
        if runtime.split_blocked(label):  # before a DynamicVRAM copy reads the file again
            return holder
        is_model = hasattr(holder, "attachments")  # a MODEL is its patcher; others hold .patcher
        patcher = holder if is_model else holder.patcher
        # The split is planned for the device the model was built for (a default the host chose).
        request = part.split if str(patcher.load_device) == part.split.compute else _retarget(part, patcher)
        failure = None
        loaded = patcher
        try:
            if is_model:  # under DynamicVRAM, split the host's plain copy of it
                patcher = without_dynamic_vram(patcher, label)
            split = split_loaded_model(patcher, request, label, runtime).patcher
            if patcher is not loaded:
                # The dynamic model the copy replaces, released last (a model that fits may have
                # been loaded while it was built): a failure before this point leaves it as it was.
                release_if_loaded(loaded)
            if is_model:
                holder = split
            else:
                holder.patcher = split
        except (ValueError, RuntimeError) as exc:  # PlanError, SplitUnsupported, ReleaseFailed
            failure = str(exc)
        if failure is not None:
            holder = patcher = loaded = split = None
            gc.collect()
            raise SplitFailed(failure, component)
        return holder

    # -- helpers ---------------------------------------------------------------------------------
    def _override_devices(self, request: LoadRequest) -> dict:
        chosen = {p.host_role: p.device for p in request.parts.values() if p.device is not None}
        unet = request.part("unet")
        if unet is not None and unet.device is not None:
            # The host derives the text encoder's and VAE's device from get_torch_device(): pin
            # their "default" to what the host would choose before the diffusion model's is applied.
            import comfy.model_management as mm

            for component, role, host_choice in (("clip", "text_encoder", mm.text_encoder_device),
                                                 ("vae", "vae", mm.vae_device)):
                if component in request.parts and role not in chosen:
                    chosen[role] = host_choice()
        return chosen

    def _run_host_load(self, request: LoadRequest, host_load):
        """The host's loader; its failure becomes a message about the file and the next step."""
        try:
            return host_load()
        except Exception as exc:
            files = request.files
            paths = files.resolved() if files is not None else []
            path = paths[0] if paths else None
            if path is None or not os.path.exists(path):
                raise  # the host's own "not found" error is already clear
            raise RuntimeError(explain_load_failure(path, files.kind, files.input_name, exc)) from exc


def _retarget(part: PartRequest, patcher) -> SplitRequest:
    """The split asked for, bound to the device the host built the model for (where its "default"
    differs from what it said before loading): the inputs parsed once, bound again."""
    return part.split_inputs.request_for(str(patcher.load_device))


def record(patcher, request: LoadRequest, part: PartRequest) -> PlacementRecord:
    placement = PlacementRecord(loader=request.loader, component=part.component,
                               compute_device=str(patcher.load_device), requested_device=part.requested_device,
                               source=request.source)
    attach(patcher, placement)
    if part.component == "unet":
        add_device_context(patcher)
    log.info("%s: %s '%s' on %s (keep_loaded=%s)", request.loader, part.component, request.source,
             placement.compute_device, request.keep_loaded)
    return placement


def without_dynamic_vram(patcher, label: str):
    """``patcher`` itself, or for a DynamicVRAM model the host's plain ModelPatcher copy of it
    (built again from the file; the caller releases and drops the dynamic one once the copy is
    split). Where the host has no such copy the split step refuses the model with its message."""
    import comfy.model_patcher as model_patcher
    import torch

    from . import dynamic_vram

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
