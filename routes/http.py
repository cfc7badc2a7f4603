"""Small helpers every route handler uses: requests checked against their pydantic model
(routes/request_models.py) before use, errors as real HTTP statuses with a JSON message (never an
error inside a 200, never a 5xx for a bad request).

``read_body`` / ``read_query`` turn pydantic's ValidationError into the one message the user sees,
here and nowhere else: one sentence per mistake, naming the key, the value sent, what is allowed
and an example to send instead."""
from __future__ import annotations

import functools
import json
import logging
from typing import Any, TypeVar, get_args
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

log = logging.getLogger("distorch.routes")

# The pack's bodies are a few hundred bytes; anything far larger is a mistake, refused before it
# is held in memory (ComfyUI's own limit, --max-upload-size, is 100 MiB).
MAX_BODY_BYTES = 1 << 20
# What is read and thrown away of an oversized body so the client can read the 413 (a client still
# writing when the server closes the socket sees a reset, not the answer).
MAX_DRAIN_BYTES = 256 << 20
RULE = "request_rule"  # the error type of ``refuse``: its message is complete as written
# pydantic's type errors -> the type named in the message (bools are not numbers here)
TYPE_NAMES = {"bool_type": "bool", "string_type": "str", "int_type": "int", "float_type": "int or float",
              "dict_type": "dict"}
Model = TypeVar("Model", bound=BaseModel)


class BadRequest(Exception):
    """The request is malformed; the message says what is wrong and what is expected."""

    def __init__(self, message: str, status: int = 400, **extra):
        super().__init__(message)
        self.status = status
        self.extra = extra


