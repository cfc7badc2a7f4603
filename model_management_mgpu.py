"""Every patch comfyui-distorch makes to ``comfy.model_management`` lives here.

Each patch wraps the host's original function (kept on the wrapper as ``__wrapped__``), is
installed at most once, can be uninstalled, and checks the attribute it relies on first: a host
whose function is missing or has another shape gets one log line and keeps its own behaviour.

Patches (switch any off with ``DISTORCH_DISABLE_PATCHES=name,name``):
- ``device_override``: ``get_torch_device``, ``text_encoder_device`` and ``vae_device`` return the
  device a DisTorch loader node chose, but only inside that node's ``device_override`` block and
  only in the thread running it (a ContextVar, not a global). Outside such a block they return
  exactly what the host's originals return, so core-only workflows see no change.
- ``memory_control``: ``unload_all_models`` and ``soft_empty_cache``. The unload that ComfyUI's
  ``POST /free`` (and Manager's two unload buttons) triggers follows the pack's ``keep_loaded``
  rule (README, "Unload semantics"): with no pack-loaded model present it is the host's own call,
  unchanged. ``soft_empty_cache`` runs the host's original, then clears the allocator cache of
  every other device that holds or held a model, and hands freed RAM back to the OS after an
  unload or when RAM use passes ``DISTORCH_RAM_TRIM_PERCENT`` (default 75). The state these
  wrappers share is one ``MemoryControl`` object carried by the wrappers themselves.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import device_utils
from .distorch import dynamic_vram
from .distorch.memory import ModelMemory, OffloadSettings, change_line
from .distorch.placement import placement_of
from .distorch.retention import RetainedModels

log = logging.getLogger("distorch.patches")

PATCH_MARKER = "__distorch_patch__"
# host function -> role whose chosen device it returns while an override is active
DEVICE_OVERRIDE_TARGETS = {
    "get_torch_device": "compute",
    "text_encoder_device": "text_encoder",
    "vae_device": "vae",
}
MEMORY_CONTROL_TARGETS = ("unload_all_models", "soft_empty_cache")
LOADED_AT_KEY = "distorch.loaded_at"  # attachment: when a pack loader read the model's file
SPLIT_ATTACHMENT_KEY = "distorch.split"  # attachment: a split's plan (its ``offloaded`` module -> donor)
_NO_OVERRIDE: Mapping = MappingProxyType({})
_device_override: contextvars.ContextVar[Mapping] = contextvars.ContextVar(
    "distorch_device_override", default=_NO_OVERRIDE)


@dataclass
class InstallReport:
    patched: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why


def _host_module():
    import comfy.model_management

    return comfy.model_management


def disabled_patches() -> set[str]:
    raw = os.environ.get("DISTORCH_DISABLE_PATCHES", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


@contextlib.contextmanager
def device_override(*, compute=None, text_encoder=None, vae=None) -> Iterator[None]:
    """Make the host's device functions return these devices (None = host's choice) in this block."""
    chosen = {role: device for role, device in
              (("compute", compute), ("text_encoder", text_encoder), ("vae", vae)) if device is not None}
    token = _device_override.set(MappingProxyType(chosen))
    try:
        yield
    finally:
        _device_override.reset(token)


def _override_wrapper(original, role: str):
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        chosen = _device_override.get().get(role)
        if chosen is not None:
            return chosen
        return original(*args, **kwargs)

    setattr(wrapper, PATCH_MARKER, "device_override")
    return wrapper


def _takes_no_required_arguments(function) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    return all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in signature.parameters.values())


def is_patched(name: str, module=None) -> bool:
    module = module or _host_module()
    return hasattr(getattr(module, name, None), PATCH_MARKER)


def install(module=None) -> InstallReport:
    """Install every enabled patch once; calling it again changes nothing."""
    module = module or _host_module()
    report = InstallReport()
    disabled = disabled_patches()
    if "device_override" in disabled:
        report.skipped.update({name: "disabled by DISTORCH_DISABLE_PATCHES" for name in DEVICE_OVERRIDE_TARGETS})
    else:
        for name, role in DEVICE_OVERRIDE_TARGETS.items():
            why = _cannot_wrap(module, name)
            if why is None and not hasattr(getattr(module, name), PATCH_MARKER):
                setattr(module, name, _override_wrapper(getattr(module, name), role))
            _note(report, name, why)
    if "memory_control" in disabled:
        report.skipped.update({name: "disabled by DISTORCH_DISABLE_PATCHES" for name in MEMORY_CONTROL_TARGETS})
    else:
        whys = {name: _cannot_wrap(module, name) for name in MEMORY_CONTROL_TARGETS}
        if whys["unload_all_models"] is None and not isinstance(getattr(module, "current_loaded_models", None), list):
            whys["unload_all_models"] = "no current_loaded_models list"
        if any(why is not None for why in whys.values()):
            # The two work as a pair (an unload marks what the cache pass must clear): all or none.
            for name, why in whys.items():
                report.skipped[name] = why or "its partner patch cannot apply"
        else:
            control = memory_control(module) or MemoryControl(module)
            for name in MEMORY_CONTROL_TARGETS:
                if not hasattr(getattr(module, name), PATCH_MARKER):
                    setattr(module, name, _memory_wrapper(getattr(module, name), name, control))
                report.patched.append(name)
    for name, why in report.skipped.items():
        if why.startswith("disabled"):
            continue
        consequence = ("DisTorch loaders fall back to the host's device choice for it" if name in DEVICE_OVERRIDE_TARGETS
                       else "ComfyUI's own unload flow applies and keep_loaded is not honoured")
        log.warning("comfyui-distorch: not patching comfy.model_management.%s (%s); %s", name, why, consequence)
    return report


def _note(report: InstallReport, name: str, why: str | None) -> None:
    if why is None:
        report.patched.append(name)
    else:
        report.skipped[name] = why


def _cannot_wrap(module, name: str) -> str | None:
    """Why ``module.name`` cannot be wrapped, or None if it can (or already is).

    Every function the pack wraps is called by the host without arguments (some take optional
    ones): a required parameter means the host changed it, and the wrapper would be wrong."""
    current = getattr(module, name, None)
    if current is None or not callable(current):
        return "not found in this ComfyUI"
    if hasattr(current, PATCH_MARKER):
        return None
    if not _takes_no_required_arguments(current):
        return f"unexpected signature {inspect.signature(current)}"
    return None


def uninstall(module=None) -> list[str]:
    """Restore the host's originals; returns the names restored.

    A wrapper that another extension has wrapped again cannot be removed without removing theirs:
    it is left in place and reported."""
    module = module or _host_module()
    restored = []
    for name in (*DEVICE_OVERRIDE_TARGETS, *MEMORY_CONTROL_TARGETS):
        current = getattr(module, name, None)
        if current is None:
            continue
        if hasattr(current, PATCH_MARKER):
            setattr(module, name, current.__wrapped__)
            restored.append(name)
        elif _wraps_ours(current):
            log.warning("comfyui-distorch: comfy.model_management.%s was wrapped again by another "
                        "extension; leaving both in place", name)
    return restored


def _wraps_ours(function) -> bool:
    seen = 0
    while function is not None and seen < 32:
        if hasattr(function, PATCH_MARKER):
            return True
        function = getattr(function, "__wrapped__", None)
        seen += 1
    return False


# ---- memory control ---------------------------------------------------------------------------

def _ram_trim_percent() -> float:
    try:
        return float(os.environ.get("DISTORCH_RAM_TRIM_PERCENT", "75"))
    except ValueError:
        return 75.0


def memory_control(module=None) -> "MemoryControl | None":
    """The installed MemoryControl (carried by the unload wrapper), or None if the patch is off."""
    try:
        module = module or _host_module()
    except ImportError:
        return None
    return getattr(getattr(module, "unload_all_models", None), "__distorch_control__", None)


def _memory_wrapper(original, name: str, control: "MemoryControl"):
    if name == "unload_all_models":
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            return control.unload_all(original, *args, **kwargs)
    else:
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            return control.soft_empty_cache(original, *args, **kwargs)
    setattr(wrapper, PATCH_MARKER, "memory_control")
    wrapper.__distorch_control__ = control
    return wrapper


def patchers_in(outputs) -> list:
    """The ModelPatchers inside a loader's outputs (MODEL is one; CLIP and VAE carry one)."""
    found = []
    for item in outputs or ():
        patcher = item if hasattr(item, "attachments") else getattr(item, "patcher", None)
        if patcher is not None and hasattr(patcher, "attachments"):
            found.append(patcher)
    return found


