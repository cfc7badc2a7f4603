"""Apply a placement plan to a loaded model through ComfyUI's own ModelPatcher.

``DisTorchModelPatcher`` extends the host's ``ModelPatcher`` at three points and calls the
original each time (nothing of the host is copied):

- ``_load_list``: the modules the plan puts on a donor are left out, so the host's own ``load`` and
  ``partially_unload`` only ever load / evict what the plan keeps on the compute device. The host's
  accounting (``loaded_size``, ``current_loaded_models``) therefore counts exactly the bytes that
  sit on the compute device, and its eviction keeps working.
- ``load``: after the host's load, each offloaded module gets its weights patched (LoRA etc.) on
  the compute device with the host's ``patch_weight_to_device``, exactly as the host patches the
  modules it loads, then moves to its donor and is marked for the host's
  per-layer casting (``comfy_cast_weights``): at each forward ``comfy.ops`` copies its weights to
  the input's device (on the host's offload stream where it has one). CPU donors of a CUDA compute
  device are pinned with the host's ``pin_weight_to_device``.
- ``unpatch_model``: after the host restores weights and moves the model home, the placement
  marks are cleared so the next load places the modules again.
- ``model_size``: the bytes the model asks of its compute device, i.e. without what the plan puts
  on donors. The host sizes its requests with it (``LoadedModel.model_memory_required``, and
  ``model_offloaded_memory`` when a loaded model is used again), so it frees room for the compute
  share only and never evicts other models for bytes that stay on a donor. ``clone`` keeps the
  whole size, as does ``get_ram_usage`` (read by ComfyUI's RAM cache up to about 0.3.x).

The plan travels in the patcher's ``attachments``, which ``clone()`` keeps, and clones are built
with ``self.__class__``: every clone (LoRA, model patches) stays split.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import comfy.model_management as model_management
import comfy.model_patcher as model_patcher
import torch

from . import dynamic_vram
from .planner import Plan
from .split import slot_device

log = logging.getLogger("distorch.apply")

SPLIT_KEY = "distorch.split"
PLACED_MARK = "distorch_placed"


class SplitUnsupported(RuntimeError):
    """The model's patcher cannot carry a DisTorch split."""


@dataclass(frozen=True)
class SplitPlacement:
    plan: Plan
    request: str                                                  # the allocation, as the user gave it
    offloaded: dict[str, str] = field(default_factory=dict, hash=False)  # module -> donor device name

    @property
    def same_device_bytes(self) -> int:
        """Bytes of donor slots on the compute device itself: resident there, cast per forward."""
        return sum(held for slot, held in self.plan.device_bytes.items()
                   if slot != self.plan.compute_device and slot_device(slot) == self.plan.compute_device)

    @property
    def offloaded_bytes(self) -> int:
        """Bytes the plan puts on other devices (a donor slot on the compute device itself, e.g.
        'cuda:0 (donor)', stays there and is not counted)."""
        return sum(held for slot, held in self.plan.device_bytes.items()
                   if slot_device(slot) != self.plan.compute_device)

    @classmethod
    def from_plan(cls, plan: Plan, request: str) -> "SplitPlacement":
        offloaded = {name: slot_device(slot) for name, slot in plan.assignment.items()
                     if slot != plan.compute_device}
        return cls(plan, request, offloaded)


def split_of(patcher) -> SplitPlacement | None:
    found = (getattr(patcher, "attachments", None) or {}).get(SPLIT_KEY)
    return found if isinstance(found, SplitPlacement) else None


