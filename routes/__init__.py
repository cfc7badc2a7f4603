"""HTTP routes of the pack, one module per capability, registered on ComfyUI's PromptServer.

Each capability module exposes ``add_routes(routes, runtime)`` taking an aiohttp ``RouteTableDef``
and the pack's runtime; the registration calls ``register(runtime)`` once. ComfyUI mirrors every route of
``PromptServer.instance.routes`` under ``/api`` itself.
"""
from __future__ import annotations

import logging

log = logging.getLogger("distorch.routes")

# capability module names under routes/, registered in this order
CAPABILITIES: tuple[str, ...] = ("memory", "placement", "modes", "retention", "queue", "residency")


def host_server():
    """ComfyUI's PromptServer instance, or None outside a running ComfyUI (main.py imports
    ``server`` before custom nodes; benchmarks and unit tests import the pack without one)."""
    import sys

    return getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)


def add_on_prompt_handler(registry, server, handler, label: str) -> None:
    """``server.add_on_prompt_handler(handler)``, recorded in ``registry`` with its removal (the
    host has no remove: the handler is taken out of its list by identity)."""
    server.add_on_prompt_handler(handler)

    def remove():
        handlers = getattr(server, "on_prompt_handlers", [])
        for index in range(len(handlers) - 1, -1, -1):
            if handlers[index] is handler:
                del handlers[index]

    registry.add(label, remove)


def register(runtime, routes=None) -> list[str]:
    """Add every capability's routes to the server's route table (or ``routes``), handing each the
    runtime; returns the modules added. Without a server nothing is registered."""
    import importlib

    if routes is None:
        if runtime.server is None:
            log.debug("no ComfyUI PromptServer in this process: routes not registered")
            return []
        routes = runtime.server.routes
    added = []
    for name in CAPABILITIES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_routes(routes, runtime)
        added.append(name)
    return added