def model_label(patcher) -> str:
    placement = placement_of(patcher)
    inner = getattr(patcher, "model", None)
    kind = type(inner).__name__ if inner is not None else type(patcher).__name__
    return f"{placement.source} ({placement.component})" if placement else kind


FULL_PASS_INTERVAL_S = 5.0  # the extra cache pass at most this often, unless an unload asks for it


class MemoryControl:
    """What the pack adds to the host's unload flow, and the state it needs between calls.

    - ``retained``: outputs of loaders run with keep_loaded = on, held so that the node-cache reset
      of "Free model and node cache" cannot drop them and the next prompt reuses them.
    - ``survivors``: models the last unload deliberately kept, held through the rest of that flow
      (node-cache reset, gc, empty cache) and released when the next prompt is queued.
    - ``held_devices``: every device a loaded model has used, for the multi-device cache pass.
    """

    def __init__(self, module):
        self.module = module
        # ``lock`` serialises the worker's unload / cache passes (it may be held for seconds while
        # weights move); ``flags`` guards the counters the HTTP handlers touch, never held long, so
        # the event loop cannot stall behind an unload.
        self.lock = threading.RLock()
        self.flags = threading.Lock()
        self.retained = RetainedModels()
        self.survivors: list = []
        self.held_devices: set[str] = set()
        self.pack_seen = False
        self.force_requested = False
        self.unloading = False
        self.trim_pending = False
        self.last_full_pass = float("-inf")  # time.monotonic() of the last full cache pass
        self.flows_started = 0
        self.flows_completed = 0
        self.last_unload: dict | None = None
        self.flow_before = None  # readings when the current unload flow started
        self.holders: dict[str, tuple] = {}  # name -> (list patchers, release all): other pack caches

    # -- the host calls these through the wrappers ------------------------------------------
    def unload_all(self, original, *args, **kwargs):
        before = _readings()
        with self.lock:
            self.flow_before = before
            with self.flags:
                self.flows_started += 1
                force, self.force_requested = self.force_requested, False
            entries = [e for e in list(self.module.current_loaded_models) if e.model is not None]
            self._note_devices(entries)
            managed = [e for e in entries if placement_of(e.model) is not None]
            if force:
                mode, unloaded = "force", self._unload(entries)
                released = self.retained.clear() + self._release_holders()
                self.survivors = []
                kept = []
            elif not managed:
                # Rule 4: nothing of ours is loaded, so the host decides, exactly as without the pack.
                self.unloading = True  # the host's unload calls soft_empty_cache itself: not the flow's end
                try:
                    result = original(*args, **kwargs)
                finally:
                    self.unloading = False
                self.last_unload = {"mode": "core", "at": time.time(), "unloaded": [], "kept": []}
                log.info("unload models (core): no DisTorch model loaded, so ComfyUI's own unload ran")
                return result
            else:
                flagged = [e for e in managed if not placement_of(e.model).keep_loaded]
                mode = "selective" if flagged else "noop"
                unloaded = self._unload(flagged)
                released = 0
                kept_entries = [e for e in entries if not any(e is f for f in flagged)]
                self.survivors = [e.model for e in kept_entries]
                kept = [model_label(p) for p in self.survivors]
            self.trim_pending = True
            self.last_unload = {"mode": mode, "at": time.time(), "unloaded": unloaded, "kept": kept}
        log.info("unload models (%s): unloaded %s; kept %s%s", mode, ", ".join(unloaded) or "nothing",
                 ", ".join(kept) or "nothing", f"; released {released} retained loader outputs" if released else "")
        return None

    def soft_empty_cache(self, original, *args, **kwargs):
        result = original(*args, **kwargs)
        with self.lock:
            entries = list(self.module.current_loaded_models)
            self._note_devices(entries)
            # Newer hosts call soft_empty_cache after every node (and during sampling); 0.3.75 calls
            # it when it evicts models and every few seconds after a prompt. The extra pass runs
            # after an unload flow, and otherwise at most once per FULL_PASS_INTERVAL_S.
            now = time.monotonic()
            released = self.trim_pending or now - self.last_full_pass >= FULL_PASS_INTERVAL_S
            if released:
                self.last_full_pass = now
            try:
                current = str(self.module.get_torch_device())
            except Exception:
                current = None
            others = sorted(d for d in self.held_devices if d not in (current, "cpu")) if released else []
            trim = self.trim_pending
            self.trim_pending = False
            with self.flags:
                completed = self.flows_completed if self.unloading else self.flows_started
        for device in others:
            device_utils.empty_device_cache(device)
        if not trim and released and self.pack_seen:
            try:
                trim = device_utils.read_ram().percent_used >= _ram_trim_percent()
            except Exception:
                trim = False
        if trim:
            device_utils.release_freed_ram()
        with self.lock:
            finished = completed > self.flows_completed and self.last_unload is not None
            if finished:
                self.last_unload["completed_at"] = time.time()  # the flow's last step is done
                before, self.flow_before = self.flow_before, None
            self.flows_completed = max(self.flows_completed, completed)
        if finished and before is not None:
            after = _readings()
            if after is not None:
                log.info("%s", change_line(f"unload flow ({self.last_unload['mode']}) memory change", before, after))
        return result

    # -- the pack calls these ---------------------------------------------------------------
    def request_force(self) -> int:
        """Make the next unload unload everything on every device; returns the flow to wait for."""
        with self.flags:
            self.force_requested = True
            return self.flows_started + 1

    def next_flow(self) -> int:
        with self.flags:
            return self.flows_started + 1

    def register_holder(self, name: str, held_patchers, release_all) -> None:
        """Another part of the pack that keeps models (the modes cache): its models are listed as
        retained in the memory report, and a force free empties it. ``held_patchers()`` returns
        the ModelPatchers it holds, ``release_all()`` drops them and returns how many."""
        self.holders[name] = (held_patchers, release_all)

    def _release_holders(self) -> int:
        released = 0
        for name, (_, release_all) in list(self.holders.items()):
            try:
                released += int(release_all() or 0)
            except Exception as exc:
                log.warning("force free: emptying %s failed: %s", name, exc)
        return released

    def _held_by_holders(self) -> list:
        held = []
        for name, (held_patchers, _) in list(self.holders.items()):
            try:
                held.extend(held_patchers())
            except Exception as exc:
                log.debug("listing %s failed: %s", name, exc)
        return held

    def release_survivors(self) -> None:
        self.survivors = []  # one assignment: safe without the worker's lock

    def loaded_models(self) -> list[ModelMemory]:
        """Every model the host lists as loaded, then retained ones it does not list. Reads a copy
        of the host's list without the worker's lock (copying a list is atomic in CPython)."""
        entries = [e.model for e in list(self.module.current_loaded_models)]
        retained = [p for outputs in self.retained.all_outputs() for p in patchers_in(outputs)]
        retained += self._held_by_holders()
        result, seen = [], set()
        for state, patchers in (("loaded", entries), ("retained", retained)):
            for patcher in patchers:
                inner = getattr(patcher, "model", None)
                if patcher is None or inner is None or id(inner) in seen:
                    continue
                seen.add(id(inner))
                result.append(describe_model(patcher, state))
        return result

    # -- helpers ------------------------------------------------------------------------------
    def _note_devices(self, entries) -> None:
        for entry in entries:
            patcher = entry.model
            if patcher is None:
                continue
            if placement_of(patcher) is not None:
                self.pack_seen = True
            split = (getattr(patcher, "attachments", None) or {}).get(SPLIT_ATTACHMENT_KEY)
            donors = list(getattr(split, "offloaded", {}).values()) if split is not None else []
            for device in (getattr(entry, "device", None), getattr(patcher, "load_device", None), *donors):
                if device is not None:
                    self.held_devices.add(str(device))

    def _unload(self, entries) -> list[str]:
        names = []
        for entry in entries:
            patcher = entry.model
            label = model_label(patcher) if patcher is not None else "a dead model"
            try:
                entry.model_unload()
            except Exception as exc:  # keep going: the others must still be unloaded
                log.warning("unloading %s failed: %s", label, exc)
            current = self.module.current_loaded_models
            for index in range(len(current) - 1, -1, -1):
                if current[index] is entry:
                    current.pop(index)
            names.append(label)
        return names


