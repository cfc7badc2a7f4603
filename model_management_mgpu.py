"""Every patch comfyui-distorch makes to ``comfy.model_management`` lives here.

Each patch wraps the host's original function and is recorded in the runtime's patch registry
(``distorch/logic/patch_registry.py``), which takes it back on uninstall (by identity: a wrapper another
pack put around ours stays). Each checks the attribute it relies on first: a host whose function
is missing or has another shape gets one log line and keeps its own behaviour.

Patches (switch any off with ``DISTORCH_DISABLE_PATCHES=name,name``):
- ``device_override``: ``get_torch_device``, ``text_encoder_device`` and ``vae_device`` return the
  device a DisTorch loader node chose, but only inside that node's ``device_override`` block
  (distorch/logic/device_choice.py) and only in the thread running it (a ContextVar, not a global). Outside such a block they return
  exactly what the host's originals return, so core-only workflows see no change.
- ``memory_control``: ``unload_all_models`` and ``soft_empty_cache``. The unload that ComfyUI's
  ``POST /free`` (and Manager's two unload buttons) triggers follows the pack's ``keep_loaded``
  rule (README, "Unload semantics"): with no pack-loaded model present it is the host's own call,
  unchanged. The prompt worker makes that call right after it reads the queue's unload flags, so
  the pack tells it apart by wrapping the queue's ``get_flags`` (``watch_free_requests``). Every
  other call (OOM recovery, ``--disable-smart-memory``, other packs' purges) keeps the host's
  meaning: everything comes off the compute devices, and ``keep_loaded`` models stay retained in
  RAM only. ``soft_empty_cache`` runs the host's original, then clears the allocator cache of
  every other device that holds or held a model, and hands freed RAM back to the OS after an
  unload or when RAM use passes ``DISTORCH_RAM_TRIM_PERCENT`` (default 75). The state these
  wrappers share is one ``MemoryControl`` object, owned by the pack's runtime.
"""
from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from . import device_utils
from .distorch.host import dynamic_vram
from .distorch.host.model_files import patchers_in
from .distorch.logic.device_choice import chosen_device
from .distorch.logic.memory_report import ModelMemory, OffloadSettings, change_line
from .distorch.logic.patch_registry import PatchError, PatchRegistry
from .distorch.logic.placement_record import placement_of, whole_size
from .distorch.logic.retention import (MAX_MODELS_ENV, RAM_PERCENT_ENV, BudgetError, RetainedModels, Retained,
                                 RetentionBudget, budget_from_environment, over_budget)

log = logging.getLogger("distorch.patches")

# host function -> role whose chosen device it returns while an override is active
DEVICE_OVERRIDE_TARGETS = {
    "get_torch_device": "compute",
    "text_encoder_device": "text_encoder",
    "vae_device": "vae",
}
MEMORY_CONTROL_TARGETS = ("unload_all_models", "soft_empty_cache")
LOADED_AT_KEY = "distorch.loaded_at"  # attachment: when a pack loader read the model's file
SPLIT_ATTACHMENT_KEY = "distorch.split"  # attachment: a split's plan (its ``offloaded`` module -> donor)


@dataclass
class InstallReport:
    patched: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    free_requests_watched: bool = False  # the server's PromptQueue.get_flags is wrapped
    memory: "MemoryControl | None" = None  # the unload flow's state, when memory control is on


def _host_module():
    import comfy.model_management

    return comfy.model_management


def disabled_patches() -> set[str]:
    raw = os.environ.get("DISTORCH_DISABLE_PATCHES", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _override_behaviour(role: str):
    def behaviour(original, *args, **kwargs):
        chosen = chosen_device(role)
        return chosen if chosen is not None else original(*args, **kwargs)
    return behaviour


def _takes_no_required_arguments(function) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    return all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in signature.parameters.values())


