"""Apply a placement plan to a loaded model through ComfyUI's own ModelPatcher.

``DisTorchModelPatcher`` extends the host's ``ModelPatcher`` at three points and calls the
original each time (nothing of the host is copied):

- ``_load_list``: the modules the plan puts on a donor are left out, so the host's own ``load`` and
  ``partially_unload`` only ever load / evict what the plan keeps on the compute device. The host's
  accounting (``loaded_size``, ``current_loaded_models``) therefore counts exactly the bytes that
  sit on the compute device, and its eviction keeps working.
- ``load``: after the host's load, each offloaded module moves to its donor and gets what the
  host's own lowvram mode gives a module it leaves offloaded: per-layer casting
  (``comfy_cast_weights``: at each forward ``comfy.ops`` copies its weights to the input's device,
  on the host's offload stream where it has one) and, for its patches (LoRA etc.), the host's
  ``LowVramPatch`` in ``weight_function`` / ``bias_function``, applied to the cast copy on the
  compute device. The weights on the donor stay the originals: no backup, no patched copy. CPU
  donors of a CUDA compute device are pinned with the host's ``pin_weight_to_device``.
- ``unpatch_model``: after the host restores weights and moves the model home, the placement
  marks are cleared so the next load places the modules again.
- ``model_size``: the bytes the model asks of its compute device, i.e. without what the plan puts
  on donors. The host sizes its requests with it (``LoadedModel.model_memory_required``, and
  ``model_offloaded_memory`` when a loaded model is used again), so it frees room for the compute
  share only and never evicts other models for bytes that stay on a donor. ``clone`` keeps the
  whole size, as does ``get_ram_usage`` (read by ComfyUI's RAM cache up to about 0.3.x).

A split patcher is made by ``apply_split`` with the host's ``clone()`` (the loaded patcher is left
as it was); the plan travels in its ``attachments``, which ``clone()`` keeps, and clones are built
with ``self.__class__``: every clone (LoRA, model patches) stays split. ``host_checks`` verifies
the private host parts used here before the first split.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import comfy.model_management as model_management
import comfy.model_patcher as model_patcher
import torch

from . import dynamic_vram
from ..logic.planner import Plan
from ..logic.split_request import slot_device
from ..logic.errors import shown_by_name, type_name

log = logging.getLogger("distorch.apply")

SPLIT_KEY = "distorch.split"
PLACED_MARK = "distorch_placed"


@shown_by_name
class SplitUnsupported(RuntimeError):
    """The model's patcher cannot carry a DisTorch split."""


@dataclass(frozen=True)
class SplitLayout:
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
    def from_plan(cls, plan: Plan, request: str) -> "SplitLayout":
        offloaded = {name: slot_device(slot) for name, slot in plan.assignment.items()
                     if slot != plan.compute_device}
        return cls(plan, request, offloaded)


def split_of(patcher) -> SplitLayout | None:
    found = (getattr(patcher, "attachments", None) or {}).get(SPLIT_KEY)
    return found if isinstance(found, SplitLayout) else None


