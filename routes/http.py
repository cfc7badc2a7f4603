"""Small helpers every route handler uses: JSON bodies checked before use, errors as real
HTTP statuses with a message (never an error inside a 200)."""
from __future__ import annotations

import json

from aiohttp import web


class BadRequest(Exception):
    """The request is malformed; the message says what is wrong and what is expected."""


def error_response(status: int, message: str, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def json_body(request: web.Request, *, allow_empty: bool = True) -> dict:
    """The request body as a JSON object; raises BadRequest for anything else."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest("the request needs a JSON object body")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(body).__name__}")
    return body


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
        raise BadRequest(f"'{key}' must be {names}, got {json.dumps(value)}")
    return value
