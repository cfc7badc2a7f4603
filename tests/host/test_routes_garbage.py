"""Garbage to every route the pack registers (and their /api mirrors), on a real ComfyUI: never a
5xx; a 4xx carries a JSON body whose message names the bad field or value and what is allowed;
valid requests still work afterwards and the server logged no traceback."""
from __future__ import annotations

import json
import time
import urllib.parse

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostenv
import workflows

pytestmark = pytest.mark.host

GET_ROUTES = ("/internal/memory", "/distorch/plan", "/distorch/modes", "/distorch/models", "/distorch/retention",
              "/distorch/queue", "/distorch/residency", "/distorch/route/recent")
POST_ROUTES = ("/distorch/free", "/distorch/modes/reload", "/distorch/modes/switch", "/distorch/generate",
               "/distorch/retention", "/distorch/queue/affinity", "/distorch/route")
PREFIXES = ("", "/api")
SCHEMA = json.loads((hostenv.REPO_ROOT / "schemas" / "internal_memory.schema.json").read_text())

# body -> a fragment every POST route's error must contain
ANY_ROUTE_GARBAGE = {
    "invalid JSON": (b"{not json", "not valid JSON"),
    "array": (b"[1, 2]", "not an array"),
    "string": (b'"free please"', "not a string"),
    "number": (b"42", "not a number"),
    "null": (b"null", "not null"),
    "NaN": (b'{"timeout": NaN}', "NaN is not allowed"),
    "Infinity": (b'{"timeout": -Infinity}', "-Infinity is not allowed"),
    "non-UTF-8": (b'{"mode": "\xff\xfe"}', "not valid JSON"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    "unknown key": (b'{"zz_unknown": true}', 'unknown key(s) "zz_unknown"; allowed:'),
    "huge body": (b'{"prompt": "' + b"a" * (2 << 20) + b'"}', "at most 1048576 bytes"),
}

# (route, body, status, fragments the message must contain)
FIELD_GARBAGE = [
    ("/distorch/free", {"force": "yes"}, 400, ["'force' must be bool", '"yes"']),
    ("/distorch/free", {"free_memory": None}, 400, ["'free_memory' must be bool", "null"]),
    ("/distorch/free", {"wait": 1}, 400, ["'wait' must be bool"]),
    ("/distorch/free", {"timeout": 10**400}, 400, ["'timeout' must be a number from 0 to 300"]),
    ("/distorch/free", {"timeout": 1e308}, 400, ["'timeout'", "from 0 to 300"]),
    ("/distorch/free", {"timeout": -1}, 400, ["'timeout'", "got -1"]),
    ("/distorch/free", {"timeout": "30"}, 400, ["'timeout' must be int or float", '"30"']),
    ("/distorch/free", {"model": 7}, 400, ["'model' must be str", "7"]),
    ("/distorch/free", {"model": "nope"}, 400, ["'model' 'nope' is not a loaded model", "GET /internal/memory"]),
    ("/distorch/free", {"model": "nope", "force": True}, 400, ["'model' and 'force' cannot be combined"]),
    ("/distorch/free", {"force": 1, "timeout": -1, "zz": 0}, 400,  # every mistake named, unknown keys first
     ['unknown key(s) "zz"', "also 'force' must be bool, got 1", "also 'timeout' must be a number from 0 to 300"]),
    ("/distorch/modes/reload", {"force": True}, 400, ['unknown key(s) "force"', "allowed: none"]),
    ("/distorch/modes/switch", b"", 400, ["needs a JSON object body", '"mode"']),
    ("/distorch/modes/switch", {}, 400, ["needs 'mode'", "GET /distorch/modes"]),
    ("/distorch/modes/switch", {"mode": None}, 400, ["'mode' must be str", "null"]),
    ("/distorch/modes/switch", {"mode": ["mode-a"]}, 400, ["'mode' must be str"]),
    ("/distorch/modes/switch", {"mode": "nope"}, 404, ["'nope' is not defined", "mode-a"]),
    ("/distorch/modes/switch", {"mode": "x" * 10_000}, 404, ["is not defined", "mode-a"]),
    ("/distorch/modes/switch", {"mode": "mode-a", "front": True}, 400, ['unknown key(s) "front"', "allowed: mode"]),
    ("/distorch/generate", b"", 400, ["needs a JSON object body", '"mode"']),
    ("/distorch/generate", {"mode": 1}, 400, ["'mode' must be str"]),
    ("/distorch/generate", {"mode": "nope"}, 404, ["'nope' is not defined", "mode-a"]),
    ("/distorch/generate", {"mode": "nope", "steps": "x"}, 400, ["'steps' must be int"]),
    ("/distorch/generate", {"steps": 10**400}, 400, ["'steps' must be an integer from 1 to 10000"]),
    ("/distorch/generate", {"steps": 2.5}, 400, ["'steps' must be int", "2.5"]),
    ("/distorch/generate", {"steps": 0}, 400, ["'steps'", "from 1 to 10000", "got 0"]),
    ("/distorch/generate", {"seed": -1}, 400, ["'seed'", "from 0 to 18446744073709551615"]),
    ("/distorch/generate", {"seed": 2**64}, 400, ["'seed'", "18446744073709551616"]),
    ("/distorch/generate", {"guidance": 1e308}, 400, ["'guidance' must be a number from 0 to 100"]),
    ("/distorch/generate", {"guidance": True}, 400, ["'guidance' must be int or float", "true"]),
    ("/distorch/generate", {"size": "big"}, 400, ["'size' must be \"WIDTHxHEIGHT\"", "big"]),
    ("/distorch/generate", {"size": "\u00b2x\u00b2"}, 400, ["'size' must be \"WIDTHxHEIGHT\""]),
    ("/distorch/generate", {"size": "99999999x8"}, 400, ["'size' must be \"WIDTHxHEIGHT\""]),
    ("/distorch/generate", {"size": "20x64"}, 400, ["multiple of 8 from 16 to 16384"]),
    ("/distorch/generate", {"size": 512}, 400, ["'size' must be str", "512"]),
    ("/distorch/generate", {"prompt": {"text": "a"}}, 400, ["'prompt' must be str"]),
    ("/distorch/generate", b'{"timeout": 1e999}', 400, ["'timeout'", "from 0 to 3600", "got Infinity"]),
    ("/distorch/generate", {"extra_data": [1]}, 400, ["'extra_data' must be dict"]),
    ("/distorch/generate", {"front": "yes"}, 400, ["'front' must be bool"]),
    ("/distorch/generate", {"client_id": 7}, 400, ["'client_id' must be str"]),
    ("/distorch/retention", b"", 400, ["needs a JSON object body", '"max_models"']),
    ("/distorch/retention", {}, 400, ["give 'max_models', 'ram_percent' or both"]),
    ("/distorch/retention", {"max_models": -1}, 400, ["'max_models' must be an integer from 0 to 1000", "got -1"]),
    ("/distorch/retention", {"max_models": 2.5}, 400, ["'max_models' must be int", "2.5"]),
    ("/distorch/retention", {"max_models": 10**400}, 400, ["'max_models' must be an integer from 0 to 1000"]),
    ("/distorch/retention", {"ram_percent": "half"}, 400, ["'ram_percent' must be int or float", '"half"']),
    ("/distorch/retention", {"ram_percent": 101}, 400, ["'ram_percent' must be a number from 0 to 100"]),
    ("/distorch/retention", {"max_models": 3, "extra": 1}, 400, ['unknown key(s) "extra"', "allowed: max_models"]),
    ("/distorch/generate", {"priority": "asap"}, 400, ["priority: 'asap' is not a priority", "urgent, high, normal, low"]),
    ("/distorch/modes/switch", {"mode": "mode-a", "priority": 1}, 400, ["priority: 1 is not a priority"]),
    ("/distorch/queue/affinity", b"", 400, ["needs a JSON object body", '"max_passes"']),
    ("/distorch/queue/affinity", {}, 400, ["the body needs 'max_passes'", "0 = affinity off", '{"max_passes": 2}']),
    ("/distorch/queue/affinity", {"max_passes": -1}, 400, ["'max_passes' must be an integer from 0 to 100"]),
    ("/distorch/queue/affinity", {"max_passes": 1.5}, 400, ["'max_passes' must be int", "1.5"]),
    ("/distorch/queue/affinity", {"max_passes": 2, "x": 1}, 400, ['unknown key(s) "x"', "allowed: max_passes"]),
]

UNET = workflows.UNET
# query -> (status, fragments)
PLAN_GARBAGE = {
    "": (400, ["'file' is required", "?file="]),
    "file=": (400, ["'file' is required"]),
    "file=%ff%fe": (400, ["is not in models/diffusion_models", "GET /models/diffusion_models"]),
    "file=%00": (400, ["is not in models/diffusion_models"]),
    "file=../../../etc/passwd": (400, ["is not in models/diffusion_models"]),
    f"file={UNET}&folder=etc": (400, ["folder: 'etc' is not one of", "diffusion_models"]),
    f"file={UNET}&virtual_vram_gb=nan": (400, ["virtual_vram_gb: 'nan' is out of range", "0 to"]),
    f"file={UNET}&virtual_vram_gb=inf": (400, ["virtual_vram_gb: 'inf'"]),
    f"file={UNET}&virtual_vram_gb=1e400": (400, ["virtual_vram_gb: '1e400'"]),
    f"file={UNET}&virtual_vram_gb=1e300": (400, ["virtual_vram_gb: '1e300' is out of range"]),
    f"file={UNET}&virtual_vram_gb=-1": (400, ["virtual_vram_gb: '-1'"]),
    f"file={UNET}&virtual_vram_gb=lots": (400, ["virtual_vram_gb: 'lots' is not a number"]),
    f"file={UNET}&weight_dtype=fp4": (400, ["weight_dtype: 'fp4' is not one of", "fp8_e4m3fn"]),
    f"file={UNET}&compute_device=gpu%20please": (400, ["'gpu please'"]),
    f"file={UNET}&compute_device=cuda:7": (400, ["cuda:7", "not present"]),
    f"file={UNET}&allocation=cpu,12qb": (400, ["unknown unit 'qb'"]),
    f"file={UNET}&zz=1": (400, ["unknown query parameter(s) 'zz'", "allowed: file"]),
    f"file={UNET}&file={UNET}": (400, ["file: given 2 times"]),
    "file=garbage.safetensors": (422, ["'garbage.safetensors' could not be read as safetensors"]),
}


@pytest.fixture(scope="module")
def host(comfy_hooks):
    comfy_hooks.add_model_file("diffusion_models", "garbage.safetensors", b"\xff" * 64)
    start = len(comfy_hooks.log_text())
    yield comfy_hooks
    (comfy_hooks.base_dir / "models" / "diffusion_models" / "garbage.safetensors").unlink(missing_ok=True)
    log = comfy_hooks.log_text()[start:]
    assert "Traceback" not in log and "Error handling request" not in log, log[-4000:]


def check_error(status, answer, want_status, fragments):
    assert status < 500, (status, answer)
    assert status == want_status, (status, answer)
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
    for fragment in fragments:
        assert fragment in answer["error"], (fragment, answer["error"])


@pytest.mark.parametrize("prefix", PREFIXES, ids=["plain", "api"])
@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("kind", list(ANY_ROUTE_GARBAGE))
def test_garbage_body(host, route, prefix, kind):
    body, fragment = ANY_ROUTE_GARBAGE[kind]
    status, answer = host.request("POST", prefix + route, body)
    check_error(status, answer, 413 if kind == "huge body" else 400, [fragment])


@pytest.mark.parametrize("route, body, status, fragments", FIELD_GARBAGE,
                         ids=[f"{r}-{(b.decode() if isinstance(b, bytes) else json.dumps(b))[:30]}"
                              for r, b, *_ in FIELD_GARBAGE])
def test_bad_fields(host, route, body, status, fragments):
    for prefix in PREFIXES:
        got, answer = host.request("POST", prefix + route, body)
        check_error(got, answer, status, fragments)


@pytest.mark.parametrize("query", list(PLAN_GARBAGE))
def test_bad_plan_queries(host, query):
    status, fragments = PLAN_GARBAGE[query]
    for prefix in PREFIXES:
        got, answer = host.request("GET", f"{prefix}/distorch/plan?{query}")
        check_error(got, answer, status, fragments)


@pytest.mark.parametrize("route", [r for r in GET_ROUTES if r != "/distorch/plan"])
def test_get_routes_ignore_garbage_queries_and_bodies(host, route):
    """Routes that take no parameters answer as usual whatever the query or body holds."""
    for suffix in ("?%ff=%fe&a[]=1&&=", "?" + "x" * 4000):
        for prefix in PREFIXES:
            status, answer = host.request("GET", prefix + route + suffix)
            assert status == 200 and isinstance(answer, dict), (status, answer)
    status, _ = host.request("GET", route, b"\xff\xfe{garbage")
    assert status == 200


JSON = st.recursive(st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
                    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
KEYS = {
    "/distorch/free": ["force", "free_memory", "wait", "timeout", "model"],
    "/distorch/modes/reload": ["force"],
    "/distorch/modes/switch": ["mode", "priority"],
    "/distorch/generate": ["mode", "prompt", "negative", "size", "steps", "guidance", "seed", "wait", "timeout",
                           "client_id", "extra_data", "front", "number", "priority"],
    "/distorch/retention": ["max_models", "ram_percent"],
    "/distorch/queue/affinity": ["max_passes"],
    "/distorch/route": ["prompt", "servers"],
}
DEFAULT_RETENTION = {"max_models": 6, "ram_percent": 50}


@st.composite
def bodies(draw, route):
    """Anything JSON, or an object of the route's own keys with values of any type."""
    if draw(st.booleans()):
        body = draw(JSON)
    else:
        body = draw(st.dictionaries(st.sampled_from(KEYS[route]), JSON, max_size=4))
    if isinstance(body, dict):
        # Never a request that acts: no unload waited for, no prompt queued (an unknown mode
        # answers 404 only after every other key has been checked).
        if route == "/distorch/free":
            body["wait"] = False
        if route == "/distorch/generate":
            body["mode"] = "zz-no-such-mode"
        if route == "/distorch/modes/switch" and body.get("mode") in ("mode-a", "mode-b"):
            body["mode"] = "zz-no-such-mode"
        if route == "/distorch/retention" and body.get("max_models") == 0:
            body["max_models"] = 1000  # 0 would release what the other tests on this server hold
    return body


@pytest.mark.parametrize("route", POST_ROUTES)
def test_any_json_never_gives_a_5xx(host, route):
    @settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=bodies(route))
    def check(body):
        status, answer = host.request("POST", route, json.dumps(body).encode())
        assert status < 500, (body, status, answer)
        if status >= 400:
            assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and answer["error"], answer

    check()


def test_valid_requests_still_work_after_the_garbage(host):
    for prefix in PREFIXES:
        jsonschema.validate(host.get(prefix + "/internal/memory"), SCHEMA)
        plan = host.get(f"{prefix}/distorch/plan?" + urllib.parse.urlencode(
            {"file": UNET, "virtual_vram_gb": "0.02", "donor_device": "cpu"}))
        assert plan["model_bytes"] > 0 and plan["devices"], plan
        assert [m["name"] for m in host.get(prefix + "/distorch/modes")["modes"]] == ["mode-a", "mode-b"]
        assert "cache" in host.get(prefix + "/distorch/models")
    status, answer = host.request("POST", "/distorch/modes/reload", b"")
    assert status == 200 and answer["reloaded_in_s"] >= 0, answer
    status, answer = host.request("POST", "/distorch/modes/switch", {"mode": "mode-a"})
    assert status in (200, 202), answer
    if status == 202:
        assert host.wait(answer["prompt_id"])["status"]["status_str"] == "success"
    status, answer = host.request("POST", "/api/distorch/generate", {"mode": "mode-a", "seed": 3, "steps": 1})
    assert status == 200 and answer["seed"] == 3, answer
    assert host.wait(answer["prompt_id"])["status"]["status_str"] == "success"
    status, answer = host.request("POST", "/distorch/retention", DEFAULT_RETENTION)
    assert status == 200 and answer["budget"]["max_models"] == 6, answer
    assert host.get("/api/distorch/retention")["budget"]["source"] == "settings"
    status, answer = host.request("POST", "/distorch/free", {"force": True})
    assert status == 200 and answer["status"] == "done", answer
    deadline = time.monotonic() + 10
    while host.get("/internal/memory")["models"]:
        assert time.monotonic() < deadline, host.get("/internal/memory")["models"]
        time.sleep(0.1)
