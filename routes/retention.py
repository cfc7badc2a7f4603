"""``GET/POST /distorch/retention``: the budget for what the pack keeps loaded beyond ComfyUI's node
cache (keep_loaded outputs and the modes cache). ComfyUI's settings dialog (web/settings.js) posts
here when the user changes "DisTorch" settings; ``DISTORCH_RETAIN_MAX_MODELS`` /
``DISTORCH_RETAIN_RAM_PERCENT`` set it at start and then win over the dialog (409 names them).
"""
from __future__ import annotations

import dataclasses
import logging

from aiohttp import web

from ..distorch.retention import MAX_MODELS_ENV, RAM_PERCENT_ENV, BudgetError, RetentionBudget
from .http import BadRequest, error_response, expect_type, json_body

log = logging.getLogger("distorch.routes.retention")
KEYS = {"max_models", "ram_percent"}


def add_routes(routes) -> None:
    def control_or_none():
        from ..model_management_mgpu import memory_control

        return memory_control()

    @routes.get("/distorch/retention")
    async def get_retention(request):
        control = control_or_none()
        if control is None:
            return error_response(503, "memory control is off in this ComfyUI (see the comfyui-distorch start-up line)")
        return web.json_response(control.retention_report())

    @routes.post("/distorch/retention")
    async def set_retention(request):
        try:
            body = await json_body(request, allow_empty=False)
            unknown = sorted(set(body) - KEYS)
            if unknown:
                raise BadRequest(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(KEYS))}")
            max_models = expect_type(body, "max_models", int, None)
            ram_percent = expect_type(body, "ram_percent", (int, float), None)
        except BadRequest as exc:
            return error_response(400, f"POST /distorch/retention: {exc}")
        control = control_or_none()
        if control is None:
            return error_response(503, "memory control is off in this ComfyUI (see the comfyui-distorch start-up line)")
        if control.budget.source == "environment":
            return error_response(409, f"the retention budget is set by {MAX_MODELS_ENV} / {RAM_PERCENT_ENV} in "
                                       "ComfyUI's environment, which wins over the settings dialog: change or unset "
                                       "them and restart ComfyUI", retention=control.retention_report())
        changes = {name: value for name, value in (("max_models", max_models), ("ram_percent", ram_percent))
                   if value is not None}
        try:
            budget = dataclasses.replace(control.budget, **changes, source="settings")
        except BudgetError as exc:
            return error_response(400, f"POST /distorch/retention: {exc}")
        evicted = control.set_budget(budget)
        log.info("retention budget set from the settings dialog: %d models, %g%% of RAM%s", budget.max_models,
                 budget.ram_percent, f" ({len(evicted)} released)" if evicted else "")
        return web.json_response({**control.retention_report(), "released": evicted})


__all__ = ["add_routes", "RetentionBudget"]
