"""GET /distorch/plan: the placement a loader would make for a model file and an allocation,
from the file's header only (no weights are loaded).

Query: file (required, as the loader lists it), folder (diffusion_models | checkpoints |
text_encoders | diffusers; default diffusion_models; for diffusers, file is the folder and its
unet/ weights are planned), compute_device (default 'default'), virtual_vram_gb,
donor_device, allocation, weight_dtype (as the loader's inputs). 400 with a message on bad input.
Files: safetensors, and .gguf (ComfyUI-GGUF's format, found in the same folders its loaders look
in: diffusion_models / unet, text_encoders / clip), planned at the sizes the file stores.
A safetensors diffusion model is planned at the width ComfyUI will store it in on the compute
device (its ``unet_dtype`` rule: an fp16 file becomes fp32 on a CPU), as the load plans it, but
in the header's name order (the load plans in layer order); ``note`` says both.
"""
from __future__ import annotations

import logging

from aiohttp import web

from .http import BadRequest, guarded, read_query
from .request_models import PLAN_FOLDERS as FOLDERS  # folder -> tensor-name prefix of the part that is split
from .request_models import PlanQuery

log = logging.getLogger("distorch.routes.placement")

GGUF_FOLDERS = ("diffusion_models", "unet", "text_encoders", "clip")  # where ComfyUI-GGUF's loaders look
SAFETENSORS_NOTE = ("sizes from the file's header at the file's dtype, or weight_dtype's; a diffusion model at the "
                    "dtype ComfyUI stores it in on the compute device (fp32 on a CPU)")
UNET_FOLDERS = ("diffusion_models", "unet", "checkpoints", "diffusers")  # loaded through ComfyUI's unet_dtype
# a safetensors header lists tensors by name, not in the model's order, which the load plans in
ORDER_NOTE = "Read in name order; the load plans in layer order and logs its plan."
GGUF_NOTE = ("sizes as the .gguf file stores them (quantized); ComfyUI-GGUF keeps them so and dequantizes one "
             "layer at a time on the compute device")


def diffusers_weights(name: str) -> str | None:
    """The diffusion model's weight file of the diffusers folder ``name`` (what the loader splits)."""
    from ..distorch.host.diffusers_folder import FolderError, find_folder, read_layout

    try:
        folder = find_folder(name, "file")
    except FolderError:
        return None  # answered as any missing file
    try:
        return str(read_layout(folder, "file").weights["unet"])
    except FolderError as exc:
        raise BadRequest(str(exc)) from None


def as_stored(tensors, prefix: str, compute: str, file_modules):
    """The modules at the width ComfyUI stores the diffusion model in on ``compute`` (its choice
    when weight_dtype is 'default'), and a sentence saying so when that is not the file's width."""
    from ..distorch.host.split_loaded import stored_dtype
    from ..distorch.logic.dtypes import BYTES, FLOATS, TORCH_BYTES, TORCH_NAMES
    from ..distorch.logic.module_sizes import modules_from_tensors, weights_dtype

    file_dtype, params = weights_dtype(tensors, prefix)
    if file_dtype not in FLOATS:
        return file_modules, ""
    stored = stored_dtype(compute, file_dtype, params)
    width = TORCH_BYTES.get(stored)
    if width is None or width == BYTES[file_dtype]:
        return file_modules, ""
    modules = modules_from_tensors(tensors, prefix, width)
    on_disk, loaded = (sum(m.bytes for m in found) / 2**20 for found in (file_modules, modules))
    return modules, (f"Sizes as ComfyUI loads this {TORCH_NAMES[file_dtype]} file on {compute}: {stored} "
                     f"({loaded:.1f} MiB; {on_disk:.1f} MiB on disk).")


