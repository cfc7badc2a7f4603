"""The modes service inside a running ComfyUI: state + cache + watchers + events, one instance.

Everything ComfyUI-specific (folder_paths, devices, PromptServer) is wired here; the modules it
wires are pure. The pack's runtime owns the one instance (built at registration, so a node asked
before ``start`` still works); ``start`` runs only inside a server.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from .cache import GIB, ModeCache
from .detection import detect_model
from .header import lora_context_dim
from .paths import Roots
from .schema import DEFAULT_CACHE_GB, DEFAULT_CACHE_MODES, Checks, ModeSpec
from .state import ModesState, ReloadResult
from .watch import FileWatcher, install_sighup

log = logging.getLogger("distorch.modes")
WS_EVENT = "distorch.modes"


def _host_roots() -> Roots:
    import folder_paths

    def folders(name):
        try:
            return tuple(Path(p) for p in folder_paths.get_folder_paths(name))
        except Exception:
            return ()

    return Roots(models_dir=Path(folder_paths.models_dir), checkpoint_dirs=folders("checkpoints"),
                 diffusion_dirs=folders("diffusion_models"), diffusers_dirs=folders("diffusers"),
                 lora_dirs=folders("loras"))


def _check_device(value: str, key: str) -> str | None:
    from .. import device_utils

    try:
        device_utils.resolve_device(value, key)
    except device_utils.DeviceNameError as exc:
        return str(exc)
    return None


def _check_allocation(value: str, key: str) -> str | None:
    from .. import device_utils
    from ..distorch.logic.allocation import AllocationError, parse_allocation

    try:
        parse_allocation(value, device_utils.available_devices(), key)
    except AllocationError as exc:
        return str(exc)
    return None


def _check_attention(value: str, key: str) -> str | None:
    from ..distorch.host import attention

    return attention.check(value, key)


def host_checks() -> Checks:
    return Checks(roots=_host_roots(), check_device=_check_device, check_allocation=_check_allocation,
                  check_attention=_check_attention, inspect_model=detect_model, lora_width=lora_context_dim)


def _user_dir() -> str | None:
    import folder_paths

    return folder_paths.get_user_directory()


def send_event(server, data: dict) -> None:
    """``distorch.modes`` on the websocket (no-op outside a running server)."""
    if server is not None:
        try:
            server.send_sync(WS_EVENT, data)
        except Exception:  # no event loop yet (start-up) or shutting down
            log.debug("modes: websocket event not sent", exc_info=True)


MEMORY_HOLDER = "modes cache"  # the name memory control lists this cache under


class ModesService:
    def __init__(self, pipeline, memory_control=None, server=None):
        """``pipeline``: the pack's one load pipeline (modes load through it);
        ``memory_control``: the pack's MemoryControl (None when off), which then lists the cached
        modes' models and counts them in the retention budget; ``server``: ComfyUI's PromptServer
        for the ``distorch.modes`` event (None outside a server)."""
        self.pipeline = pipeline
        self.server = server
        self.state = ModesState(lambda: dict(os.environ), _user_dir, host_checks)
        self.cache = ModeCache(DEFAULT_CACHE_MODES, int(DEFAULT_CACHE_GB * GIB))
        self.watcher = FileWatcher(lambda: self.reload("file"))
        self.state.listeners.append(self._after_reload)
        self.sighup = False
        self._restore_sighup = None
        self.last_reload: ReloadResult | None = None
        self._load_lock = threading.Lock()   # one cold load at a time (prompt worker vs preload)
        self._started = False
        self._control = None  # the pack's MemoryControl, once registered with it
        self._register_with_memory_control(memory_control)

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self, registry=None) -> "ModesService":
        """Read the file and watch it; reload on SIGHUP. The SIGHUP handler is a process-wide
        change: recorded in ``registry`` (the runtime's) with its undo."""
        if self._started:
            return self
        self._started = True
        self.reload("start")
        self._restore_sighup = install_sighup(lambda: self.reload("signal"))
        self.sighup = self._restore_sighup is not None
        if self._restore_sighup is not None and registry is not None:
            registry.add("SIGHUP handler: reload modes.yaml", self._put_sighup_back)
        return self

    def _put_sighup_back(self) -> None:
        if self._restore_sighup is not None:
            self._restore_sighup()
            self._restore_sighup = None
        self.sighup = False

    def stop(self) -> None:
        """Undo ``start``: stop watching the file, put the previous SIGHUP handler back."""
        if not self._started:
            return
        self._started = False
        self.watcher.stop()
        self._put_sighup_back()

    def _register_with_memory_control(self, control) -> None:
        """Let the pack's memory control (where present) list the cached modes' models as retained
        and empty the cache on a forced free (POST /distorch/free {"force": true})."""
        if control is not None and hasattr(control, "register_holder"):
            from ..distorch.logic.retention import Retained

            control.register_holder(
                MEMORY_HOLDER, self.held_patchers, lambda: len(self.cache.clear()),
                entries=lambda: [Retained(*item) for item in self.cache.budget_items()], evict=self.cache.evict,
                release_models=self.release_models)
            self._control = control

    def held_patchers(self) -> list:
        """Every ModelPatcher the mode cache keeps alive."""
        return [patcher for _, patcher in self.held_by_mode()]

    def held_by_mode(self) -> list[tuple[str, object]]:
        """(mode name, patcher) for every ModelPatcher the mode cache keeps alive."""
        held = []
        for key in self.cache.keys():
            loaded = self.cache.peek(key)
            if loaded is None:
                continue
            name = self.cache.mode_of(key) or str(key)
            for part in (loaded.model, getattr(loaded.clip, "patcher", None), getattr(loaded.vae, "patcher", None)):
                if part is not None:
                    held.append((name, part))
        return held

    def release_models(self, unwanted) -> list[str]:
        """Drop the cached modes holding a model for which ``unwanted(patcher)`` is true (the
        memory panel's per-model unload); a mode is cached as a whole. Returns their names."""
        released = []
        for key in self.cache.keys():
            loaded = self.cache.peek(key)
            if loaded is None:
                continue
            parts = (loaded.model, getattr(loaded.clip, "patcher", None), getattr(loaded.vae, "patcher", None))
            if any(part is not None and unwanted(part) for part in parts):
                released += [f"mode '{entry.mode}'" for entry in self.cache.evict(key)]
        return released

    def ensure_loaded(self) -> None:
        if self.last_reload is None:
            self.reload("first use")

    def reload(self, reason: str) -> ReloadResult:
        return self.state.reload(reason)

    def _after_reload(self, result: ReloadResult) -> None:
        self.last_reload = result
        config, location, _, generation = self.state.snapshot()
        if result.ok:
            if config is not None:
                self.cache.configure(config.cache_max_modes, int(config.cache_max_gb * GIB))
            self._drop_stale()
        if location.origin in ("env", "user") or location.path is not None:
            self.watcher.retarget(location.path)
        send_event(self.server, {"event": "reload", "ok": result.ok, "reason": result.reason, "generation": generation,
                    "modes": list(config.modes) if config else [], "choices": self.names(),
                    "default_mode": config.default_mode if config else None,
                    "errors": [p.to_json() for p in result.errors],
                    "warnings": [p.to_json() for p in result.warnings]})

    def _drop_stale(self) -> None:
        """Drop cached entries whose setup no mode in force has (removed or changed in the file)."""
        config = self.state.snapshot()[0]
        current = {spec.fingerprint() for spec in config.modes.values()} if config is not None else set()
        for entry in self.cache.discard(lambda entry: entry.key in current):
            log.info("modes: dropped cached mode '%s' (removed or changed in the file)", entry.mode)

    # ---- modes -----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        self.ensure_loaded()
        config = self.state.snapshot()[0]
        if config is None:
            return []
        names = list(config.modes)
        if config.default_mode in names:
            names.remove(config.default_mode)
            names.insert(0, config.default_mode)
        return names

    def spec(self, name: str) -> ModeSpec | None:
        self.ensure_loaded()
        config = self.state.snapshot()[0]
        return config.modes.get(name) if config else None

    def unknown_mode_message(self, name: str) -> str:
        config, location, error, _ = self.state.snapshot()
        if config is None or not config.modes:
            return f"mode: no modes are available ({self.state.why_empty()})"
        where = location.path or "the environment"
        return (f"mode: '{name}' is not defined in {where}; defined: {', '.join(config.modes)}. "
                "Pick one of them, or add it to the file (it reloads on save)")

    def activate(self, name: str):
        """(spec in force, loaded models, whether they came from the cache). The models are cached
        by their files and settings; the defaults (size, steps, guidance) come from ``spec``."""
        from .load import load_mode

        spec = self.spec(name)
        if spec is None:
            raise ValueError(self.unknown_mode_message(name))
        key = spec.fingerprint()
        loaded = self.cache.get(key)
        if loaded is not None:
            return spec, loaded, True
        with self._load_lock:
            loaded = self.cache.peek(key)  # loaded by another thread meanwhile
            if loaded is not None:
                return spec, loaded, True
            started = time.perf_counter()
            loaded = load_mode(spec, self.pipeline)
            evicted = self.cache.put(key, name, loaded, loaded.size_bytes)
        # A reload during the load may have changed or removed this mode, and its clean-up ran
        # before this entry existed. The prompt still gets the setup it started with; the cache
        # keeps only setups in force (a reload after this point drops it itself).
        self._drop_stale()
        if self._control is not None:  # the pack-wide retention budget, this mode evicted last
            self._control.enforce_budget(protect=(MEMORY_HOLDER, key))
        log.info("modes: loaded '%s' from disk in %.2f s (%.1f MiB)%s", name, time.perf_counter() - started,
                 loaded.size_bytes / 2**20,
                 "; evicted " + ", ".join(e.mode for e in evicted) if evicted else "")
        if loaded.warnings:
            send_event(self.server, {"event": "warning", "mode": name, "warnings": loaded.warnings})
        return spec, loaded, False

    def cached_modes(self) -> list[str]:
        """Names of the modes whose models are loaded (in the cache) now: switching to one of them
        reads nothing from disk."""
        return [entry["mode"] for entry in self.cache.stats()["modes"]]

    def is_cached(self, name: str) -> bool:
        spec = self.spec(name)
        return spec is not None and spec.fingerprint() in self.cache.keys()

    def listing(self) -> dict:
        self.ensure_loaded()
        config, location, error, generation = self.state.snapshot()
        cached = set(self.cache.keys())
        modes = []
        if config is not None:
            for name, spec in config.modes.items():
                item = spec.describe()
                item["cached"] = spec.fingerprint() in cached
                item["default"] = name == config.default_mode
                modes.append(item)
        return {
            "source": {"origin": location.origin, "path": str(location.path) if location.path else None,
                       "note": location.reason or None},
            "generation": generation, "loaded_at": self.state.loaded_at,
            "default_mode": config.default_mode if config else None, "modes": modes,
            "reason": self.state.why_empty() or None,
            "warnings": [p.to_json() for p in (config.warnings if config else [])],
            "errors": [p.to_json() for p in error.problems] if error else [],
            "watch": {"file": str(self.watcher.path) if self.watcher.path else None,
                      "active": self.watcher.path is not None and self.watcher.error is None,
                      "note": self.watcher.error, "sighup": self.sighup},
        }
