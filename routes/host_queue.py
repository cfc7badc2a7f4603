"""Queue a prompt the pack built through the host's own ``POST /prompt`` handler.

Why the handler itself, not a copy of it: ``POST /prompt`` runs the server's ``on_prompt``
handlers first (other packs record or rewrite prompts there; the pack's own survivor release
listens there), then numbers the entry (``number``, ``front``), validates, moves sensitive
``extra_data`` aside and queues. Handing that handler the body a client would send keeps the
pack's prompts identical to the user's on every ComfyUI version; a re-implementation drifts.
The handler is found on ``PromptServer.instance.routes`` (where core registers it) and called
with a stand-in request whose body is ours; middlewares already ran for the request that asked
the pack to queue.
"""
from __future__ import annotations

import json

from aiohttp import web

from . import host_server
from .http import BadRequest


class PromptRequest:
    """What the host's handler reads of a request: our JSON body. Anything else it may read
    (app, headers, remote, ...) comes from the request the pack is answering."""

    def __init__(self, original: web.Request, body: dict):
        self._original = original
        self._raw = json.dumps(body).encode()

    async def read(self) -> bytes:
        return self._raw

    async def text(self) -> str:
        return self._raw.decode()

    async def json(self, *, loads=json.loads):
        return loads(self._raw.decode())

    def __getattr__(self, name):
        return getattr(self._original, name)


def host_prompt_handler(server):
    """The handler core registered for ``POST /prompt``, or None."""
    for route in getattr(server, "routes", None) or ():
        if isinstance(route, web.RouteDef) and route.method == "POST" and route.path == "/prompt":
            return route.handler
    return None


async def queue_prompt(request: web.Request, prompt: dict, *, client_id: str | None = None,
                       extra_data: dict | None = None, front: bool | None = None,
                       number: float | None = None, priority: str | None = None) -> dict:
    """Queue ``prompt`` as ``POST /prompt`` would; returns the host's answer (``prompt_id``,
    ``number``, ``node_errors``). Raises BadRequest with the host's status and node errors when it
    refuses the prompt."""
    server = host_server()
    handler = host_prompt_handler(server) if server is not None else None
    if handler is None:
        raise BadRequest("this ComfyUI has no POST /prompt handler on PromptServer.routes for the pack to "
                         "queue through; build the workflow yourself and send it to POST /prompt", status=503)
    body: dict = {"prompt": prompt}
    for key, value in (("client_id", client_id), ("extra_data", extra_data), ("front", front), ("number", number),
                       ("priority", priority)):
        if value is not None:
            body[key] = value
    response = await handler(PromptRequest(request, body))
    raw = getattr(response, "body", None) or b"{}"
    answer = json.loads(raw if isinstance(raw, (bytes, str)) else b"{}")
    if response.status == 200:
        return answer
    error = answer.get("error")
    if isinstance(error, dict):
        error = ": ".join(str(part) for part in (error.get("message"), error.get("details")) if part)
    if not 400 <= response.status < 500:
        raise RuntimeError(f"ComfyUI's POST /prompt answered {response.status}: {error}")
    raise BadRequest(f"ComfyUI refused the prompt the pack built: {error or 'no reason given'}; the node_errors "
                     "say which node and input", status=response.status, node_errors=answer.get("node_errors", {}))
