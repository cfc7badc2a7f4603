"""The routes' request models (routes/request_models.py): the committed schemas/*.request.schema.json
and *.query.schema.json are what the models give today, and pydantic's errors become the one message
per mistake the routes answer (routes/http.py). The host tests send the same bodies to a real server."""
import json
from pathlib import Path

import jsonschema
import pytest

from routes.http import BadRequest, validate
from routes.request_models import (SCHEMA_DIR, SCHEMAS, AffinityRequest, FreeRequest, GenerateRequest, PlanQuery,
                                   RetentionRequest, SwitchRequest, json_schemas)

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate them: python -m routes.request_models"


def test_the_committed_schemas_are_the_models_schemas():
    assert SCHEMA_DIR == REPO / "schemas"
    committed = {path.name for path in SCHEMA_DIR.glob("*.request.schema.json")} | {
        path.name for path in SCHEMA_DIR.glob("*.query.schema.json")}
    assert committed == set(SCHEMAS), f"schemas/ and routes/request_models.py name different files; {REGENERATE}"
    for name, schema in json_schemas().items():
        assert json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8")) == schema, (
            f"schemas/{name} differs from its model in routes/request_models.py; {REGENERATE}")


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_each_schema_takes_its_examples_and_refuses_a_typo(name):
    schema = json_schemas()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    for example in schema["examples"]:
        jsonschema.validate(example, schema)
        SCHEMAS[name].model_validate(example)  # the model takes what its schema shows
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors({**schema["examples"][0], "zz_typo": 1}))
    assert errors and "zz_typo" in errors[0].message


def message(model, data, query=False) -> str:
    with pytest.raises(BadRequest) as refused:
        validate(model, data, query=query)
    assert refused.value.status == 400
    return str(refused.value)


@pytest.mark.parametrize("model, body, fragments", [
    (FreeRequest, {"force": 1}, ["'force' must be bool, got 1", 'e.g. {"force": true}']),
    (FreeRequest, {"free_memory": None}, ["'free_memory' must be bool, got null"]),
    (FreeRequest, {"timeout": -1}, ["'timeout' must be a number from 0 to 300, got -1", 'e.g. {"timeout": 30}']),
    (FreeRequest, {"timeout": 10**400}, ["'timeout' must be a number from 0 to 300, got 1000"]),
    (FreeRequest, {"timeout": float("inf")}, ["'timeout' must be a number from 0 to 300, got Infinity"]),
    (FreeRequest, {"timeout": "30"}, ["'timeout' must be int or float, got \"30\""]),
    (FreeRequest, {"everything": True},
     ['unknown key(s) "everything"; allowed: force, free_memory, model, timeout, wait']),
    (FreeRequest, {"model": "x", "force": True}, ["'model' and 'force' cannot be combined"]),
    (SwitchRequest, {}, ["the body needs 'mode': the name of a mode from GET /distorch/modes", '{"mode": "NAME"}']),
    (SwitchRequest, {"mode": "a", "priority": 1}, ["priority: 1 is not a priority", "urgent, high, normal, low"]),
    (GenerateRequest, {"steps": 2.5}, ["'steps' must be int, got 2.5"]),
    (GenerateRequest, {"seed": 2**64},
     ["'seed' must be an integer from 0 to 18446744073709551615, got 18446744073709551616"]),
    (GenerateRequest, {"guidance": True}, ["'guidance' must be int or float, got true"]),
    (GenerateRequest, {"size": "20x64"}, ["multiple of 8 from 16 to 16384"]),
    (GenerateRequest, {"size": 512}, ["'size' must be str, got 512", '"512x512"']),
    (GenerateRequest, {"extra_data": [1]}, ["'extra_data' must be dict, got [1]"]),
    (RetentionRequest, {}, ["give 'max_models', 'ram_percent' or both"]),
    (RetentionRequest, {"max_models": 2.5}, ["'max_models' must be int, got 2.5"]),
    (AffinityRequest, {}, ["the body needs 'max_passes'", "0 = affinity off", '{"max_passes": 2}']),
    (AffinityRequest, {"max_passes": 101}, ["'max_passes' must be an integer from 0 to 100, got 101"]),
])
def test_a_mistake_in_a_body_is_named_with_its_value_and_what_is_allowed(model, body, fragments):
    text = message(model, body)
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_every_mistake_is_named_once_unknown_keys_first():
    text = message(FreeRequest, {"wait": 1, "zz": 2, "aa": 3, "timeout": 400})
    assert text == ('unknown key(s) "aa", "zz"; allowed: force, free_memory, model, timeout, wait; '
                    "also 'timeout' must be a number from 0 to 300, got 400; e.g. {\"timeout\": 30}; "
                    "also 'wait' must be bool, got 1; e.g. {\"wait\": true}")


@pytest.mark.parametrize("query, fragments", [
    ({}, ["'file' is required", "?file=model.safetensors&folder=diffusion_models"]),
    ({"file": "  "}, ["'file' is required"]),
    ({"file": "x", "folder": "etc"}, ["folder: 'etc' is not one of diffusion_models, unet"]),
    ({"file": "x", "weight_dtype": "fp4"}, ["weight_dtype: 'fp4' is not one of default, fp8_e4m3fn"]),
    ({"file": "x", "virtual_vram_gb": "nan"}, ["virtual_vram_gb: 'nan' is out of range; use 0 to 1048576"]),
    ({"file": "x", "virtual_vram_gb": "lots"}, ["virtual_vram_gb: 'lots' is not a number"]),
    ({"file": "x", "zz": "1"}, ["unknown query parameter(s) 'zz'; allowed: file, folder"]),
])
def test_a_mistake_in_the_plan_query_is_named(query, fragments):
    text = message(PlanQuery, query, query=True)
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_valid_requests_keep_their_defaults_and_meaning():
    assert FreeRequest.model_validate({}).model_dump() == {"force": False, "free_memory": True, "model": None,
                                                           "timeout": 30, "wait": True}
    asked = GenerateRequest.model_validate({"size": " 512x768 ", "priority": " HIGH"})
    assert (asked.dimensions, asked.priority, asked.mode, asked.timeout) == ((512, 768), "high", None, 600)
    assert SwitchRequest.model_validate({"mode": "a", "priority": None}).priority is None
    assert RetentionRequest.model_validate({"max_models": 3}).model_dump(exclude_unset=True) == {"max_models": 3}
    plan = PlanQuery.model_validate({"file": " x.safetensors ", "virtual_vram_gb": "0.5"})
    assert (plan.file, plan.folder, plan.virtual_vram_gb, plan.weight_dtype) == ("x.safetensors", "diffusion_models",
                                                                               "0.5", "default")
