"""HTTP routes of the pack, one module per capability, registered on ComfyUI's PromptServer.

Each capability module exposes ``add_routes(routes)`` taking an aiohttp ``RouteTableDef``; the
pack's ``__init__.py`` calls ``register()`` once. ComfyUI mirrors every route of
``PromptServer.instance.routes`` under ``/api`` itself.
"""
from __future__ import annotations

import logging

log = logging.getLogger("distorch.routes")

# capability module names under routes/, registered in this order
CAPABILITIES: tuple[str, ...] = ("memory", "placement", "modes", "retention", "queue")


def host_server():
    """ComfyUI's PromptServer instance, or None outside a running ComfyUI (main.py imports
    ``server`` before custom nodes; benchmarks and unit tests import the pack without one)."""
    import sys

    return getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)


def register(server=None) -> list[str]:
    """Add every capability's routes to the server's route table; returns the modules added."""
    import importlib

    if server is None:
        server = host_server()
        if server is None:
            log.debug("no ComfyUI PromptServer in this process: routes not registered")
            return []
    added = []
    for name in CAPABILITIES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_routes(server.routes)
        added.append(name)
    return added
