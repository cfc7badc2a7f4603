"""What each route accepts: one pydantic model per request body or query, the single source of
both the checks (``http.read_body`` / ``http.read_query``, which also word the errors) and the JSON
schemas in schemas/*.request.schema.json / *.query.schema.json (a unit test keeps them equal).

Regenerate the schema files after changing a model: ``python -m routes.request_models``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema, \
    model_validator

from .http import RequestModel, optional, refuse

try:  # the pack: routes/ sits beside distorch/
    from ..distorch.logic.dtypes import WEIGHT_DTYPES
    from ..distorch.host.queue_control import MAX_MAX_PASSES
    from ..distorch.logic.scheduler import RANKS, PriorityError, parse_priority
except ImportError:  # imported on its own (python -m routes.request_models; unit tests)
    from distorch.logic.dtypes import WEIGHT_DTYPES
    from distorch.host.queue_control import MAX_MAX_PASSES
    from distorch.logic.scheduler import RANKS, PriorityError, parse_priority

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
SCHEMA_ID = "https://github.com/comfyui-distorch/comfyui-distorch/schemas/"
MAX_FREE_WAIT_SECONDS = 300.0
MAX_GENERATE_WAIT_SECONDS = 3600
MAX_SIDE = 16384
SIZE = re.compile(r"\s*([0-9]{1,6})\s*[xX]\s*([0-9]{1,6})\s*")
MAX_VIRTUAL_VRAM_GB = 1 << 20  # no machine has a PiB to lend; larger is a typo, not a plan
# the folders GET /distorch/plan reads -> the tensor-name prefix of the part that is split
PLAN_FOLDERS = {"diffusion_models": "", "unet": "", "checkpoints": "model.diffusion_model.", "text_encoders": "",
                "clip": "", "diffusers": ""}


def _rank(value):
    """A queue rank, as ``parse_priority`` reads it (case and spaces ignored); null = normal."""
    if value is None:
        return None
    try:
        return RANKS[parse_priority(value)]
    except PriorityError as exc:
        raise refuse(str(exc)) from None


Priority = Annotated[str | None, BeforeValidator(_rank), WithJsonSchema({
    "enum": [*RANKS, None], "description": "queue rank (case-insensitive); absent or null: normal"})]


def _size(value: str) -> str:
    match = SIZE.fullmatch(value)
    if match is None:
        raise refuse(f"'size' must be \"WIDTHxHEIGHT\" like \"512x512\", got {json.dumps(value)[:80]}")
    if not all(16 <= int(side) <= MAX_SIDE and int(side) % 8 == 0 for side in match.groups()):
        raise refuse(f"'size' {value!r}: each side must be a multiple of 8 from 16 to {MAX_SIDE}; "
                     "e.g. \"512x512\"")
    return value


Size = Annotated[str, AfterValidator(_size), WithJsonSchema({"type": "string", "pattern": f"^{SIZE.pattern}$"})]


def _gigabytes(text: str) -> str:
    """``virtual_vram_gb`` as given (text), checked to be a finite number in range."""
    allowed = f"use 0 to {MAX_VIRTUAL_VRAM_GB} (GiB; 0 = no split)"
    try:
        value = float(text)
    except ValueError:
        raise refuse(f"virtual_vram_gb: {text!r} is not a number; {allowed}") from None
    if not 0 <= value <= MAX_VIRTUAL_VRAM_GB:  # NaN compares false: out of range too
        raise refuse(f"virtual_vram_gb: {text!r} is out of range; {allowed}")
    return text


# ---- POST bodies -------------------------------------------------------------------------------
class FreeRequest(RequestModel):
    """Unload models as ComfyUI's POST /free does, through the prompt worker; every key optional.
    'model' and 'force' cannot be combined."""

    model_config = ConfigDict(title="POST /distorch/free", json_schema_extra={"examples": [{"force": True}]})
    force: bool = Field(False, examples=[True], description="unload every model on every device, "
                                                            "keep_loaded or not, and reset the node cache")
    free_memory: bool = Field(True, description="also reset ComfyUI's node cache (always on with force)")
    model: str = optional(examples=["7f22d469c9d0"], description="the id of one model to unload "
                                                                 "(GET /internal/memory, models[].id)")
    timeout: float = Field(30, ge=0, le=MAX_FREE_WAIT_SECONDS, description="seconds to wait for the unload")
    wait: bool = Field(True, description="answer once the prompt worker has finished the unload")

    @model_validator(mode="after")
    def _one_target(self):
        if self.model is not None and self.force:
            raise refuse("'model' and 'force' cannot be combined: force unloads every model on every device; "
                         'send {"model": "<id>"} to unload one model, or {"force": true} for all of them')
        return self


class RetentionRequest(RequestModel):
    """The retention budget for what the pack keeps loaded beyond ComfyUI's node cache; give one
    key or both."""

    model_config = ConfigDict(title="POST /distorch/retention", json_schema_extra={
        "examples": [{"max_models": 4, "ram_percent": 30}], "minProperties": 1})
    max_models: int = optional(ge=0, le=1000, examples=[4], description="loads retained at most (0 = none)")
    ram_percent: float = optional(ge=0, le=100, examples=[30], description="% of the machine's RAM they "
                                                                           "may hold together")

    @model_validator(mode="after")
    def _something(self):
        if not self.model_fields_set:
            raise refuse("give 'max_models', 'ram_percent' or both, e.g. "
                         + json.dumps(self.model_config["json_schema_extra"]["examples"][0]))
        return self


class AffinityRequest(RequestModel):
    """The mode-affinity bound, from ComfyUI's settings dialog (DISTORCH_MODE_AFFINITY wins: 409)."""

    model_config = ConfigDict(title="POST /distorch/queue/affinity",
                              json_schema_extra={"examples": [{"max_passes": 2}]})
    max_passes: int = Field(ge=0, le=MAX_MAX_PASSES, examples=[2],
                            description="how many times a prompt may be passed (0 = affinity off)")