def install(registry: PatchRegistry, module=None, queue=None, readings=None) -> InstallReport:
    """Install every enabled patch, each recorded in ``registry`` (whose ``uninstall`` takes them
    all back). ``queue`` is the server's PromptQueue (None outside a running ComfyUI): its unload
    requests are watched. Installing twice into one registry changes nothing."""
    module = module or _host_module()
    report = InstallReport()
    disabled = disabled_patches()
    if "device_override" in disabled:
        report.skipped.update({name: "disabled by DISTORCH_DISABLE_PATCHES" for name in DEVICE_OVERRIDE_TARGETS})
    else:
        for name, role in DEVICE_OVERRIDE_TARGETS.items():
            why = _cannot_wrap(registry, module, name)
            if why is None and registry.patch_for(module, name) is None:
                registry.wrap(module, name, _override_behaviour(role), label=f"comfy.model_management.{name}")
            _note(report, name, why)
    if "memory_control" in disabled:
        report.skipped.update({name: "disabled by DISTORCH_DISABLE_PATCHES" for name in MEMORY_CONTROL_TARGETS})
    else:
        whys = {name: _cannot_wrap(registry, module, name) for name in MEMORY_CONTROL_TARGETS}
        if whys["unload_all_models"] is None and not isinstance(getattr(module, "current_loaded_models", None), list):
            whys["unload_all_models"] = "no current_loaded_models list"
        if any(why is not None for why in whys.values()):
            # The two work as a pair (an unload marks what the cache pass must clear): all or none.
            for name, why in whys.items():
                report.skipped[name] = why or "its partner patch cannot apply"
        else:
            existing = registry.patch_for(module, "unload_all_models")
            control = existing.context if existing is not None else MemoryControl(module, readings=readings)
            if existing is None:
                registry.wrap(module, "unload_all_models", control.unload_all,
                              label="comfy.model_management.unload_all_models", context=control)
                registry.wrap(module, "soft_empty_cache", control.soft_empty_cache,
                              label="comfy.model_management.soft_empty_cache", context=control)
            report.patched.extend(MEMORY_CONTROL_TARGETS)
            report.memory = control
            if queue is not None:
                why = watch_free_requests(registry, queue, control)
                if why is None:
                    report.free_requests_watched = True
                else:
                    report.skipped["PromptQueue.get_flags"] = why
    for name, why in report.skipped.items():
        if why.startswith("disabled"):
            continue
        consequence = ("DisTorch loaders fall back to the host's device choice for it" if name in DEVICE_OVERRIDE_TARGETS
                       else "POST /free unloads every model (keep_loaded is not honoured)"
                       if name == "PromptQueue.get_flags"
                       else "ComfyUI's own unload flow applies and keep_loaded is not honoured")
        log.warning("comfyui-distorch: not patching comfy.model_management.%s (%s); %s", name, why, consequence)
    return report


def _note(report: InstallReport, name: str, why: str | None) -> None:
    if why is None:
        report.patched.append(name)
    else:
        report.skipped[name] = why


def _cannot_wrap(registry: PatchRegistry, module, name: str) -> str | None:
    """Why ``module.name`` cannot be wrapped, or None if it can (or already is, by this registry).

    Every function the pack wraps is called by the host without arguments (some take optional
    ones): a required parameter means the host changed it, and the wrapper would be wrong."""
    current = getattr(module, name, None)
    if current is None or not callable(current):
        return "not found in this ComfyUI"
    if registry.patch_for(module, name) is not None:
        return None
    if not _takes_no_required_arguments(current):
        return f"unexpected signature {inspect.signature(current)}"
    return None


# ---- memory control ---------------------------------------------------------------------------

def _ram_trim_percent() -> float:
    try:
        return float(os.environ.get("DISTORCH_RAM_TRIM_PERCENT", "75"))
    except ValueError:
        return 75.0


