"""Queue priorities and mode affinity on ComfyUI's own queue (distorch/host/queue_control.py), over HTTP:

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
from collections.abc import Callable

from aiohttp import web

from ..distorch.host.queue_control import QueueControl, affinity_from_environment, request_priority
from ..distorch.logic.scheduler import PriorityError, parse_priority
from . import add_on_prompt_handler
from .http import BadRequest, guarded, read_body
from .request_models import AffinityRequest

log = logging.getLogger("distorch.routes.queue")
PROMPT_PATHS = ("/prompt", "/api/prompt")
EVENT = "distorch.queue"


def _loaded_modes(runtime) -> Callable[[], list[str]]:
    def loaded() -> list[str]:
        try:
            return runtime.modes.cached_modes()
        except Exception as exc:  # the modes service is optional to the queue
            log.debug("no loaded modes: %s", exc)
            return []
    return loaded


def _control(runtime) -> QueueControl:
    if runtime.queue is None:
        raise BadRequest("queue priorities are off in this ComfyUI (see the comfyui-distorch start-up line)",
                         status=503)
    return runtime.queue


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


def priority_middleware(runtime):
    """An aiohttp middleware refusing a bad priority on ``POST /prompt`` with the host's error
    format. aiohttp cannot take a middleware out of a started app: once the runtime's queue
    control is gone (uninstalled) it passes every request through."""
    @web.middleware
    async def refuse_bad_priority(request: web.Request, handler):
        if request.method == "POST" and request.path in PROMPT_PATHS and runtime.queue is not None:
            try:
                body = json.loads(await request.read() or b"null")  # aiohttp keeps the body for the handler
            except ValueError:
                body = None  # the host's handler answers malformed JSON itself
            message = priority_error(body)
            if message is not None:
                error = {"type": "invalid_priority", "message": message, "details": message, "extra_info": {}}
                return web.json_response({"error": error, "node_errors": {}}, status=400)
        return await handler(request)
    return refuse_bad_priority


def install(server, runtime) -> str | None:
    """Wrap the server's queue, add the on_prompt handler and the middleware, each recorded in
    the runtime's patch registry; the runtime's ``queue`` is then the QueueControl. Why not, or None."""
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

    control = QueueControl(_loaded_modes(runtime), max_passes, on_change=changed)
    registry = runtime.registry
    why = control.install(queue, registry)
    if why is not None:
        return why
    runtime.queue = control

    def forget_control():
        runtime.queue = None

    registry.add("queue control (runtime.queue)", forget_control)

    def number_prompt(json_data):
        return control.number_prompt(server, json_data)

    add_on_prompt_handler(registry, server, number_prompt, "on_prompt handler: queue priorities")
    app = getattr(server, "app", None)
    middlewares = getattr(app, "middlewares", None)
    if middlewares is not None and not middlewares.frozen:
        middleware = priority_middleware(runtime)
        middlewares.append(middleware)

        def remove_middleware():
            if not middlewares.frozen and middleware in middlewares:
                middlewares.remove(middleware)  # else it stays, inert (runtime.queue is None)

        registry.add("middleware: refuse a bad priority", remove_middleware)
    else:
        log.warning("comfyui-distorch: the server already started; an unknown priority is queued as normal "
                    "instead of refused")
    return None


def add_routes(routes, runtime) -> None:
    server = runtime.server
    if server is not None:
        why = install(server, runtime)
        if why is not None:
            log.warning("comfyui-distorch: queue priorities off: %s", why)

    @routes.get("/distorch/queue")
    @guarded("GET /distorch/queue")
    async def get_queue(request):
        return web.json_response(_control(runtime).report())

    @routes.post("/distorch/queue/affinity")
    @guarded("POST /distorch/queue/affinity")
    async def set_affinity(request):
        asked = await read_body(request, AffinityRequest)
        control = _control(runtime)
        try:
            control.set_max_passes(asked.max_passes)
        except PermissionError as exc:
            raise BadRequest(str(exc), status=409, affinity=control.report()["affinity"]) from None
        return web.json_response(control.report())