def _readings():
    try:
        return device_utils.read_all_devices()
    except Exception as exc:  # a reading must never break the host's unload
        log.debug("memory readings failed: %s", exc)
        return None


def describe_model(patcher, state: str) -> ModelMemory:
    """Where one model's weights are, from its tensors (reads attributes only, no copies)."""
    inner = patcher.model
    devices: dict[str, int] = {}
    for tensors in (inner.parameters(), inner.buffers()):
        for tensor in tensors:
            key = str(tensor.device)
            if key == "meta":  # not materialised yet (newer hosts build some weights lazily)
                continue
            devices[key] = devices.get(key, 0) + tensor.nelement() * tensor.element_size()
    placement = placement_of(patcher)
    try:
        loaded = int(patcher.loaded_size())
    except Exception:
        loaded = 0
    if loaded and _is_dynamic(patcher):
        # DynamicVRAM keeps the weights on the CPU and caches GPU copies outside the module:
        # loaded_size() counts those plus the weights it force-loaded onto the GPU (already seen
        # above as module tensors there). The CPU weights stay where they are.
        target = str(getattr(patcher, "load_device", "cpu"))
        cached = loaded - int(getattr(inner, "model_loaded_weight_memory", 0) or 0)
        if target != "cpu" and cached > 0:
            devices[target] = devices.get(target, 0) + cached
    return ModelMemory(
        id=f"{id(inner):x}", name=placement.source if placement else type(inner).__name__,
        model_class=type(inner).__name__, loader=placement.loader if placement else "core",
        component=placement.component if placement else None,
        compute_device=str(getattr(patcher, "load_device", "")), devices=devices, loaded_bytes=loaded,
        pack_managed=placement is not None, keep_loaded=placement.keep_loaded if placement else None,
        flagged=bool(placement is not None and not placement.keep_loaded), state=state,
        loaded_at=(getattr(patcher, "attachments", None) or {}).get(LOADED_AT_KEY))


