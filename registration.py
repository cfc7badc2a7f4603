"""Builds the pack's one ``Runtime`` (distorch/host/runtime.py) and wires it to the host: the patches of
``comfy.model_management`` and of the prompt queue, the routes, the modes service, the node classes
(bound to it). Called once by ``__init__.py``; tests call it to get a runtime of their own and
``runtime.close()`` to undo everything it did."""
from __future__ import annotations

import logging

from . import model_management_mgpu, routes
from .distorch import __version__
from .distorch.host import distributed_routing
from .distorch.host.model_files import install_loader_notes
from .distorch.host.runtime import Runtime
from .modes.runtime import ModesService
from .nodes import node_mappings

log = logging.getLogger("distorch")


def build_runtime(server=None, module=None, start_services: bool | None = None) -> Runtime:
    """The runtime, with every host change made through its registry. ``server``: ComfyUI's
    PromptServer (None outside a running ComfyUI: no routes, no queue control, no file watcher);
    ``module``: the ``comfy.model_management`` to patch (the host's by default)."""
    runtime = Runtime(server=server)
    report = model_management_mgpu.install(runtime.registry, module=module,
                                           queue=getattr(server, "prompt_queue", None), readings=runtime.readings)
    runtime.install_report = report
    runtime.memory = report.memory
    runtime.modes = ModesService(runtime.pipeline, runtime.memory, server)
    runtime.added_routes = routes.register(runtime)
    if server is not None:
        _at_startup(runtime, server)
    if start_services if start_services is not None else server is not None:
        runtime.modes.start(runtime.registry)
        runtime.on_close("modes service", runtime.modes.stop)
    return runtime


def register(server=None):
    """What ComfyUI imports: (runtime, node class mappings, display names), with one log line."""
    server = server if server is not None else routes.host_server()
    runtime = build_runtime(server)
    classes, titles = node_mappings(runtime)
    split_host = runtime.pipeline.split_runtime.host_report()  # logs one warning if the internals differ
    report = runtime.install_report
    log.info("comfyui-distorch %s: %d nodes; patched comfy.model_management: %s%s; routes: %s%s", __version__,
             len(classes), ", ".join(report.patched) or "nothing",
             " (keep_loaded rule on POST /free)" if report.free_requests_watched else "",
             ", ".join(runtime.added_routes) or "none",
             "" if split_host.ok else "; splits off (this ComfyUI's internals differ: see the warning above)")
    return runtime, classes, titles


def _at_startup(runtime: Runtime, server) -> None:
    """Once every custom node has loaded (other packs' loaders, ComfyUI-Distributed, in whatever
    order ComfyUI found them): note the files behind what every loader returns, and put the
    residency choice into Distributed's load balancing where it is installed."""
    app = getattr(server, "app", None)
    if app is None:
        return

    async def install(_app):
        import nodes

        wrapped = install_loader_notes(runtime.registry, runtime.model_files, nodes.NODE_CLASS_MAPPINGS)
        log.debug("residency: loads noted for %s", ", ".join(wrapped))
        module = distributed_routing.find_orchestration_module()
        if module is not None:
            distributed_routing.install(runtime.registry, runtime.router, module)

    try:
        app.on_startup.append(install)
    except RuntimeError as exc:  # the app is already running (frozen signals)
        log.warning("comfyui-distorch: residency is off: %s", exc)
        return

    def remove():
        if not app.on_startup.frozen and install in app.on_startup:
            app.on_startup.remove(install)

    runtime.registry.add("residency: start-up hook", remove)