class DisTorchModelPatcher(model_patcher.ModelPatcher):
    """The host's ModelPatcher, keeping a plan's offloaded modules on their donor devices."""

    def _distorch_split(self) -> SplitLayout | None:
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

    def unpatch_model(self, device_to=None, unpatch_weights=True):
        result = super().unpatch_model(device_to, unpatch_weights=unpatch_weights)
        if unpatch_weights:
            for module in self.model.modules():
                if hasattr(module, PLACED_MARK):
                    delattr(module, PLACED_MARK)
        return result

    @classmethod
    def split_copy(cls, patcher, split: SplitLayout) -> "DisTorchModelPatcher":
        """A new split patcher over ``patcher``'s model, built by the host's own ``clone()`` (patches,
        attachments, wrappers and callbacks come along); ``patcher`` itself is not changed."""
        copy = patcher.clone()
        target = split_class(type(copy), cls)
        if type(copy) is not target:
            # A clone is a fresh object nobody else holds: giving it a subclass of its own class
            # changes nothing the host or the caller already has.
            copy.__class__ = target
        # The copy takes the original's place (a fresh load's patcher has no parent): the host
        # must never hand this copy's loaded state over to the plain original (LoadedModel
        # switches to a dead patcher's parent).
        copy.parent = patcher.parent
        copy.attachments[SPLIT_KEY] = split
        return copy

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
        self._place_offloaded(split, device_to if device_to is not None else self.load_device, force_patch_weights)
        # The host records the room its own offloaded layers need to run (read when it partially
        # unloads the model); the split's offloaded layers need theirs (the plan's reserve) too.
        held = getattr(self.model, "model_offload_buffer_memory", 0) or 0
        self.model.model_offload_buffer_memory = max(held, split.plan.reserve_bytes)
        # The host counted the modules it loaded; a donor slot on the compute device is resident
        # there too (each host load recounts from zero, so this is added once per load).
        self.model.model_loaded_weight_memory += split.same_device_bytes
        return result

    def _place_offloaded(self, split: SplitLayout, compute, force_patch_weights: bool = False) -> None:
        """Move the plan's offloaded modules to their donors and give them what the host's lowvram
        mode gives the modules it does not load. All or nothing: on a failure the modules placed by
        this call go back where they were, unmarked, and the error is raised."""
        compute = torch.device(compute)
        modules = dict(self.model.named_modules())
        placed: list[tuple[str, torch.nn.Module, torch.device]] = []
        lowvram_before = self.model.model_lowvram
        # Set first: if this load fails, the host's detach() then wipes the per-layer state it finds.
        self.model.model_lowvram = True
        try:
            patches, function_bytes, moved_bytes = 0, 0, 0
            for name, device_name in split.offloaded.items():
                module = modules.get(name)
                if module is None:
                    continue
                if getattr(module, PLACED_MARK, False) and hasattr(module, "prev_comfy_cast_weights"):
                    continue  # placed by an earlier load and not wiped since (the host's "already lowvramed")
                home = next(module.parameters(), torch.empty(0)).device
                placed.append((name, module, home))
                set_patches, held = self._place_one(name, module, torch.device(device_name), compute,
                                                    force_patch_weights)
                patches, function_bytes = patches + set_patches, function_bytes + held
                moved_bytes += sum(t.nelement() * t.element_size() for t in module.state_dict().values())
        except BaseException:
            self._unplace(placed)
            self.model.model_lowvram = lowvram_before
            raise
        self.model.lowvram_patch_counter += patches
        # Weight functions holding tensors of their own sit on the compute device: counted there,
        # as the host counts them for the modules it loads.
        self.model.model_loaded_weight_memory += function_bytes
        if placed:
            log.info("placed %d modules (%.1f MiB) on donor devices, %d LoRA/patch entries applied per forward; "
                     "%.1f MiB on %s", len(placed), moved_bytes / 2**20, patches,
                     self.model.model_loaded_weight_memory / 2**20, compute)

    def _place_one(self, name: str, module, target: torch.device, compute: torch.device,
                   force_patch_weights: bool) -> tuple[int, int]:
        """One offloaded module, the way the host's ``load`` treats a module it leaves offloaded:
        its patches (LoRA etc.) become the host's ``LowVramPatch`` per-forward functions, applied on
        the compute device when ``comfy.ops`` casts the weight there. No patched copy and no
        backup of the original is made. Returns (per-forward patches set, bytes its weight
        functions moved to the compute device)."""
        keys = [f"{name}.{param}" for param, _ in module.named_parameters(recurse=False)]
        for key in keys:
            self.unpin_weight(key)
        module.to(target)
        setattr(module, PLACED_MARK, True)
        model_patcher.wipe_lowvram_weight(module)
        patches, function_bytes = 0, 0
        if hasattr(module, "comfy_cast_weights"):
            functions = {"weight": [], "bias": []}
            for kind in functions:
                key = f"{name}.{kind}"
                if key not in self.patches:
                    continue
                if force_patch_weights:  # the host patches lowvram weights in place when forced
                    self.patch_weight_to_device(key)
                else:
                    _, set_func, convert_func = model_patcher.get_key_weight(self.model, key)
                    functions[kind].append(model_patcher.LowVramPatch(key, self.patches, convert_func, set_func))
                    patches += 1
                functions[kind].extend(self.weight_wrapper_patches.get(key, []))
            module.weight_function, module.bias_function = functions["weight"], functions["bias"]
            module.prev_comfy_cast_weights = module.comfy_cast_weights
            module.comfy_cast_weights = True
            if hasattr(self, "force_cast_weights"):
                # What the host's load gives the modules it loads (newer ComfyUI reads it to
                # choose between the quantized and the cast path): the same path as unsplit.
                module.comfy_force_cast_weights = self.force_cast_weights
            function_bytes = model_patcher.move_weight_functions(module, compute)
        if compute.type == "cuda" and target.type == "cpu":
            for key in keys:
                self.pin_weight_to_device(key)
        return patches, function_bytes

    def _unplace(self, placed) -> None:
        for name, module, home in reversed(placed):
            for param, _ in module.named_parameters(recurse=False):
                self.unpin_weight(f"{name}.{param}")
            model_patcher.wipe_lowvram_weight(module)
            if hasattr(module, PLACED_MARK):
                delattr(module, PLACED_MARK)
            module.to(home)


GGUF_PATCHER = "GGUFModelPatcher"  # ComfyUI-GGUF's patcher (its nodes.py), recognised by name: never imported


def is_gguf_patcher_class(patcher_class: type) -> bool:
    return issubclass(patcher_class, model_patcher.ModelPatcher) and any(
        base.__name__ == GGUF_PATCHER for base in patcher_class.__mro__)


class _SplitKeepsClassOnClone:
    """For split subclasses of ComfyUI-GGUF's patcher: its ``clone()`` always builds a plain
    GGUFModelPatcher (it sets the class itself), which would drop the split from every clone a
    workflow makes (LoRA loaders clone). The clone gets this class back and the whole size."""

    def clone(self, *args, **kwargs):
        copy = super().clone(*args, **kwargs)
        copy.__class__ = type(self)
        copy.size = self.whole_model_size()
        return copy