class DisTorchModelPatcher(model_patcher.ModelPatcher):
    """The host's ModelPatcher, keeping a plan's offloaded modules on their donor devices."""

    def _distorch_split(self) -> SplitPlacement | None:
        split = split_of(self)
        if split is None or not split.offloaded:
            return None
        if str(self.load_device) != split.plan.compute_device:
            # A copy ComfyUI retargeted to another device (newer hosts' multi-GPU sampling and
            # device-select nodes): the plan was made for another device, so this copy runs unsplit.
            if not getattr(self, "_distorch_retarget_logged", False):
                self._distorch_retarget_logged = True
                log.warning("comfyui-distorch: a split model planned for %s now runs on %s (a copy ComfyUI made "
                            "for another device); that copy runs unsplit", split.plan.compute_device,
                            self.load_device)
            return None
        return split

    def whole_model_size(self) -> int:
        """All the model's weight bytes, wherever the plan puts them."""
        return super().model_size()

    def model_size(self):
        whole = super().model_size()
        split = self._distorch_split()
        return whole if split is None else max(0, whole - split.offloaded_bytes)

    def get_ram_usage(self):
        return self.whole_model_size()

    def clone(self, *args, **kwargs):
        # The host builds the clone with this patcher's model_size(): give it the whole size back.
        clone = super().clone(*args, **kwargs)
        clone.size = self.whole_model_size()
        return clone

    def _load_list(self, *args, **kwargs):
        units = super()._load_list(*args, **kwargs)
        split = self._distorch_split()
        if split is None:
            return units
        # Each entry ends with (name, module, params) on every ComfyUI that has this method.
        return [unit for unit in units if unit[-3] not in split.offloaded]

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False, **kwargs):
        split = self._distorch_split()
        if split is None:
            return super().load(device_to, lowvram_model_memory=lowvram_model_memory,
                                force_patch_weights=force_patch_weights, full_load=full_load, **kwargs)
        # A "full load" must not move the offloaded modules: ask for a load with unlimited room
        # over the modules the plan keeps (the host then loads each of them completely).
        room = 1e32 if full_load else lowvram_model_memory
        result = super().load(device_to, lowvram_model_memory=room, force_patch_weights=force_patch_weights,
                              full_load=False, **kwargs)
        self._place_offloaded(split, device_to if device_to is not None else self.load_device)
        # The host records the room its own offloaded layers need to run (read when it partially
        # unloads the model); the split's offloaded layers need theirs (the plan's reserve) too.
        held = getattr(self.model, "model_offload_buffer_memory", 0) or 0
        self.model.model_offload_buffer_memory = max(held, split.plan.reserve_bytes)
        # The host counted the modules it loaded; a donor slot on the compute device is resident
        # there too (each host load recounts from zero, so this is added once per load).
        self.model.model_loaded_weight_memory += split.same_device_bytes
        return result

    def unpatch_model(self, device_to=None, unpatch_weights=True):
        result = super().unpatch_model(device_to, unpatch_weights=unpatch_weights)
        if unpatch_weights:
            for module in self.model.modules():
                if hasattr(module, PLACED_MARK):
                    delattr(module, PLACED_MARK)
        return result

    def _place_offloaded(self, split: SplitPlacement, compute) -> None:
        compute = torch.device(compute)
        modules = dict(self.model.named_modules())
        placed, moved_bytes = 0, 0
        for name, device_name in split.offloaded.items():
            module = modules.get(name)
            if module is None or getattr(module, PLACED_MARK, False):
                continue
            target = torch.device(device_name)
            keys = [f"{name}.{param}" for param, _ in module.named_parameters(recurse=False)]
            for key in keys:
                self.unpin_weight(key)
                # Patched on the compute device by the host's own code (a no-op for keys without
                # patches), at the host's patch precision: the weights the single-device run computes.
                self.patch_weight_to_device(key, device_to=compute)
            module.to(target)
            model_patcher.wipe_lowvram_weight(module)
            if hasattr(module, "comfy_cast_weights"):
                module.weight_function = list(self.weight_wrapper_patches.get(f"{name}.weight", []))
                module.bias_function = list(self.weight_wrapper_patches.get(f"{name}.bias", []))
                module.prev_comfy_cast_weights = module.comfy_cast_weights
                module.comfy_cast_weights = True
                if hasattr(self, "force_cast_weights"):
                    # What the host's load gives the modules it loads (newer ComfyUI reads it to
                    # choose between the quantized and the cast path): the same path as unsplit.
                    module.comfy_force_cast_weights = self.force_cast_weights
            if compute.type == "cuda" and target.type == "cpu":
                for key in keys:
                    self.pin_weight_to_device(key)
            setattr(module, PLACED_MARK, True)
            placed += 1
            moved_bytes += sum(t.nelement() * t.element_size() for t in module.state_dict().values())
        self.model.model_lowvram = True
        if placed:
            log.info("placed %d modules (%.1f MiB) on donor devices; %.1f MiB on %s", placed,
                     moved_bytes / 2**20, self.model.model_loaded_weight_memory / 2**20, compute)


def apply_split(patcher, split: SplitPlacement):
    """Give a freshly loaded ModelPatcher its split. Raises SplitUnsupported, before changing
    anything, for patchers that manage weights their own way."""
    if dynamic_vram.is_dynamic(patcher, model_patcher):
        dynamic_vram.report_once(model_patcher)
        raise SplitUnsupported(dynamic_vram.MESSAGE)
    if type(patcher) is model_patcher.ModelPatcher:
        patcher.__class__ = DisTorchModelPatcher
    elif not isinstance(patcher, DisTorchModelPatcher):
        raise SplitUnsupported(
            f"this model is managed by {type(patcher).__module__}.{type(patcher).__name__}, not ComfyUI's "
            "ModelPatcher, so DisTorch cannot split it (its own loader moves the weights). Set virtual_vram_gb "
            "to 0 and leave allocation empty for this model.")
    patcher.attachments[SPLIT_KEY] = split
    release_if_loaded(patcher)
    return patcher


def release_if_loaded(patcher) -> bool:
    """Unload a model the host loaded while building it (text encoders that fit are loaded at
    once), through the host's own LoadedModel, so its next load follows the plan."""
    for index, loaded in enumerate(list(model_management.current_loaded_models)):
        if loaded.model is patcher:
            loaded.model_unload()
            model_management.current_loaded_models.pop(index)
            log.debug("unloaded %s to apply its split", type(patcher.model).__name__)
            return True
    return False
