"""Memory routes: ``GET /internal/memory``, ``POST /distorch/free``, and the ``distorch.memory``
websocket event.

The report reads NVML / psutil and walks every tensor of every loaded model (while the prompt
worker may be moving them), so it is built off the event loop: one build at a time on a thread of
its own, shared by every caller that arrives while it runs and reused for ``REPORT_TTL`` seconds.
``POST /distorch/free`` sets the same queue flags as ComfyUI's ``POST /free``; the prompt worker
acts on them between prompts, and the route waits for that (up to ``timeout``). With ``"model": id``
that flow unloads the one model instead (never from the HTTP thread: a prompt may be running).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from .. import device_utils
from ..distorch.logic.memory_report import fingerprint, report_document
from ..model_management_mgpu import offload_settings
from . import add_on_prompt_handler
from .http import BadRequest, guarded, read_body
from .request_models import FreeRequest

log = logging.getLogger("distorch.routes.memory")
REPORT_TTL = 0.1


def _event_interval() -> float:
    try:
        return max(0.1, float(os.environ.get("DISTORCH_MEMORY_EVENT_INTERVAL", "0.5")))
    except ValueError:
        return 0.5


def build_report(runtime) -> dict:
    """The memory document, built from scratch (blocking: run it off the event loop)."""
    import comfy.model_management as mm

    control = runtime.memory
    devices, ram = device_utils.read_all_devices(nvml=runtime.readings)
    models = []
    if control is not None:
        try:
            models = control.loaded_models()
        except RuntimeError:
            # The worker replaced a module's tensors while they were walked ("dictionary changed
            # size during iteration"): the next walk sees the settled picture.
            models = control.loaded_models()
    return report_document(devices, ram, offload_settings(mm), models,
                           control.last_unload if control is not None else None,
                           retention=control.retention_report() if control is not None else None)


def loaded_models_mark() -> tuple:
    """Which models the host has loaded, by identity: cheap (no walk of their tensors), and
    different after any load or unload."""
    import comfy.model_management as mm

    return tuple(id(loaded) for loaded in list(mm.current_loaded_models))


class MemoryReporter:
    """Builds the memory document on its own thread, one build at a time; concurrent callers
    share the build in flight, and a finished document is reused for ``REPORT_TTL`` seconds, as
    long as the host's list of loaded models is what it was when that build started (``mark``):
    a walk begun before an unload (a websocket update's, say) is never the answer after it."""

    def __init__(self, build, mark=lambda: None):
        self._build = build  # () -> the document
        self._mark = mark    # () -> a cheap value that changes when a model is loaded or unloaded
        self._executor: ThreadPoolExecutor | None = None
        self._cached: tuple[float, object, dict] | None = None          # (started, mark then, document)
        self._pending: tuple[float, object, asyncio.Future] | None = None

    async def report(self, fresh: bool = False) -> dict:
        """The document: one built in the last ``REPORT_TTL`` seconds, or the build in flight, of
        the loaded models as they are now. With ``fresh``, one whose build started after this call
        (to see the effect of an action)."""
        asked = time.monotonic()
        oldest = asked if fresh else asked - REPORT_TTL
        while True:
            now = self._mark()
            if self._cached is not None and self._cached[0] >= oldest and self._cached[1] == now:
                return self._cached[2]
            if self._pending is None:
                self._pending = self._start()
            started, mark, future = self._pending
            # shield: a caller that goes away must not cancel the build the others wait for
            document = await asyncio.shield(future)
            if (started >= asked if fresh else mark == now):
                return document
            # that build began before this caller's action, or before the models changed: another

    def _start(self) -> tuple[float, object, asyncio.Future]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="distorch-memory")
        started, mark = time.monotonic(), self._mark()
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._build)

        def finished(done: asyncio.Future) -> None:
            self._pending = None
            if not done.cancelled() and done.exception() is None:
                self._cached = (started, mark, done.result())

        future.add_done_callback(finished)
        return started, mark, future

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def _summary(document: dict) -> dict:
    return {"devices": {d["device"]: d["used"] for d in document["devices"]},
            "process_rss": document["ram"]["process_rss"],
            "models": [m["name"] for m in document["models"]]}