def error_response(status: int, message: str, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def guarded(route: str):
    """Turn BadRequest into its status with its JSON message (which names the field: the UI shows
    it as is), and an unexpected exception into a JSON 500 naming ``route``, logged with its
    traceback, instead of aiohttp's plain-text page."""
    def decorate(handler):
        @functools.wraps(handler)
        async def wrapper(request):
            try:
                return await handler(request)
            except BadRequest as exc:
                return error_response(exc.status, str(exc), **exc.extra)
            except web.HTTPException:
                raise
            except Exception as exc:
                log.exception("%s failed", route)
                return error_response(500, f"{route} failed inside comfyui-distorch: {type(exc).__name__}: {exc}. "
                                           "The server log has the traceback; please report it")
        return wrapper
    return decorate


def _no_constants(name: str):
    raise ValueError(f"{name} is not allowed in JSON; send a finite number")


async def _read_limited(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        await _drain(request)
        raise BadRequest(f"the body is {declared} bytes; this route takes a JSON object of at most "
                         f"{limit} bytes", status=413)
    body = bytearray()
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return bytes(body)
        body.extend(chunk)
        if len(body) > limit:
            await _drain(request)
            raise BadRequest(f"the body is over {limit} bytes; this route takes a JSON object of at most "
                             f"{limit} bytes", status=413)


async def _drain(request: web.Request) -> None:
    drained = 0
    while drained < MAX_DRAIN_BYTES:
        chunk = await request.content.readany()
        if not chunk:
            return
        drained += len(chunk)


async def json_body(request: web.Request, *, allow_empty: bool = True, example: str = "{}",
                    limit: int = MAX_BODY_BYTES) -> dict:
    """The request body as a JSON object; raises BadRequest for anything else. ``example`` is a
    valid body, quoted in the messages."""
    raw = await _read_limited(request, limit)
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest(f"the request needs a JSON object body, e.g. {example}")
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest(f"the body nests too deeply to read; send a flat JSON object, e.g. {example}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON ({exc}); send a JSON object, e.g. {example}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {_json_kind(body)}; e.g. {example}")
    return body


def _json_kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


class RequestModel(BaseModel):
    """A route's request body or query. Every key is declared (unknown ones are refused), nothing
    is coerced (1 is not true, "3" is not 3, 2.5 is not a whole number), NaN and infinities are
    refused. The fields' ``examples`` and descriptions and the model's ``examples`` word the errors."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


def optional(**kwargs) -> Any:
    """A field that may be left out (None in the model) but not sent as null: its type is checked
    whenever it is given, and its JSON schema has no ``"default": null``."""
    return Field(None, json_schema_extra=_no_default, **kwargs)


def refuse(message: str) -> PydanticCustomError:
    """The error a model's own check raises (a format, a rule across fields); the client gets
    ``message`` as written, so it names the key, the value and the next step itself."""
    return PydanticCustomError(RULE, "{message}", {"message": message})


def model_example(model: type[BaseModel]):
    """The model's first example (its ``json_schema_extra["examples"]``), or None."""
    examples = (model.model_config.get("json_schema_extra") or {}).get("examples") or [None]
    return examples[0]


async def read_body(request: web.Request, model: type[Model], *, allow_empty: bool = False,
                    limit: int = MAX_BODY_BYTES) -> Model:
    """The request's JSON body as ``model``, or BadRequest naming every mistake. An empty body is
    ``{}`` when ``allow_empty``."""
    body = await json_body(request, allow_empty=allow_empty, example=json.dumps(model_example(model)), limit=limit)
    return validate(model, body)


def read_query(query, model: type[Model]) -> Model:
    """A query string (aiohttp's MultiDict) as ``model``, or BadRequest naming every mistake."""
    for key in model.model_fields:
        given = len(query.getall(key, ()))
        if given > 1:
            raise BadRequest(f"{key}: given {given} times; give it once")
    return validate(model, {key: query[key] for key in query}, query=True)


def validate(model: type[Model], data: dict, *, query: bool = False) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(problem_text(model, exc, query=query)) from None


def problem_text(model: type[BaseModel], error: ValidationError, *, query: bool = False) -> str:
    """One sentence per mistake, unknown keys first (all in one sentence), then the fields in the
    model's order, then the rules across fields."""
    entries = error.errors(include_url=False)
    unknown = sorted(str(e["loc"][0]) for e in entries if e["type"] == "extra_forbidden")
    texts = [_unknown_text(model, unknown, query)] if unknown else []
    texts += [_entry_text(model, e, query) for e in entries if e["type"] != "extra_forbidden"]
    return "; also ".join(texts)


def _shown(value, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _quoted(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _num(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _unknown_text(model: type[BaseModel], unknown: list[str], query: bool) -> str:
    allowed = ", ".join(model.model_fields) or "none"
    more = " ..." if len(unknown) > 5 else ""
    if query:
        return f"unknown query parameter(s) {', '.join(_quoted(k, 40) for k in unknown[:5])}{more}; allowed: {allowed}"
    return f"unknown key(s) {', '.join(_shown(k, 40) for k in unknown[:5])}{more}; allowed: {allowed}"


def _bounds(field) -> tuple:
    low = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in field.metadata if getattr(m, "le", None) is not None), None)
    return low, high


def _entry_text(model: type[BaseModel], entry: dict, query: bool) -> str:
    kind, value, loc = entry["type"], entry.get("input"), entry["loc"]
    if kind == RULE:
        return entry["ctx"]["message"]
    name = str(loc[0]) if loc else ""
    field = model.model_fields.get(name)
    if field is None:  # not a field's error (pydantic's own, at the model): its words
        return f"{name or 'the request'}: {entry['msg']}"
    if kind == "missing" or kind == "string_too_short" and (entry.get("ctx") or {}).get("min_length") == 1:
        what = f": {field.description}" if field.description else ""
        sample = model_example(model)
        if query:
            return f"'{name}' is required{what}" + (f", e.g. ?{urlencode(sample)}" if sample else "")
        return f"the body needs '{name}'{what}" + (f", e.g. {json.dumps(sample)}" if sample else "")
    sample = field.examples[0] if field.examples else field.default
    instead = f"; e.g. {json.dumps({name: sample})}" if sample not in (None, "") and not query else ""
    shown = _quoted(value) if query else _shown(value)
    low, high = _bounds(field)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if low is not None and high is not None and (
            kind in ("greater_than_equal", "less_than_equal", "finite_number")
            or kind == "float_type" and number):  # an integer too large for a float
        whole = "an integer" if field.annotation is int else "a number"
        return f"'{name}' must be {whole} from {_num(low)} to {_num(high)}, got {shown}{instead}"
    if kind in TYPE_NAMES:
        return f"'{name}' must be {TYPE_NAMES[kind]}, got {shown}{instead}"
    if kind == "literal_error":
        choices = ", ".join(str(choice) for choice in get_args(field.annotation))
        if query:
            return f"{name}: {shown} is not one of {choices}"
        return f"'{name}' must be one of {choices}, got {shown}"
    return f"'{name}': {entry['msg']}, got {shown}{instead}"
