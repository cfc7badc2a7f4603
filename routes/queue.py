"""Queue priorities and mode affinity on ComfyUI's own queue (distorch/queue_control.py), over HTTP:

- ``POST /prompt`` (and ``/api/prompt``) accepts ``"priority": "urgent" | "high" | "normal" | "low"``
  beside ``front``, or as ``extra_data.priority``; an unknown value is a 400 naming the allowed
  ones, in the host's own error format, before the host sees the request (an aiohttp middleware
  added to the host's app: the host's ``on_prompt`` handlers cannot refuse a request);
- ``GET /distorch/queue``: pending prompts per rank and in run order, the running one with its
  mode, completed and failed counts since start, the modes loaded now, mode switches and how many
  prompts affinity ran early (schemas/distorch_queue.schema.json); the same document is pushed as
  the websocket event ``distorch.queue`` when it changes;
- ``POST /distorch/queue/affinity {"max_passes": N}``: the affinity bound, from ComfyUI's settings
  dialog; ``DISTORCH_MODE_AFFINITY`` wins (409).
"""
from __future__ import annotations

import json
import logging
import os

from aiohttp import web

from ..distorch.queue_control import (MAX_MAX_PASSES, QueueControl, affinity_from_environment,
                                      queue_control, request_priority)
from ..distorch.scheduler import PriorityError, parse_priority
from . import host_server
from .http import BadRequest, expect_number, guarded, json_body, reject_unknown

log = logging.getLogger("distorch.routes.queue")
PROMPT_PATHS = ("/prompt", "/api/prompt")
EVENT = "distorch.queue"


def _loaded_modes() -> list[str]:
    from ..modes.runtime import service

    try:
        return service().cached_modes()
    except Exception as exc:  # the modes service is optional to the queue
        log.debug("no loaded modes: %s", exc)
        return []


def _control() -> QueueControl:
    control = queue_control(getattr(host_server(), "prompt_queue", None))
    if control is None:
        raise BadRequest("queue priorities are off in this ComfyUI (see the comfyui-distorch start-up line)",
                         status=503)
    return control


def priority_error(json_data) -> str | None:
    """Why a ``POST /prompt`` body's priority is not allowed, or None."""
    if not isinstance(json_data, dict):
        return None
    value, where = request_priority(json_data)
    try:
        parse_priority(value, where)
    except PriorityError as exc:
        return str(exc)
    return None


@web.middleware
async def refuse_bad_priority(request: web.Request, handler):
    # inert once uninstalled: aiohttp cannot take a middleware out of a started app
    if request.method == "POST" and request.path in PROMPT_PATHS and \
            queue_control(getattr(host_server(), "prompt_queue", None)) is not None:
        try:
            body = json.loads(await request.read() or b"null")  # aiohttp keeps the body for the handler
        except ValueError:
            body = None  # the host's handler answers malformed JSON itself
        message = priority_error(body)
        if message is not None:
            error = {"type": "invalid_priority", "message": message, "details": message, "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)
    return await handler(request)


def install(server) -> str | None:
    """Wrap the server's queue, add the on_prompt handler and the middleware. Why not, or None."""
    queue = getattr(server, "prompt_queue", None)
    if queue is None or not hasattr(server, "add_on_prompt_handler"):
        return "this ComfyUI's server has no prompt queue or on_prompt handlers"
    try:
        max_passes = affinity_from_environment(os.environ)
    except ValueError as exc:
        log.warning("comfyui-distorch: %s; mode affinity uses its default", exc)
        max_passes = None

    def changed():
        server.send_sync(EVENT, control.report())

    control = QueueControl(_loaded_modes, max_passes, on_change=changed)
    why = control.install(queue)
    if why is not None:
        return why
    def number_prompt(json_data):
        return control.number_prompt(server, json_data)

    number_prompt.__distorch_queue__ = control
    server.add_on_prompt_handler(number_prompt)
    app = getattr(server, "app", None)
    middlewares = getattr(app, "middlewares", None)
    if middlewares is not None and not middlewares.frozen:
        middlewares.append(refuse_bad_priority)
    else:
        log.warning("comfyui-distorch: the server already started; an unknown priority is queued as normal "
                    "instead of refused")
    return None


def uninstall(server) -> bool:
    """Undo ``install``: the queue's wrappers and the on_prompt handler (the middleware stays, inert)."""
    control = queue_control(getattr(server, "prompt_queue", None))
    if control is None:
        return False
    handlers = getattr(server, "on_prompt_handlers", [])
    handlers[:] = [h for h in handlers if getattr(h, "__distorch_queue__", None) is not control]
    return control.uninstall(server.prompt_queue)


def add_routes(routes) -> None:
    server = host_server()
    if server is not None:
        why = install(server)
        if why is not None:
            log.warning("comfyui-distorch: queue priorities off: %s", why)

    @routes.get("/distorch/queue")
    @guarded("GET /distorch/queue")
    async def get_queue(request):
        return web.json_response(_control().report())

    @routes.post("/distorch/queue/affinity")
    @guarded("POST /distorch/queue/affinity")
    async def set_affinity(request):
        body = await json_body(request, allow_empty=False, example='{"max_passes": 2}')
        reject_unknown(body, ("max_passes",))
        value = expect_number(body, "max_passes", 0, MAX_MAX_PASSES, integer=True)
        if value is None:
            raise BadRequest('give \'max_passes\': how many times a prompt may be passed (0 = affinity off), '
                             'e.g. {"max_passes": 2}')
        control = _control()
        try:
            control.set_max_passes(int(value))
        except PermissionError as exc:
            raise BadRequest(str(exc), status=409, affinity=control.report()["affinity"]) from None
        return web.json_response(control.report())
