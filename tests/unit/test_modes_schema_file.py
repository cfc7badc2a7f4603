"""schemas/modes.schema.json is generated from the pydantic models that validate modes.yaml
(modes/schema.py): the committed file must be what the models give today."""
import json
from pathlib import Path

import jsonschema
import yaml

from modes.schema import SCHEMA_FILE, json_schema

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_schema_is_the_models_schema():
    assert SCHEMA_FILE == REPO / "schemas" / "modes.schema.json"
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == json_schema(), ("schemas/modes.schema.json differs from the models in modes/schema.py; "
                                        "regenerate it: python -m modes.schema > schemas/modes.schema.json")


def test_the_example_file_meets_the_schema_and_a_typo_does_not():
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    example = yaml.safe_load((REPO / "modes.yaml.example").read_text(encoding="utf-8"))
    jsonschema.validate(example, schema)
    example["modes"][next(iter(example["modes"]))]["default_stpes"] = 20
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(example))
    assert errors and "default_stpes" in errors[0].message
