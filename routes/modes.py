"""Modes over HTTP: list, reload, preload (switch), loaded models and cache statistics, generate.

Thin handlers: parse -> call the modes service -> JSON. Errors are real statuses with a message.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time

from aiohttp import web

from .host_queue import queue_prompt
from .http import BadRequest, error_response, guarded, read_body
from .request_models import GenerateRequest, ModesReloadRequest, SwitchRequest

log = logging.getLogger("distorch.routes")


def _loaded_models() -> list[dict]:
    """What ComfyUI's model management holds right now, with the pack's placement record."""
    import comfy.model_management as mm

    from ..distorch.logic.placement_record import placement_of, whole_size

    result = []
    for loaded in list(getattr(mm, "current_loaded_models", [])):
        patcher = loaded.model
        if patcher is None:
            continue
        placement = placement_of(patcher)
        try:
            size = whole_size(patcher)
            on_device = int(loaded.model_loaded_memory()) if hasattr(loaded, "model_loaded_memory") else None
        except Exception:
            size, on_device = None, None
        result.append({"class": type(getattr(patcher, "model", None)).__name__, "device": str(loaded.device),
                       "bytes": size, "loaded_bytes": on_device,
                       "source": placement.source if placement else None,
                       "loader": placement.loader if placement else None,
                       "component": placement.component if placement else None})
    return result


def preload_prompt(mode: str) -> dict:
    return {"1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 7]}}}


def generate_prompt(mode: str, spec, request: GenerateRequest) -> tuple[dict, int]:
    seed = request.seed if request.seed is not None else random.randrange(0, 2**63)
    width, height = request.dimensions or (spec.width, spec.height)
    sampler_steps = ["1", 5] if request.steps is None else request.steps
    cfg = ["1", 6] if request.guidance is None else float(request.guidance)
    prompt = {
        "1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": request.prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": request.negative, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": seed, "steps": sampler_steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
        if spec.vae_tiling is None else
        {"class_type": "VAEDecodeTiled", "inputs": {  # the mode asks for a tiled decode
            "samples": ["5", 0], "vae": ["1", 2], "tile_size": spec.vae_tiling[0], "overlap": spec.vae_tiling[1],
            "temporal_size": 64, "temporal_overlap": 8}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": f"distorch-{mode}"}},
    }
    return prompt, seed


def _prompts_before(runtime, prompt_id: str) -> int | None:
    """How many prompts run before ``prompt_id`` (priorities and mode affinity counted), or None
    where the queue is not the pack's to read."""
    control = runtime.queue
    return None if control is None else control.prompts_before(prompt_id)


async def _wait_for(server, prompt_id: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = server.prompt_queue.get_history(prompt_id=prompt_id)
        entry = history.get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            return entry
        await asyncio.sleep(0.1)
    return None


def add_routes(routes, runtime) -> None:
    @routes.get("/distorch/modes")
    @guarded("GET /distorch/modes")
    async def list_modes(request):
        return web.json_response(runtime.modes.listing())

    @routes.post("/distorch/modes/reload")
    @guarded("POST /distorch/modes/reload")
    async def reload_modes(request):
        await read_body(request, ModesReloadRequest, allow_empty=True)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, runtime.modes.reload, "route")
        if not result.ok:
            return error_response(400, "the modes file has errors; the modes in force are unchanged",
                                  errors=[p.to_json() for p in result.errors])
        return web.json_response({**runtime.modes.listing(), "reloaded_in_s": round(result.seconds, 4)})

    @routes.post("/distorch/modes/switch")
    @guarded("POST /distorch/modes/switch")
    async def switch_mode(request):
        asked = await read_body(request, SwitchRequest)
        mode = asked.mode
        service = runtime.modes
        if service.spec(mode) is None:
            raise BadRequest(service.unknown_mode_message(mode), status=404)
        if service.is_cached(mode):
            return web.json_response({"mode": mode, "cached": True, "prompt_id": None})
        queued = await queue_prompt(request, preload_prompt(mode), priority=asked.priority)
        ahead = _prompts_before(runtime, queued["prompt_id"])
        answer = {"mode": mode, "cached": False, "prompt_id": queued["prompt_id"], "runs_after": ahead}
        if ahead is not None:
            answer["message"] = (f"Mode switch queued. Will switch after {ahead} pending prompt(s)" if ahead
                                 else "Mode switch queued. It runs next")
        return web.json_response(answer, status=202)

    @routes.get("/distorch/models")
    @guarded("GET /distorch/models")
    async def models(request):
        service = runtime.modes
        return web.json_response({"cache": service.cache.stats(), "loaded": _loaded_models()})

    @routes.post("/distorch/generate")
    @guarded("POST /distorch/generate")
    async def generate(request):
        service = runtime.modes
        asked = await read_body(request, GenerateRequest)
        mode = asked.mode
        if mode is None:
            config = service.state.snapshot()[0]
            mode = config.default_mode if config else None
        spec = service.spec(mode) if mode else None
        if spec is None:
            raise BadRequest(service.unknown_mode_message(str(mode)), status=404)
        prompt, seed = generate_prompt(mode, spec, asked)
        queued = await queue_prompt(request, prompt, client_id=asked.client_id, extra_data=asked.extra_data,
                                    front=asked.front, number=asked.number, priority=asked.priority)
        prompt_id = queued["prompt_id"]
        if not asked.wait:
            return web.json_response({"prompt_id": prompt_id, "mode": mode, "seed": seed})
        entry = await _wait_for(runtime.server, prompt_id, timeout=asked.timeout)
        headers = {"X-Mode": mode, "X-Seed": str(seed), "X-Prompt-Id": prompt_id}
        if entry is None:
            return error_response(504, f"prompt {prompt_id} did not finish in time; poll /history/{prompt_id}",
                                  prompt_id=prompt_id)
        if entry.get("status", {}).get("status_str") != "success":
            messages = [m for m in entry.get("status", {}).get("messages", []) if m[0] == "execution_error"]
            detail = messages[0][1].get("exception_message") if messages else "unknown error"
            return error_response(500, f"generation failed: {detail}", prompt_id=prompt_id)
        import folder_paths

        images = entry.get("outputs", {}).get("7", {}).get("images", [])
        if not images:
            return error_response(500, "generation produced no image", prompt_id=prompt_id)
        image = images[0]
        path = os.path.join(folder_paths.get_output_directory(), image.get("subfolder", ""), image["filename"])
        return web.FileResponse(path, headers={**headers, "Content-Type": "image/png"})