def split_class(patcher_class: type, plain: type = DisTorchModelPatcher) -> type:
    """The class of a split copy of a ``patcher_class`` patcher: ``plain`` for the host's own
    ModelPatcher; for ComfyUI-GGUF's a subclass of both, its methods first: its ``load`` forces
    patches onto the weights (its layers dequantize per forward and read patches from the weight,
    not the host's per-layer functions), and that flag reaches the donor placement below."""
    if issubclass(patcher_class, DisTorchModelPatcher):
        return patcher_class
    if is_gguf_patcher_class(patcher_class):
        return type(f"DisTorch{patcher_class.__name__}", (_SplitKeepsClassOnClone, patcher_class, plain),
                    {"__module__": __name__})
    return plain


def check_splittable(patcher, notices: set | None = None) -> None:
    """Raise SplitUnsupported for patchers that manage weights their own way (changes nothing).
    ``notices``: the owner's one-time log notices (the DynamicVRAM line is logged once per owner)."""
    if dynamic_vram.is_dynamic(patcher, model_patcher):
        dynamic_vram.report_once(model_patcher, notices)
        raise SplitUnsupported(dynamic_vram.MESSAGE)
    if (type(patcher) is not model_patcher.ModelPatcher and not isinstance(patcher, DisTorchModelPatcher)
            and not is_gguf_patcher_class(type(patcher))):
        raise SplitUnsupported(
            f"this model is managed by {type_name(type(patcher))}, not ComfyUI's "
            "ModelPatcher, so DisTorch cannot split it (its own loader moves the weights). Set virtual_vram_gb "
            "to 0 and leave allocation empty for this model.")


def apply_split(patcher, split: SplitLayout) -> DisTorchModelPatcher:
    """A split patcher for a freshly loaded model: validated, then built with ``clone()``, then the
    host's own load of ``patcher`` (made while building the model) released. Returns the new
    patcher; the caller uses it in place of ``patcher``. Raises, leaving ``patcher`` and the host's
    accounting as they were: SplitUnsupported for patchers that manage weights their own way, and
    the release's error when the host could not unload the model."""
    check_splittable(patcher)
    copy = DisTorchModelPatcher.split_copy(patcher, split)
    try:
        release_if_loaded(patcher)  # the last step that can fail; it undoes itself
    except BaseException:
        # The unused copy is dropped; the host's ModelPatcher.__del__ unpins every weight in its
        # pinned set, which clone() shares with the original: give it an empty one first.
        copy.pinned = set()
        raise
    return copy


@shown_by_name
class ReleaseFailed(RuntimeError):
    """The host could not unload a model it had loaded; the model stays loaded as it was."""


def release_if_loaded(patcher) -> bool:
    """Unload a model the host loaded while building it (text encoders that fit are loaded at
    once), through the host's own LoadedModel, so that its next load follows the plan. The entry
    leaves ``current_loaded_models`` only when its ``model_unload()`` succeeded; when it fails, the
    model is loaded again as it was (the host's own ``model_load``) and ReleaseFailed is raised."""
    entry = next((loaded for loaded in model_management.current_loaded_models if loaded.model is patcher), None)
    if entry is None:
        return False
    before = _load_state(patcher)
    try:
        entry.model_unload()
    except Exception as exc:
        _reload_as_before(entry, before)
        raise ReleaseFailed(
            f"ComfyUI could not unload {type(patcher.model).__name__} to apply its split ({type(exc).__name__}: "
            f"{exc}); the model stays loaded as it was, unsplit. Free memory (or restart ComfyUI) and queue the "
            "prompt again, or set virtual_vram_gb to 0 to run it unsplit.") from exc
    # Found again by identity: the unload may have run the host's clean-up, which edits the list.
    for index, loaded in enumerate(model_management.current_loaded_models):
        if loaded is entry:
            del model_management.current_loaded_models[index]
            break
    log.debug("unloaded %s to apply its split", type(patcher.model).__name__)
    return True


def _load_state(patcher) -> tuple:
    model = patcher.model
    return (model.model_loaded_weight_memory, bool(getattr(model, "model_lowvram", False)),
            tuple((name, t.device, t.data_ptr()) for name, t in model.state_dict().items()))


def _reload_as_before(entry, before: tuple) -> None:
    """After a failed unload: nothing to do if the model did not change; otherwise load it again
    through the host (fully, or with the room it had) and drop the finalizer the host replaces."""
    if _load_state(entry.model) == before:
        return
    loaded_bytes, lowvram = before[0], before[1]
    old_finalizer = entry.model_finalizer
    try:
        entry.model_load(loaded_bytes if lowvram else 0)
    except Exception:
        log.exception("comfyui-distorch: ComfyUI could not load %s again after a failed unload",
                      type(entry.model.model).__name__)
        return
    if old_finalizer is not None and old_finalizer is not entry.model_finalizer:
        old_finalizer.detach()