def watch_free_requests(registry: PatchRegistry, queue, control: "MemoryControl") -> str | None:
    """Wrap ``queue.get_flags`` (on this queue object only) so that the worker's reading of unload
    flags arms the selective rule for the ``unload_all_models`` call that follows it. Returns why
    it cannot, or None."""
    current = getattr(queue, "get_flags", None)
    if current is None or not callable(current):
        return "the prompt queue has no get_flags"
    if registry.patch_for(queue, "get_flags") is not None:
        return None

    def get_flags(original, *args, **kwargs):
        flags = original(*args, **kwargs)
        try:
            taken = kwargs.get("reset", args[0] if args else True)  # a peek (reset=False) starts no flow
            # The worker's own test (main.py): free_memory implies unload_models unless it is given.
            if taken and isinstance(flags, dict) and flags.get("unload_models", flags.get("free_memory", False)):
                control.arm_free_flow()
        except Exception as exc:  # never break the host's worker loop
            log.warning("comfyui-distorch: reading the queue's unload flags failed: %s", exc)
        return flags

    try:
        # an instance attribute: the class and other queues are untouched
        registry.wrap(queue, "get_flags", get_flags, label="PromptQueue.get_flags")
    except PatchError as exc:
        return str(exc)
    return None


def model_id(patcher) -> str:
    """The id ``GET /internal/memory`` gives a model (``models[].id``): that of the module its
    ModelPatcher wraps, the same for every clone of it."""
    return f"{id(patcher.model):x}"


def model_label(patcher) -> str:
    placement = placement_of(patcher)
    inner = getattr(patcher, "model", None)
    kind = type(inner).__name__ if inner is not None else type(patcher).__name__
    return f"{placement.source} ({placement.component})" if placement else kind


FULL_PASS_INTERVAL_S = 5.0  # the extra cache pass at most this often, unless an unload asks for it