def plan_response(query: PlanQuery) -> dict:
    import folder_paths

    from .. import device_utils
    from ..distorch.logic.gguf_tables import GGUFError, GGUFUnavailable, read_table
    from ..distorch.logic.module_sizes import header_tensors, modules_from_tensors
    from ..distorch.logic.planner import Plan
    from ..distorch.logic.split_request import requested_bytes, split_request, slot_device
    from ..distorch.host.split_loaded import WEIGHT_DTYPE_BYTES, compute_room, explain_plan, plan_for

    name, folder, weight_dtype = query.file, query.folder, query.weight_dtype
    path = diffusers_weights(name) if folder == "diffusers" else folder_paths.get_full_path(folder, name)
    if path is None:
        raise BadRequest(f"file: '{name}' is not in models/{folder}; GET /models/{folder} lists the files there")
    is_gguf = path.lower().endswith(".gguf")
    if not is_gguf and not path.endswith((".safetensors", ".sft")):
        raise BadRequest(f"file: '{name}' is not a safetensors or .gguf file; plans are read from their headers")
    if is_gguf and folder not in GGUF_FOLDERS:
        raise BadRequest(f"file: '{name}' is a .gguf file; ComfyUI-GGUF loads those from {', '.join(GGUF_FOLDERS)}, "
                         f"not {folder}: ask with one of these folders")
    if is_gguf and weight_dtype != "default":
        raise BadRequest(f"weight_dtype: {weight_dtype!r} does not apply to a .gguf file (it keeps its own "
                         "quantization); leave it 'default'")
    if is_gguf:
        try:
            table = read_table(path)
        except GGUFUnavailable as exc:
            raise BadRequest(str(exc), status=501) from None
        except (GGUFError, OSError) as exc:
            raise BadRequest(f"file: '{name}' could not be read as GGUF ({exc}); check or replace the file",
                             status=422) from None
        file_modules = table.modules()
    else:
        try:
            tensors = header_tensors(path)
        except Exception as exc:  # safetensors raises its own error type for a damaged header
            raise BadRequest(f"file: '{name}' could not be read as safetensors ({exc}); check or replace the file",
                             status=422) from None
        file_modules = modules_from_tensors(tensors, FOLDERS[folder], WEIGHT_DTYPE_BYTES.get(weight_dtype))
    widths = ""
    try:
        device = device_utils.resolve_device(query.compute_device, "compute_device")
        if device is None:
            import comfy.model_management as mm

            device = mm.text_encoder_device() if folder in ("text_encoders", "clip") else mm.get_torch_device()
        compute = str(device)
        if not is_gguf and weight_dtype == "default" and folder in UNET_FOLDERS:
            file_modules, widths = as_stored(tensors, FOLDERS[folder], compute, file_modules)
        request = split_request(compute, device_utils.available_devices(), query.virtual_vram_gb,
                                query.donor_device, query.allocation)
        modules = file_modules
        if not modules:
            raise ValueError(f"file: '{name}' holds no tensors under '{FOLDERS[folder]}'")
        if request is None:
            plan = Plan(compute, {m.name: compute for m in modules}, {compute: sum(m.bytes for m in modules)})
            described, budgets = "", {compute: plan.device_bytes[compute]}
            requested, why = dict(budgets), ""
        else:
            room = compute_room(compute)
            plan = plan_for(modules, request, room)
            described = request.describe()
            budgets = plan.budgets
            requested = requested_bytes(request, sum(m.bytes for m in modules))
            why = explain_plan(modules, request, room, plan, budgets)
    except ValueError as exc:  # device names, allocation grammar, plan errors, unreadable header
        raise BadRequest(str(exc)) from None
    total = sum(m.bytes for m in modules) or 1
    sizes = {m.name: m for m in modules}
    return {
        "file": name, "folder": folder, "compute_device": compute, "allocation": described,
        "format": "gguf" if is_gguf else "safetensors", "model_bytes": total,
        "bytes_note": GGUF_NOTE if is_gguf else SAFETENSORS_NOTE,
        # shown under the node: the width the sizes are at when it is not the file's (fp16 stored
        # as fp32 on a CPU), and that the load's own plan, in layer order, may differ
        "note": "" if is_gguf else " ".join(filter(None, (widths, ORDER_NOTE))),
        "budgets": budgets,
        # what the user asked each slot to hold, and why the compute device's share differs
        "requested": requested, "why": why,
        "devices": [{"slot": slot, "device": slot_device(slot), "bytes": held,
                     "modules": len(plan.modules_on(slot)), "share": held / total}
                    for slot, held in plan.device_bytes.items()],
        "reserve_bytes": plan.reserve_bytes,
        "modules": [{"name": module, "bytes": sizes[module].bytes, "kind": sizes[module].kind,
                     "device": slot_device(slot), "slot": slot} for module, slot in plan.assignment.items()],
        "table": plan.table(),
    }


def add_routes(routes: web.RouteTableDef, runtime) -> None:
    @routes.get("/distorch/plan")
    @guarded("GET /distorch/plan")
    async def distorch_plan(request: web.Request) -> web.Response:
        return web.json_response(plan_response(read_query(request.query, PlanQuery)))
