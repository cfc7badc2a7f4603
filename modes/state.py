"""The modes currently in force, and reloading them: parse -> validate -> swap, under a lock.

An invalid file never replaces a valid one: the old modes stay, the errors are kept in
``last_error`` and reported to every listener. Listeners (the cache, the websocket event) are
called after each reload attempt with a ``ReloadResult``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .location import LEGACY_SOURCE, Location, locate
from .schema import Checks, ModesConfig, build_config
from .yamlsafe import Document, ModesFileError, Problem, read_document

log = logging.getLogger("distorch.modes")


@dataclass
class ReloadResult:
    ok: bool
    reason: str                       # what triggered it: "start", "file", "signal", "route", ...
    generation: int
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    changed: bool = False             # the modes in force changed
    seconds: float = 0.0


def _legacy_document(location: Location) -> Document:
    doc = Document(LEGACY_SOURCE, location.legacy)
    doc.marks[()] = (1, 1)
    return doc


class ModesState:
    def __init__(self, env: Callable[[], Mapping[str, str]], user_dir: Callable[[], str | None],
                 checks: Callable[[], Checks]):
        self._env, self._user_dir, self._checks = env, user_dir, checks
        self._lock = threading.RLock()
        self.config: ModesConfig | None = None
        self.location: Location = Location("none", None, reason="not loaded yet")
        self.last_error: ModesFileError | None = None
        self.generation = 0            # bumps whenever a reload changes the modes in force
        self.loaded_at: float | None = None
        self.listeners: list[Callable[[ReloadResult], None]] = []

    # ---- reading -----------------------------------------------------------------------------
    def snapshot(self) -> tuple[ModesConfig | None, Location, ModesFileError | None, int]:
        with self._lock:
            return self.config, self.location, self.last_error, self.generation

    def why_empty(self) -> str:
        config, location, error, _ = self.snapshot()
        if config is not None and config.modes:
            return ""
        if error is not None:
            return f"the modes file has errors: {error.problems[0]}"
        return location.reason or "no modes defined"

    # ---- reloading ---------------------------------------------------------------------------
    def _parse(self, location: Location) -> ModesConfig | None:
        if location.origin == "none":
            return None
        if location.origin == "legacy":
            return build_config(_legacy_document(location), self._checks())
        path = location.path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            hint = ("the file named by DISTORCH_MODES does not exist; fix the variable or create the file"
                    if location.origin == "env" else "the modes file was removed")
            raise ModesFileError([Problem(str(path), 1, 1, hint)]) from None
        except OSError as exc:
            raise ModesFileError([Problem(str(path), 1, 1, f"cannot read the modes file: {exc.strerror or exc}")]) from None
        return build_config(read_document(raw, str(path)), self._checks())

    def reload(self, reason: str) -> ReloadResult:
        started = time.perf_counter()
        with self._lock:
            location = locate(self._env(), self._user_dir())
            try:
                config = self._parse(location)
            except ModesFileError as exc:
                self.last_error = exc
                if self.location.origin == "none" or self.config is None:
                    self.location = location
                result = ReloadResult(False, reason, self.generation, errors=exc.problems,
                                      seconds=time.perf_counter() - started)
                log.error("modes: %s; %s", "; ".join(str(p) for p in exc.problems[:20]),
                          "keeping the modes in force" if self.config is not None else "no modes in force")
            else:
                changed = _summary(config) != _summary(self.config)
                changed = changed or location != self.location
                self.config, self.location, self.last_error = config, location, None
                if changed or self.loaded_at is None:
                    self.generation += 1   # counts changes of the modes in force, not reload attempts
                self.loaded_at = time.time()
                warnings = list(config.warnings) if config else []
                result = ReloadResult(True, reason, self.generation, warnings=warnings, changed=changed,
                                      seconds=time.perf_counter() - started)
                if location.origin == "legacy":
                    log.warning("modes: %s", location.reason)
                for warning in warnings:
                    log.warning("modes: %s", warning)
                log.info("modes: %s (%s): %s", location.path or LEGACY_SOURCE if location.origin != "none" else
                         "no modes file", reason, ", ".join(config.modes) if config else location.reason)
            listeners = list(self.listeners)
        for listener in listeners:
            try:
                listener(result)
            except Exception:  # a listener must not break reloading
                log.exception("modes: a reload listener failed")
        return result


def _summary(config: ModesConfig | None):
    if config is None:
        return None
    return (config.default_mode, tuple((name, spec.signature()) for name, spec in config.modes.items()),
            config.cache_max_modes, config.cache_max_gb)