class MemoryControl:
    """What the pack adds to the host's unload flow, and the state it needs between calls.

    - ``retained``: outputs of loaders run with keep_loaded = on, held so that the node-cache reset
      of "Free model and node cache" cannot drop them and the next prompt reuses them; bounded by
      ``budget`` together with the other holders (the modes cache).
    - ``survivors``: models the last unload deliberately kept, held through the rest of that flow
      (node-cache reset, gc, empty cache) and released when the next prompt is queued.
    - ``held_devices``: every device a loaded model has used, for the multi-device cache pass.
    - ``models_requested``: model ids ``POST /distorch/free {"model": id}`` asked the next unload
      flow to unload (instead of the /free rule), in the order asked.
    """

    def __init__(self, module, budget: RetentionBudget | None = None, readings=None):
        self.module = module
        self.readings = readings  # the runtime's NVML reader (None: torch's figures)
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
        self.models_requested: dict[str, None] = {}  # an ordered set of model ids
        self.free_flow_thread: int | None = None  # the worker that just read unload flags
        self.unloading = False
        self.trim_pending = False
        self.last_full_pass = float("-inf")  # time.monotonic() of the last full cache pass
        self.flows_started = 0
        self.flows_completed = 0
        self.last_unload: dict | None = None
        self.flow_before = None  # readings when the current unload flow started
        self.holders: dict[str, Holder] = {}  # name -> another pack cache that keeps models
        self.budget = budget if budget is not None else _budget_from_environment()
        self.evictions: deque[dict] = deque(maxlen=EVICTIONS_SHOWN)
        self.evicted_total = 0

    # -- the host calls these through the wrappers ------------------------------------------
    def arm_free_flow(self) -> None:
        """The calling thread (the prompt worker) read unload flags: its next unload_all_models
        call is the /free flow."""
        self.free_flow_thread = threading.get_ident()

    def unload_all(self, original, *args, **kwargs):
        armed = self.free_flow_thread == threading.get_ident()
        if not armed:
            return self._host_unload(original, *args, **kwargs)
        self.free_flow_thread = None
        before = _readings(self.readings)
        with self.lock:
            self.flow_before = before
            with self.flags:
                self.flows_started += 1
                force, self.force_requested = self.force_requested, False
                requested, self.models_requested = list(self.models_requested), {}
            entries = [e for e in list(self.module.current_loaded_models) if e.model is not None]
            self._note_devices(entries)
            managed = [e for e in entries if placement_of(e.model) is not None]
            if force:
                mode, (unloaded, failed) = "force", self._unload(entries)
                released = self.retained.clear() + self._release_holders()
                self.survivors = []
                kept = []
            elif requested:
                # The user asked for these models by id (the panel's per-model unload): exactly
                # they go, keep_loaded or not, core or not; everything else stays through the flow.
                mode = "model"
                unloaded, failed, not_found = self._unload_requested(entries, requested)
                released = 0
                wanted = set(requested)
                self.survivors = [e.model for e in entries if model_id(e.model) not in wanted]
                kept = [model_label(p) for p in self.survivors]
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
                kept_models = self._kept_models()
                flagged = [e for e in managed if id(e.model.model) not in kept_models]
                mode = "selective" if flagged else "noop"
                unloaded, failed = self._unload(flagged)
                released = 0
                kept_entries = [e for e in entries if not any(e is f for f in flagged)]
                self.survivors = [e.model for e in kept_entries]
                kept = [model_label(p) for p in self.survivors]
            self.trim_pending = True
            self.last_unload = {"mode": mode, "at": time.time(), "unloaded": unloaded, "kept": kept}
            if mode == "model":
                self.last_unload["requested"] = requested
                if not_found:
                    self.last_unload["not_found"] = not_found
            if failed:
                self.last_unload["failed"] = failed
        log.info("unload models (%s): unloaded %s; kept %s%s%s", mode, ", ".join(unloaded) or "nothing",
                 ", ".join(kept) or "nothing", f"; released {released} retained loader outputs" if released else "",
                 f"; FAILED to unload {', '.join(failed)} (still listed as loaded)" if failed else "")
        return None

    def _host_unload(self, original, *args, **kwargs):
        """``unload_all_models`` called for anything but the /free flow (OOM recovery, the
        worker under --disable-smart-memory, other packs): the host's meaning. The host's own
        call runs, then whatever of ours it left on another device (0.3.75 only unloads the
        primary one) is unloaded too. keep_loaded models stay retained, in RAM."""
        entries = [e for e in list(self.module.current_loaded_models) if e.model is not None]
        if not any(placement_of(e.model) is not None for e in entries):
            return original(*args, **kwargs)
        with self.lock:
            self._note_devices(entries)
            self.unloading = True
            try:
                result = original(*args, **kwargs)
            finally:
                self.unloading = False
            left = [e for e in list(self.module.current_loaded_models)
                    if e.model is not None and placement_of(e.model) is not None]
            also, failed = self._unload(left)
            self.survivors = []
            self.trim_pending = True
            kept_in_ram = [model_label(p) for outputs in self.retained.all_outputs() for p in patchers_in(outputs)]
            caller = _caller()
            still = self.module.current_loaded_models
            unloaded = [model_label(e.model) for e in entries if e.model is not None and not any(e is f for f in still)]
            self.last_unload = {"mode": "host", "at": time.time(), "caller": caller, "unloaded": unloaded,
                                "kept": [], "retained": kept_in_ram}
            if failed:
                self.last_unload["failed"] = failed
        log.info("unload models (host call from %s): ComfyUI's own unload of every model%s; %s%s", caller,
                 f", and {', '.join(also)} on other devices" if also else "",
                 f"keep_loaded models stay in RAM for reuse: {', '.join(kept_in_ram)}" if kept_in_ram
                 else "no keep_loaded model retained",
                 f"; FAILED to unload {', '.join(failed)}" if failed else "")
        return result

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
            after = _readings(self.readings)
            if after is not None:
                log.info("%s", change_line(f"unload flow ({self.last_unload['mode']}) memory change", before, after))
        return result

    # -- the pack calls these ---------------------------------------------------------------
    def request_force(self) -> int:
        """Make the next unload unload everything on every device; returns the flow to wait for."""
        with self.flags:
            self.force_requested = True
            return self.flows_started + 1

    def request_model_unload(self, model_id: str) -> int:
        """Make the next unload flow unload the model with this id (``GET /internal/memory``'s
        ``models[].id``) from every device and let go of the pack's holds on it, instead of the
        /free rule; returns the flow to wait for. Requests made before that flow add up."""
        with self.flags:
            self.models_requested[model_id] = None
            return self.flows_started + 1

    def next_flow(self) -> int:
        with self.flags:
            return self.flows_started + 1

    def register_holder(self, name: str, held_patchers, release_all, entries=None, evict=None,
                        release_models=None) -> None:
        """Another part of the pack that keeps models (the modes cache): its models are listed as
        retained in the memory report, a force free empties it, and its entries count toward the
        retention budget. ``held_patchers()`` returns the ModelPatchers it holds, ``release_all()``
        drops them and returns how many; ``entries()`` lists them as ``Retained`` items and
        ``evict(key)`` drops one (both optional: without them the holder is outside the budget);
        ``release_models(unwanted)`` drops what holds the models ``unwanted(patcher)`` picks (the
        per-model unload; optional)."""
        self.holders[name] = Holder(held_patchers, release_all, entries, evict, release_models)

    def retain(self, key, outputs, owner=None, label: str = "") -> None:
        """Hold a keep_loaded loader's outputs; ``owner`` (the loader node) releases what it held
        for other inputs. Then the budget is enforced, the new entry evicted last."""
        size = sum(_whole_size(p) for p in patchers_in(outputs))
        self.retained.put(key, outputs, label or ", ".join(model_label(p) for p in patchers_in(outputs)), size)
        released = self.retained.claim(owner, key) if owner is not None else []
        for old_key, old_outputs in released:
            self._let_go(old_outputs, f"{owner} now loads other inputs")
        self.enforce_budget(protect=("retained", key))

    def retained_outputs(self, key, owner=None):
        """The outputs held for ``key`` (now most recently used), or None; ``owner`` now holds it.
        A load one of whose models was unloaded on its own is let go here: the loader reads the
        file again (it must return every output)."""
        rest = self.retained.pop_incomplete(key)
        if rest is not None:
            self._let_go(rest, "a part of it was unloaded on request, so the loader reads the file again")
            return None
        outputs = self.retained.get(key)
        if outputs is not None and owner is not None:
            for _, old_outputs in self.retained.claim(owner, key):
                self._let_go(old_outputs, f"{owner} now loads other inputs")
        return outputs

    def disown(self, owner) -> None:
        """``owner`` (a loader node) ran with keep_loaded off: it no longer holds anything."""
        for _, old_outputs in self.retained.claim(owner, None):
            self._let_go(old_outputs, f"{owner} no longer keeps it loaded")

    def set_budget(self, budget: RetentionBudget) -> list[dict]:
        self.budget = budget
        return self.enforce_budget()

    def retention_items(self) -> list[tuple[str, Retained]]:
        items = [("retained", item) for item in self.retained.items()]
        for name, holder in list(self.holders.items()):
            if holder.entries is None or holder.evict is None:
                continue
            try:
                items += [(name, item) for item in holder.entries()]
            except Exception as exc:
                log.warning("listing %s for the retention budget failed: %s", name, exc)
        return items

    def enforce_budget(self, protect=None) -> list[dict]:
        """Release least recently used retained entries until the budget holds; returns them."""
        items = self.retention_items()
        owner_of = {(owner, item.key): owner for owner, item in items}
        # Keys of different holders may collide: the budget sees (holder, key) pairs.
        tagged = [Retained((owner, item.key), item.label, item.size_bytes, item.last_used) for owner, item in items]
        ram_total = _ram_total()
        victims = over_budget(tagged, self.budget.max_models, self.budget.max_bytes(ram_total), protect)
        evicted = []
        for victim in victims:
            holder_name, key = victim.key
            record = {"label": victim.label, "bytes": victim.size_bytes, "holder": holder_name, "at": time.time(),
                      "reason": f"over the retention budget ({self.budget.max_models} models, "
                                f"{self.budget.ram_percent:g}% of RAM = {self.budget.max_bytes(ram_total) / 2**30:.1f} GiB)"}
            if owner_of.get(victim.key) == "retained":
                outputs = self.retained.pop(key)
                if outputs is None:
                    continue
                self._let_go(outputs, None)
            else:
                try:
                    self.holders[holder_name].evict(key)
                except Exception as exc:
                    log.warning("releasing %s from %s failed: %s", victim.label, holder_name, exc)
                    continue
            self.evictions.appendleft(record)
            self.evicted_total += 1
            evicted.append(record)
            log.info("retention budget: released %s (%.1f MiB) from %s, least recently used: %s; change the "
                     "budget in Settings > DisTorch or with %s / %s", victim.label, victim.size_bytes / 2**20,
                     holder_name, record["reason"], MAX_MODELS_ENV, RAM_PERCENT_ENV)
        return evicted

    def retention_report(self) -> dict:
        items = self.retention_items()
        ram_total = _ram_total()
        return {"budget": self.budget.as_dict(ram_total),
                "used": {"models": len(items), "bytes": sum(item.size_bytes for _, item in items)},
                "evicted_total": self.evicted_total, "recent_evictions": list(self.evictions)}

    def is_kept(self, patcher) -> bool:
        """Whether a pack loader holds this model with keep_loaded on (the one record of it: the
        retained outputs; a clone shares its model with the patcher held)."""
        return id(getattr(patcher, "model", None)) in self._kept_models()

    def _kept_models(self) -> set[int]:
        return {id(getattr(p, "model", None)) for outputs in self.retained.all_outputs() for p in patchers_in(outputs)}

    def _let_go(self, outputs, why: str | None) -> None:
        """Outputs the pack no longer keeps (already out of the retention record, so flagged):
        unloaded from the host if it lists them (the host loads them again if something still
        uses them)."""
        patchers = patchers_in(outputs)
        inner = {id(getattr(p, "model", None)) for p in patchers}
        with self.lock:
            entries = [e for e in list(self.module.current_loaded_models)
                       if e.model is not None and id(getattr(e.model, "model", None)) in inner]
            self._unload(entries)
        if why:
            log.info("released the kept %s: %s", ", ".join(model_label(p) for p in patchers) or "outputs", why)

    def _release_holders(self) -> int:
        released = 0
        for name, holder in list(self.holders.items()):
            try:
                released += int(holder.release_all() or 0)
            except Exception as exc:
                log.warning("force free: emptying %s failed: %s", name, exc)
        return released

    def _held_by_holders(self) -> list:
        held = []
        for name, holder in list(self.holders.items()):
            try:
                held.extend(holder.held_patchers())
            except Exception as exc:
                log.debug("listing %s failed: %s", name, exc)
        return held

    def _unload_requested(self, entries, requested: list[str]) -> tuple[list[str], list[str], list[str]]:
        """Unload the models with these ids from the host and let go of the pack's holds on them
        (a keep_loaded load, another holder's cache), so their RAM can go back. Returns (unloaded,
        failed, ids not found): a model may have gone between the request and this flow."""
        wanted = set(requested)

        def is_wanted(patcher) -> bool:
            return getattr(patcher, "model", None) is not None and model_id(patcher) in wanted

        targets = [e for e in entries if is_wanted(e.model)]
        unloaded, failed = self._unload(targets)
        found = {model_id(e.model) for e in targets}
        held_only = []  # models the pack holds but the host did not list (state "retained")

        def note(patcher) -> None:
            if model_id(patcher) not in found:
                found.add(model_id(patcher))
                held_only.append(model_label(patcher))

        let_go = self.retained.without(lambda output: any(is_wanted(p) for p in patchers_in((output,))),
                                       lambda output: sum(_whole_size(p) for p in patchers_in((output,))))
        for _, output in let_go:
            for patcher in patchers_in((output,)):
                note(patcher)
        for name, holder in list(self.holders.items()):
            try:
                held = [p for p in holder.held_patchers() if is_wanted(p)]
                if not held:
                    continue
                if holder.release_models is None:
                    log.warning("unload by id: %s holds %s and cannot release one model; it stays there until "
                                "a force free", name, ", ".join(model_label(p) for p in held))
                    continue
                released = holder.release_models(is_wanted)
                for patcher in held:
                    note(patcher)
                log.info("unload by id: %s released %s", name, ", ".join(map(str, released)) or "nothing")
            except Exception as exc:
                log.warning("unload by id: releasing from %s failed: %s", name, exc)
        return unloaded + held_only, failed, [i for i in requested if i not in found]

    def release_survivors(self) -> None:
        self.survivors = []  # one assignment: safe without the worker's lock

    def loaded_models(self) -> list[ModelMemory]:
        """Every model the host lists as loaded, then retained ones it does not list."""
        kept = self._kept_models()
        return [describe_model(patcher, state, id(patcher.model) in kept) for patcher, state in self.held_patchers()]

    def held_patchers(self) -> list[tuple[object, str]]:
        """(patcher, "loaded" | "retained") for every model the host lists as loaded, then the
        retained ones it does not list, one per module. Reads a copy of the host's list without the
        worker's lock (copying a list is atomic in CPython)."""
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
                result.append((patcher, state))
        return result

    def is_kept_patcher(self, patcher) -> bool:
        return id(getattr(patcher, "model", None)) in self._kept_models()

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

    def _unload(self, entries) -> tuple[list[str], list[str]]:
        """Unload each entry through the host's LoadedModel; returns (unloaded, failed) labels.
        An entry leaves the host's list only when its unload succeeded: a failed one still holds
        its memory, and the host must keep counting it."""
        names, failed = [], []
        for entry in entries:
            patcher = entry.model
            label = model_label(patcher) if patcher is not None else "a dead model"
            try:
                entry.model_unload()
            except Exception as exc:  # keep going: the others must still be unloaded
                log.warning("unloading %s failed, so ComfyUI keeps it listed as loaded: %s: %s", label,
                            type(exc).__name__, exc)
                failed.append(label)
                continue
            current = self.module.current_loaded_models
            for index in range(len(current) - 1, -1, -1):
                if current[index] is entry:
                    current.pop(index)
            names.append(label)
        return names, failed


