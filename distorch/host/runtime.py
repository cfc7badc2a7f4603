"""The one object that owns what the pack keeps for the life of the ComfyUI process.

Built once at registration (``registration.build_runtime``), handed to the nodes (bound to their
classes) and to the routes (closed over by their handlers). Nothing else in the pack keeps state at
module level, and nothing is stored on host functions or queue methods: what the wrappers need is
here. ``close()`` stops what runs (the modes file watcher, the report thread) and undoes every
change to the host through the patch registry, newest first; tests build one, use it, close it.

The engine defines the container only: the parts above it (memory control, the modes service, the
memory reporter) are typed loosely here and filled in by the registration, so this package never
imports them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ... import device_utils
from ..logic.patch_registry import PatchRegistry, UninstallReport
from .distributed_routing import ResidencyRouter
from .load_pipeline import LoadPipeline
from .model_files import ModelFiles

log = logging.getLogger("distorch.runtime")


@dataclass(eq=False)
class Runtime:
    registry: PatchRegistry = field(default_factory=PatchRegistry)
    readings: device_utils.NvmlReader = field(default_factory=device_utils.NvmlReader)
    pipeline: LoadPipeline = None                   # built in __post_init__ (needs the registry)
    memory: object = None                           # model_management_mgpu.MemoryControl, None when off
    queue: object = None                            # queue_control.QueueControl, None outside a server
    modes: object = None                            # modes.runtime.ModesService
    reporter: object = None                         # routes.memory.MemoryReporter (a server only)
    server: object = None                           # ComfyUI's PromptServer, None outside a server
    install_report: object = None                   # what model_management_mgpu.install did
    added_routes: list = field(default_factory=list)  # route modules registered on the server
    notices: set = field(default_factory=set)       # one-time log notices already given (the split's)
    model_files: ModelFiles = field(default_factory=ModelFiles)  # the files behind each loaded model
    router: ResidencyRouter = field(default_factory=ResidencyRouter)  # ComfyUI-Distributed's choice, if present
    _stops: list = field(default_factory=list)      # (label, stop) of running services, not host changes

    def __post_init__(self):
        if self.pipeline is None:
            self.pipeline = LoadPipeline(registry=self.registry, notices=self.notices)

    def on_close(self, label: str, stop) -> None:
        """Run ``stop`` at ``close`` (before the host changes are undone): threads, watchers."""
        self._stops.append((label, stop))

    def close(self) -> UninstallReport:
        """Stop the services, then undo every change to the host, newest first."""
        for label, stop in reversed(self._stops):
            try:
                stop()
            except Exception as exc:
                log.warning("comfyui-distorch: stopping %s failed: %s", label, exc)
        self._stops.clear()
        report = self.registry.uninstall()
        self.memory = self.queue = None
        return report
