"""HTTP routes of the pack, one module per capability, registered on ComfyUI's PromptServer.

Each capability module exposes ``add_routes(routes)`` taking an aiohttp ``RouteTableDef``; the
pack's ``__init__.py`` calls ``register()`` once. ComfyUI mirrors every route of
``PromptServer.instance.routes`` under ``/api`` itself.
"""
from __future__ import annotations

import logging

log = logging.getLogger("distorch.routes")

# capability module names under routes/, registered in this order
CAPABILITIES: tuple[str, ...] = ("memory", "placement", "modes")


def register(server=None) -> list[str]:
    """Add every capability's routes to the server's route table; returns the modules added."""
    import importlib
    import sys

    if server is None:
        # Only inside a running ComfyUI (main.py imports server before custom nodes); an
        # in-process import of the pack (benchmarks, unit tests) gets no routes.
        host_server = sys.modules.get("server")
        server = getattr(getattr(host_server, "PromptServer", None), "instance", None)
        if server is None:
            log.debug("no ComfyUI PromptServer in this process: routes not registered")
            return []
    added = []
    for name in CAPABILITIES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_routes(server.routes)
        added.append(name)
    return added
