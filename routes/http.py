"""Small helpers every route handler uses: JSON bodies checked before use, errors as real
HTTP statuses with a JSON message (never an error inside a 200, never a 5xx for a bad request)."""
from __future__ import annotations

import functools
import json
import logging
import math

from aiohttp import web

log = logging.getLogger("distorch.routes")

# The pack's bodies are a few hundred bytes; anything far larger is a mistake, refused before it
# is held in memory (ComfyUI's own limit, --max-upload-size, is 100 MiB).
MAX_BODY_BYTES = 1 << 20
# What is read and thrown away of an oversized body so the client can read the 413 (a client still
# writing when the server closes the socket sees a reset, not the answer).
MAX_DRAIN_BYTES = 256 << 20
NUMBER = (int, float)


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


def _shown(value, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _num(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def reject_unknown(body: dict, allowed) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        shown = ", ".join(_shown(k, 40) for k in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise BadRequest(f"unknown key(s) {shown}; allowed: {', '.join(sorted(allowed)) or 'none'}")


def expect_type(body: dict, key: str, kind: type | tuple[type, ...], default=None):
    """``body[key]`` if it has the right type (bools are not ints here), else BadRequest."""
    if key not in body:
        return default
    value = body[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise BadRequest(f"'{key}' must be {names}, got {_shown(value)}")
    return value


def expect_number(body: dict, key: str, low, high, default=None, *, integer: bool = False):
    """``body[key]`` as a number from ``low`` to ``high`` (ints when ``integer``), else BadRequest.
    Compared before any conversion, so a 400-digit integer is refused, not overflowed."""
    if key not in body:
        return default
    value = expect_type(body, key, int if integer else NUMBER)
    if not low <= value <= high:
        raise BadRequest(f"'{key}' must be {'an integer' if integer else 'a number'} from {_num(low)} to "
                         f"{_num(high)}, got {_shown(value)}")
    return value


def query_number(query, key: str, default: str, low: float, high: float, unit: str = "") -> str:
    """A numeric query parameter checked to be finite and in range; returned as the text given."""
    text = query.get(key, default)
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{key}: {text!r} is not a number; use {low:g} to {high:g}{unit}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"{key}: {text!r} is out of range; use {low:g} to {high:g}{unit}")
    return text
