"""``GET/POST /distorch/retention``: the budget for what the pack keeps loaded beyond ComfyUI's node
cache (keep_loaded outputs and the modes cache). ComfyUI's settings dialog (web/retention_settings.js)
posts here when the user changes the "DisTorch > Retention" settings; ``DISTORCH_RETAIN_MAX_MODELS``
/ ``DISTORCH_RETAIN_RAM_PERCENT`` set it at start and then win over the dialog (409 names them).
"""
from __future__ import annotations

import dataclasses
import logging

from aiohttp import web

from ..distorch.logic.retention import MAX_MODELS_ENV, RAM_PERCENT_ENV
from .http import BadRequest, guarded, read_body
from .request_models import RetentionRequest

log = logging.getLogger("distorch.routes.retention")


def _control(runtime):
    control = runtime.memory
    if control is None:
        raise BadRequest("memory control is off in this ComfyUI (see the comfyui-distorch start-up line), so "
                         "nothing is retained", status=503)
    return control


def add_routes(routes, runtime) -> None:
    @routes.get("/distorch/retention")
    @guarded("GET /distorch/retention")
    async def get_retention(request):
        return web.json_response(_control(runtime).retention_report())

    @routes.post("/distorch/retention")
    @guarded("POST /distorch/retention")
    async def set_retention(request):
        changes = (await read_body(request, RetentionRequest)).model_dump(exclude_unset=True)
        control = _control(runtime)
        if control.budget.source == "environment":
            raise BadRequest(f"the retention budget is set by {MAX_MODELS_ENV} / {RAM_PERCENT_ENV} in ComfyUI's "
                             "environment, which wins over the settings dialog: change or unset them and restart "
                             "ComfyUI", status=409, retention=control.retention_report())
        budget = dataclasses.replace(control.budget, **changes, source="settings")
        released = control.set_budget(budget)
        log.info("retention budget set: %d loads, %g%% of RAM%s", budget.max_models, budget.ram_percent,
                 f" ({len(released)} released)" if released else "")
        return web.json_response({**control.retention_report(), "released": released})