class ModesReloadRequest(RequestModel):
    """Reload the modes file now; the body is empty (or {})."""

    model_config = ConfigDict(title="POST /distorch/modes/reload", json_schema_extra={"examples": [{}]})


class SwitchRequest(RequestModel):
    """Preload a mode through ComfyUI's queue (200 when it is cached already)."""

    model_config = ConfigDict(title="POST /distorch/modes/switch", json_schema_extra={"examples": [{"mode": "NAME"}]})
    mode: str = Field(examples=["NAME"], description="the name of a mode from GET /distorch/modes")
    priority: Priority = None


class GenerateRequest(RequestModel):
    """A txt2img prompt built from a mode's defaults (anything given overrides them) and queued
    through ComfyUI's own POST /prompt handler."""

    model_config = ConfigDict(title="POST /distorch/generate", json_schema_extra={
        "examples": [{"mode": "NAME", "prompt": "a red cube", "seed": 42}]})
    mode: str = optional(examples=["NAME"], description="a mode from GET /distorch/modes; default: the "
                                                        "file's default_mode")
    prompt: str = Field("", examples=["a red cube"], description="the positive prompt")
    negative: str = Field("", examples=["blurry"], description="the negative prompt")
    size: Size = optional(examples=["512x512"], description=f"WIDTHxHEIGHT, each side a multiple of 8 from 16 to "
                                                            f"{MAX_SIDE}; default: the mode's")
    steps: int = optional(ge=1, le=10000, examples=[20], description="default: the mode's")
    guidance: float = optional(ge=0, le=100, examples=[7], description="cfg; default: the mode's")
    seed: int = optional(ge=0, le=2**64 - 1, examples=[42], description="default: random")
    wait: bool = Field(False, description="answer with the PNG once the prompt has run")
    timeout: float = Field(600, ge=0, le=MAX_GENERATE_WAIT_SECONDS, description="seconds to wait with 'wait'")
    client_id: str = optional(examples=["my-client"], description="as POST /prompt's")
    extra_data: dict = optional(examples=[{"note": "x"}], description="as POST /prompt's")
    front: bool = optional(examples=[True], description="as POST /prompt's")
    number: float = optional(ge=-1e15, le=1e15, examples=[1], description="as POST /prompt's")
    priority: Priority = None

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """(width, height) of ``size``, or None for the mode's."""
        return None if self.size is None else tuple(int(side) for side in SIZE.fullmatch(self.size).groups())