@dataclass(frozen=True)
class Holder:
    held_patchers: Callable[[], list]
    release_all: Callable[[], int]
    entries: Callable[[], list[Retained]] | None = None
    evict: Callable[[object], object] | None = None
    # release_models(unwanted) drops what holds a ModelPatcher for which unwanted(patcher) is
    # true (the per-model unload) and returns what it dropped; None: the holder cannot
    release_models: Callable[[Callable[[object], bool]], list] | None = None


EVICTIONS_SHOWN = 20  # the memory report lists this many recent budget releases


def _budget_from_environment() -> RetentionBudget:
    try:
        return budget_from_environment()
    except BudgetError as exc:
        log.warning("comfyui-distorch: %s; using the default retention budget (%d models, %g%% of RAM)",
                    exc, RetentionBudget().max_models, RetentionBudget().ram_percent)
        return RetentionBudget()


def _ram_total() -> int:
    try:
        return int(device_utils.read_ram().total)
    except Exception:
        return 0


def _whole_size(patcher) -> int:
    try:
        return whole_size(patcher)
    except Exception:
        return 0


def _caller() -> str:
    """Where the host called unload_all_models from, for the log ('execution.py:execute')."""
    frame = inspect.currentframe()
    try:
        for _ in range(4):  # _caller <- _host_unload <- unload_all <- wrapper <- the caller
            frame = frame.f_back if frame is not None else None
        if frame is None:
            return "unknown"
        return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}"
    finally:
        del frame


def _readings(nvml=None):
    try:
        return device_utils.read_all_devices(nvml=nvml)
    except Exception as exc:  # a reading must never break the host's unload
        log.debug("memory readings failed: %s", exc)
        return None


def describe_model(patcher, state: str, kept: bool = False) -> ModelMemory:
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
        id=model_id(patcher), name=placement.source if placement else type(inner).__name__,
        model_class=type(inner).__name__, loader=placement.loader if placement else "core",
        component=placement.component if placement else None,
        compute_device=str(getattr(patcher, "load_device", "")), devices=devices, loaded_bytes=loaded,
        pack_managed=placement is not None, keep_loaded=kept if placement else None,
        flagged=bool(placement is not None and not kept), state=state,
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
