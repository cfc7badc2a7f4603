"""What this server holds, by model file, and which server a prompt should go to.

- ``GET /distorch/residency``: each model the server holds (listed by ComfyUI as loaded, kept by
  the pack, or still in ComfyUI's node cache) with the files it came from (folder, name, size,
  modification time), where it is, its bytes, keep_loaded and the mode holding it; the queue's
  length; how often each file was read by a loader here. Small and cheap: no tensor is walked.
  Schema: schemas/residency.schema.json.
- ``POST /distorch/route`` ``{"prompt": {...}, "servers": [URL, ...]}``: asks each server's
  residency route and answers which one to send the prompt to and why; a server that cannot be
  reached is reported, not fatal.
- ``GET /distorch/route/recent``: the last prompts ComfyUI-Distributed's load balancing sent
  through the pack's choice (empty when Distributed is not installed), and the servers it asked.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from ..distorch import __version__
from ..distorch.host.distributed_routing import wanted_files
from ..distorch.host.model_files import placement_files
from ..distorch.logic.placement_record import placement_of
from ..distorch.logic.residency import choose, identity_document, prompt_files, queue_from_document
from .http import guarded, read_body
from .request_models import RouteRequest

log = logging.getLogger("distorch.routes")

SCHEMA_VERSION = 1


def residency_document(runtime) -> dict:
    """The answer of GET /distorch/residency (blocking: run it off the event loop)."""
    files, control = runtime.model_files, runtime.memory
    held = control.held_patchers() if control is not None else []
    modes = _modes_of(runtime)
    models, seen = [], set()
    for patcher, state in held:
        seen.add(id(patcher.model))
        models.append(_model_entry(patcher.model, files.files_of(patcher) or placement_files(placement_of(patcher)),
                                   state, patcher, control.is_kept_patcher(patcher) if control else None,
                                   modes.get(id(patcher.model))))
    for module in files.alive_modules():  # dropped from the host's list, still in its node cache
        if id(module) not in seen:
            models.append(_model_entry(module, files.files_of_module(module), "cached", None, None, None))
    queue = runtime.server.prompt_queue.get_tasks_remaining() if runtime.server is not None else 0
    return {"schema_version": SCHEMA_VERSION, "server": f"comfyui-distorch {__version__}", "timestamp": time.time(),
            "queue_remaining": int(queue), "models": [m for m in models if m["files"]],
            "loads": [{"folder": folder, "name": name, "count": count}
                      for (folder, name), count in sorted(files.loads.items())]}


def _model_entry(module, files, state: str, patcher, kept, mode) -> dict:
    device = None
    if patcher is not None:
        try:
            device = str(patcher.current_loaded_device())
        except Exception:
            device = str(getattr(patcher, "load_device", "")) or None
    if device is None:
        device = next((str(t.device) for t in module.parameters()), None)
    try:
        size = int(patcher.model_size()) if patcher is not None else _module_bytes(module)
    except Exception:
        size = _module_bytes(module)
    return {"files": [identity_document(f) for f in files], "model_class": type(module).__name__, "state": state,
            "device": device, "bytes": size, "keep_loaded": kept, "mode": mode}


def _module_bytes(module) -> int:
    return sum(t.nelement() * t.element_size() for tensors in (module.parameters(), module.buffers()) for t in tensors)


def _modes_of(runtime) -> dict[int, str]:
    """id(module) -> the mode whose cache entry holds it."""
    modes = getattr(runtime, "modes", None)
    found = {}
    try:
        for name, patcher in modes.held_by_mode():
            found[id(patcher.model)] = name
    except Exception:
        pass
    return found


def add_routes(routes, runtime) -> None:
    @routes.get("/distorch/residency")
    @guarded("GET /distorch/residency")
    async def get_residency(request):
        document = await asyncio.get_running_loop().run_in_executor(None, residency_document, runtime)
        return web.json_response(document)

    @routes.post("/distorch/route")
    @guarded("POST /distorch/route")
    async def post_route(request):
        body = await read_body(request, RouteRequest)
        router = runtime.router
        candidates, servers = [], []
        for candidate, _, error in await router.ask(body.servers):
            servers.append({"url": candidate.url, "reachable": error is None, **({"error": error} if error else {}),
                            "queue_remaining": candidate.queue_remaining})
            candidates.append(candidate)
        wanted = await asyncio.get_running_loop().run_in_executor(None, wanted_files, body.prompt)
        named = prompt_files(body.prompt)
        reachable = [c for c in candidates if c.held is not None] or candidates
        choice = choose(reachable, wanted, lambda among: min(among, key=lambda c: c.queue_remaining).url,
                        router.penalty_bytes)
        return web.json_response({"server": choice.url, "reason": choice.reason, "fallback": choice.fallback,
                                  "scores": choice.scores, "servers": servers,
                                  "files": [{"folder": f, "name": n, "known_here": any(
                                      w.folder == f and w.name == n for w in wanted)} for f, n in named]})

    @routes.get("/distorch/route/recent")
    @guarded("GET /distorch/route/recent")
    async def get_recent(request):
        router = runtime.router
        return web.json_response({"distributed": router.installed, "enabled": router.enabled,
                                  "routed": list(router.routed), "servers": _server_summaries(router)})


def _server_summaries(router) -> list[dict]:
    """Per server Distributed asked about: the files of the models it held at the last ask."""
    summaries = []
    for url, entry in sorted(router.servers.items()):
        if "error" in entry:
            summaries.append({"url": url, "error": entry["error"], "at": entry["at"]})
            continue
        document = entry["document"]
        names = sorted({f.get("name") for m in document.get("models", []) for f in m.get("files", [])
                        if isinstance(f, dict)})
        summaries.append({"url": url, "files": names, "queue_remaining": queue_from_document(document),
                          "at": entry["at"]})
    return summaries