# ---- GET queries -------------------------------------------------------------------------------
class PlanQuery(RequestModel):
    """The placement a loader would make for a model file and an allocation, from its header only."""

    model_config = ConfigDict(title="GET /distorch/plan (query)", json_schema_extra={
        "examples": [{"file": "model.safetensors", "folder": "diffusion_models"}]})
    file: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        description="a model file name as the loader lists it (for diffusers: the folder)")
    folder: Literal[tuple(PLAN_FOLDERS)] = Field("diffusion_models", description="the models folder it is in")
    compute_device: str = Field("default", description="as the loader's input: a device (cuda:0, cpu, ...) or "
                                                       "'default', ComfyUI's choice")
    virtual_vram_gb: Annotated[str, AfterValidator(_gigabytes)] = Field(
        "0", description=f"as the loader's input: GiB lent to the compute device, 0 to {MAX_VIRTUAL_VRAM_GB} "
                         "(0 = no split)")
    donor_device: str = Field("cpu", description="as the loader's input: the device that lends the memory")
    allocation: str = Field("", examples=["cuda:0,2.5gb;cpu,*"], description="as the loader's input: an "
                            "allocation string, which overrides virtual_vram_gb; empty: virtual_vram_gb decides")
    weight_dtype: Literal[tuple(WEIGHT_DTYPES)] = Field("default", description="as the diffusion-model loader's "
                                                                               "input (not for .gguf files)")


# schema file name in schemas/ -> the model it is generated from
def _server_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refuse(f"servers: {value!r} is not a server URL; give each as http://HOST:PORT, "
                     "e.g. \"http://127.0.0.1:8189\"")
    return value.rstrip("/")


def _some_servers(value: list) -> list:
    if not 1 <= len(value) <= 64:
        raise refuse(f"servers: give 1 to 64 server URLs, not {len(value)}, "
                     "e.g. [\"http://127.0.0.1:8188\", \"http://127.0.0.1:8189\"]")
    return value


ServerUrl = Annotated[str, AfterValidator(_server_url), WithJsonSchema({"type": "string", "format": "uri"})]


class RouteRequest(RequestModel):
    """Which of these servers to send an API-format prompt to, and why: the one holding the most
    bytes of its model files (GET /distorch/residency on each), less a penalty per waiting prompt."""

    model_config = ConfigDict(title="POST /distorch/route", json_schema_extra={"examples": [
        {"prompt": {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors",
                                                               "weight_dtype": "default"}}},
         "servers": ["http://127.0.0.1:8188", "http://127.0.0.1:8189"]}]})
    prompt: dict = Field(examples=[{"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors",
                                                                             "weight_dtype": "default"}}}],
                         description="the prompt in API format (what POST /prompt takes as 'prompt')")
    servers: Annotated[list[ServerUrl], AfterValidator(_some_servers)] = Field(
        examples=[["http://127.0.0.1:8189"]], description="base URLs of the servers to choose among (1 to 64)")


SCHEMAS = {
    "distorch_free.request.schema.json": FreeRequest,
    "distorch_retention.request.schema.json": RetentionRequest,
    "distorch_queue_affinity.request.schema.json": AffinityRequest,
    "distorch_modes_reload.request.schema.json": ModesReloadRequest,
    "distorch_modes_switch.request.schema.json": SwitchRequest,
    "distorch_generate.request.schema.json": GenerateRequest,
    "distorch_plan.query.schema.json": PlanQuery,
    "distorch_route.request.schema.json": RouteRequest,
}


def json_schemas() -> dict[str, dict]:
    """File name -> the JSON schema its model gives."""
    return {name: {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID + name,
                   **model.model_json_schema()} for name, model in SCHEMAS.items()}


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for name, schema in json_schemas().items():
        path = folder / name
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m routes.request_models: rewrites schemas/*.request / *.query schemas
    for written in write_schemas():
        print(written)