def _is_dynamic(patcher) -> bool:
    try:
        return bool(getattr(patcher, "is_dynamic", lambda: False)())
    except Exception:
        return False


def offload_settings(module=None) -> OffloadSettings:
    """The host's offload configuration, read defensively (names move between versions)."""
    module = module or _host_module()

    def value(name, default=None):
        return getattr(module, name, default)

    state = value("vram_state")
    cpu_state = value("cpu_state")
    streams = value("NUM_STREAMS")
    cap = value("MAX_PINNED_MEMORY")
    reserved = None
    try:
        reserved = int(module.extra_reserved_memory())
    except Exception:
        pass
    return OffloadSettings(
        vram_state=getattr(state, "name", None if state is None else str(state)),
        cpu_state=getattr(cpu_state, "name", None if cpu_state is None else str(cpu_state)),
        async_offload=None if streams is None else streams > 0,
        offload_streams=streams, pinned_memory=None if cap is None else cap > 0,
        pinned_bytes=value("TOTAL_PINNED_MEMORY"), pinned_cap_bytes=None if cap is None or cap <= 0 else int(cap),
        reserved_vram_bytes=reserved, dynamic_vram=_dynamic_vram_on())


def _dynamic_vram_on() -> bool | None:
    """Whether the host builds models with ModelPatcherDynamic (the same test the split refuses on)."""
    try:
        import comfy.model_patcher
    except ImportError:
        return None
    return dynamic_vram.host_uses_dynamic_vram(comfy.model_patcher)