def add_routes(routes, runtime) -> None:
    reporter = MemoryReporter(lambda: build_report(runtime), loaded_models_mark)
    runtime.reporter = reporter
    runtime.on_close("memory report thread", reporter.close)

    @routes.get("/internal/memory")
    @guarded("GET /internal/memory")
    async def get_memory(request):
        return web.json_response(await reporter.report())

    @routes.post("/distorch/free")
    @guarded("POST /distorch/free")
    async def post_free(request):
        asked = await read_body(request, FreeRequest, allow_empty=True)
        force, free_memory, model = asked.force, asked.free_memory, asked.model
        control = runtime.memory
        if control is None:
            raise BadRequest("memory control is off in this ComfyUI (see the comfyui-distorch start-up "
                             "line): use ComfyUI's POST /free instead", status=503)
        host = runtime.server
        before = await reporter.report(fresh=True)
        if model is not None:
            _require_loaded(model, before)
            target = control.request_model_unload(model)
        else:
            target = control.request_force() if force else control.next_flow()
        host.prompt_queue.set_flag("unload_models", True)
        if free_memory or force:
            host.prompt_queue.set_flag("free_memory", True)
        deadline = time.monotonic() + (asked.timeout if asked.wait else 0)
        while control.flows_completed < target and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        done = control.flows_completed >= target
        result = {"force": force, "free_memory": free_memory or force,
                  "status": "done" if done else "queued", "before": _summary(before)}
        if model is not None:
            result["model"] = model
        if done:
            after = await reporter.report(fresh=True)
            result["after"] = _summary(after)
            after_used = result["after"]["devices"]
            # What went down, never negative: memory that grew meanwhile (another prompt, the
            # allocator) is in "before" and "after", not in "freed".
            result["freed"] = {device: max(0, used - after_used.get(device, used))
                               for device, used in result["before"]["devices"].items()}
            result["freed"]["process_rss"] = max(0, before["ram"]["process_rss"] - after["ram"]["process_rss"])
            result["last_unload"] = control.last_unload
        else:
            result["message"] = ("the prompt worker acts between prompts: the unload runs when the "
                                 "current prompt finishes")
        return web.json_response(result, status=200 if done else 202)

    host = runtime.server
    if host is not None:
        _start_memory_events(host, reporter, runtime.registry)
        control = runtime.memory
        if control is not None and hasattr(host, "add_on_prompt_handler"):
            def release_survivors(json_data):
                control.release_survivors()
                return json_data

            add_on_prompt_handler(runtime.registry, host, release_survivors,
                                  "on_prompt handler: release the models the last unload kept")


def _require_loaded(model: str, document: dict) -> None:
    """BadRequest unless ``model`` is the id of a model in the memory report."""
    ids = [m["id"] for m in document["models"]]
    if model in ids:
        return
    loaded = ", ".join(f'{m["id"]} ({m["name"]}, {m["component"] or m["class"]})' for m in document["models"])
    shown = model if len(model) <= 40 else model[:40] + "..."
    raise BadRequest(f"'model' {shown!r} is not a loaded model; loaded: {loaded or 'none'}. Take the id from "
                     "GET /internal/memory (models[].id); nothing was unloaded", loaded=ids)


class MemoryEvents:
    """Pushes ``distorch.memory`` to websocket clients when the picture changes (rate-capped).

    A failing build or send is logged once at warning level, not at every tick, and the loop goes
    on; when it works again that is logged and the clients get the picture at once."""

    def __init__(self, server, reporter: MemoryReporter, interval: float):
        self.server = server
        self.reporter = reporter
        self.interval = interval
        self.last = None        # fingerprint of the last document sent
        self.failing = False

    async def tick(self) -> None:
        if not getattr(self.server, "sockets", None):
            self.last = None  # a new client gets the picture at once
            return
        try:
            document = await self.reporter.report()
            mark = fingerprint(document)
            if mark != self.last:
                await self.server.send_json("distorch.memory", document)
                self.last = mark
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let telemetry take the server down
            self.last = None
            if self.failing:
                log.debug("distorch.memory event failed again: %s", exc)
            else:
                self.failing = True
                log.warning("comfyui-distorch: the distorch.memory websocket event failed (%s: %s); the memory "
                            "panel stops updating while this lasts. Retrying every %.1f s (logged once); "
                            "GET /internal/memory shows the error", type(exc).__name__, exc, self.interval,
                            exc_info=log.isEnabledFor(logging.DEBUG))
            return
        if self.failing:
            self.failing = False
            log.info("comfyui-distorch: the distorch.memory websocket event works again")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.tick()


def _start_memory_events(server, reporter: MemoryReporter, registry) -> None:
    app = getattr(server, "app", None)
    if app is None:
        return
    events = MemoryEvents(server, reporter, _event_interval())
    state: dict = {}

    async def start(_app):
        state["task"] = asyncio.get_running_loop().create_task(events.run())

    async def stop(_app):
        task = state.pop("task", None)
        if task is not None:
            task.cancel()
        reporter.close()

    try:
        app.on_startup.append(start)
        app.on_cleanup.append(stop)
    except RuntimeError as exc:  # the app is already running (frozen signals)
        log.warning("comfyui-distorch: the distorch.memory websocket event is off: %s", exc)
        return

    def remove():
        task = state.pop("task", None)
        if task is not None:
            task.cancel()  # a started app keeps its (frozen) hooks: the stopped task is what counts
        for hooks, hook in ((app.on_startup, start), (app.on_cleanup, stop)):
            if not hooks.frozen and hook in hooks:
                hooks.remove(hook)

    registry.add("app hooks: the distorch.memory websocket event", remove)
