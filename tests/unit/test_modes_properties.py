"""Property tests: modes.yaml (yamlsafe + schema, with real path resolution and LoRA headers)
against arbitrary and near-valid documents.

For any text, validation returns a usable ModesConfig or raises ONE ModesFileError whose problems
each name the file, a line and a column inside the text, and a message. Never another exception:
the modes service and its routes only report ModesFileError to the user (a stray ValueError or
RecursionError would leave the previous config silently in place, or answer 500).
"""
import datetime
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings, strategies as st

from distorch.logic.allocation import AllocationError, parse_allocation
from distorch.logic.devices import DeviceNameError, canonical_device
from modes.detection import shape_only_state_dict
from modes.header import BaseModel, HeaderError, lora_context_dim, read_header
from modes.paths import Roots
from modes.schema import MAX_SIDE, MODE_KEYS, WEIGHT_DTYPES, Checks, ModesConfig, build_config
from modes.yamlsafe import MAX_DEPTH, ModesFileError, read_document

AVAILABLE = ["cpu", "cuda:0", "mps", "npu:0"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINE_BREAKS = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts as a new line


def lora_file(path: Path, width: int | None, header: dict | None = None):
    """A LoRA whose header says its cross-attention width (its data zeros: only headers are read)."""
    if header is None:
        header = {"lora_unet_x_attn2_to_k.lora_down.weight": {"dtype": "F16", "shape": [4, width],
                                                               "data_offsets": [0, 8 * width]}}
    data = 8 * width if width else 0
    path.write_bytes(framed(json.dumps(header).encode()) + bytes(data))


def framed(raw: bytes) -> bytes:
    """A safetensors header: its length (8 bytes, little endian), then the JSON."""
    return struct.pack("<Q", len(raw)) + raw


@dataclass
class World:
    root: Path
    file: str
    checks: Checks


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("modes-props")
    models = root / "models"
    for folder in ("checkpoints", "diffusion_models", "loras"):
        (models / folder).mkdir(parents=True)
    (models / "checkpoints" / "a.safetensors").write_bytes(b"x" * 16)
    (models / "diffusion_models" / "u.safetensors").write_bytes(b"x" * 16)
    lora_file(models / "loras" / "l768.safetensors", 768)
    lora_file(models / "loras" / "l2048.safetensors", 2048)
    # A corrupt LoRA: header entries that are not {"dtype", "shape": [ints]}.
    lora_file(models / "loras" / "bad.safetensors", None,
              {"x.attn2.to_k.lora_down.weight": {"dtype": "F16", "shape": 5}, "y": [1, [2]]})

    def check_device(value, key):
        if value == "default":
            return None
        try:
            canonical_device(value, AVAILABLE, key)
        except DeviceNameError as exc:
            return str(exc)
        return None

    def check_allocation(value, key):  # as modes/runtime.py does, with a fixed device list
        try:
            parse_allocation(value, AVAILABLE, key)
        except AllocationError as exc:
            return str(exc)
        return None

    roots = Roots(models_dir=models, checkpoint_dirs=(models / "checkpoints",),
                  diffusion_dirs=(models / "diffusion_models",), lora_dirs=(models / "loras",))
    checks = Checks(roots=roots, check_device=check_device, check_allocation=check_allocation,
                    inspect_model=lambda file: BaseModel("SD15", 768, "checkpoint"), lora_width=lora_context_dim)
    return World(root, str(root / "modes.yaml"), checks)


def validate(text, world: World):
    """ModesConfig (checked for usable values) or the ModesFileError (checked for located problems)."""
    try:
        config = build_config(read_document(text, world.file), world.checks)
    except ModesFileError as error:
        assert error.problems, "a ModesFileError must carry at least one problem"
        decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        lines = LINE_BREAKS.split(decoded)
        for problem in error.problems:
            assert problem.file == world.file and problem.message.strip(), problem
            assert 1 <= problem.line <= len(lines) + 1, (problem, len(lines))
            if problem.line <= len(lines):
                assert 1 <= problem.column <= len(lines[problem.line - 1]) + 1, problem
        json.dumps([p.to_json() for p in error.problems])
        return error
    assert_usable(config, world)
    return config


def assert_usable(config: ModesConfig, world: World):
    models = world.root / "models"
    assert config.modes and config.default_mode in config.modes
    assert 1 <= config.cache_max_modes <= 1000 and 0.001 <= config.cache_max_gb <= 2**20
    for name, spec in config.modes.items():
        assert name == spec.name and name.strip() == name and name
        assert 16 <= spec.width <= MAX_SIDE and 16 <= spec.height <= MAX_SIDE
        assert spec.width % 8 == 0 and spec.height % 8 == 0
        assert 1 <= spec.steps <= 10000 and 0 <= spec.guidance <= 100
        assert spec.weight_dtype in WEIGHT_DTYPES
        assert Path(spec.model_file).is_file() and Path(spec.model_file).is_relative_to(models.resolve())
        for lora in spec.loras:
            assert Path(lora.file).is_file() and Path(lora.file).is_relative_to(models.resolve())
            assert -100 <= lora.strength <= 100 and -100 <= lora.strength_clip <= 100
            assert isinstance(lora.adapter_name, str)
        assert world.checks.check_device(spec.compute_device, "d") is None
        if spec.allocation:
            assert world.checks.check_allocation(spec.allocation, "a") is None
        # What GET /distorch/modes sends (aiohttp's json.dumps; the browser's JSON.parse has no NaN)
        json.dumps(spec.describe(), allow_nan=False)
        assert spec.signature() and spec.fingerprint()


# ---- generators ---------------------------------------------------------------------------
YAML_CHARS = "abmodelsrt_ \n\t:-[]{}&*!|>'\"#%@`,?.0123456789~\\"
# Valid documents are written with yaml.safe_dump, which emits U+0085 / U+2028 / U+2029 raw (a
# PyYAML quirk: they read back as line breaks); hand-written files rarely hold them, and the
# random-text tests still feed them to the reader.
characters = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x85\u2028\u2029")
texts = st.text(alphabet=characters, max_size=12)
# One line each once dumped (no key spans lines): for tests that edit the text line by line
plain_texts = st.text(alphabet="abcxyz019_ -", max_size=8)


def json_values_of(text):
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                        st.floats(allow_nan=False, allow_infinity=False), text)
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(text, inner, max_size=3)), max_leaves=8)


json_values = json_values_of(texts)
weird = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-10**400, 10**400), st.floats(), st.text(max_size=20),
    st.sampled_from(["", " ", "../x.safetensors", "~nobody/x.safetensors", "/etc/passwd", "a\x00b", "x" * 300,
                     "checkpoints", "loras/l768.safetensors", "512x512", "8x8", "99999x99999", "1e3", "fp16",
                     "cuda:9", "mps", "cpu,50%", "cuda:0,1gb;cpu,*", "0.8", "nan", datetime.date(2024, 1, 1)]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    json_values)


@st.composite
def valid_documents(draw, text=texts):
    """(document as a dict, what each mode must come out as); names, keys and text from ``text``."""
    names = text.filter(lambda n: n and n == n.strip())
    mode_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    modes, expected = {}, {}
    for name in mode_names:
        model = draw(st.sampled_from(["checkpoints/a.safetensors", "a.safetensors", "u.safetensors",
                                      "diffusion_models/u.safetensors"]))
        mode, want = {"model": model}, {"width": 512, "height": 512, "steps": 4, "guidance": 1.0, "loras": [],
                                        "compute_device": "default", "allocation": "", "weight_dtype": "default",
                                        "metadata": {}}
        if draw(st.booleans()):
            width, height = draw(st.integers(2, 2048)) * 8, draw(st.integers(2, 2048)) * 8
            if draw(st.booleans()):  # a single number: a square
                mode["default_size"], height = width, width
            else:
                mode["default_size"] = f"{width}x{height}"
            want["width"], want["height"] = width, height
        if draw(st.booleans()):
            mode["default_steps"] = want["steps"] = draw(st.integers(1, 10000))
        if draw(st.booleans()):
            mode["default_guidance"] = want["guidance"] = draw(st.floats(0, 100))
        if draw(st.booleans()):
            loras = draw(st.lists(st.tuples(st.sampled_from(["l768.safetensors", "l2048.safetensors"]),
                                            st.none() | st.floats(-100, 100)), max_size=3))
            mode["loras"] = [file if strength is None else {"path": file, "strength": strength}
                             for file, strength in loras]
            want["loras"] = [(file, 1.0 if strength is None else strength, "2048" in file) for file, strength in loras]
        if draw(st.booleans()):
            mode["compute_device"] = want["compute_device"] = draw(st.sampled_from(["default", "cpu", "CUDA", "npu:0",
                                                                                    "mps"]))
        if draw(st.booleans()):
            mode["allocation"] = want["allocation"] = draw(st.sampled_from(["cuda:0,50%;cpu,*", "0.8",
                                                                            "mps,1.5gb;cpu,*", "npu,2g;cpu,*"]))
        if draw(st.booleans()):
            mode["weight_dtype"] = want["weight_dtype"] = draw(st.sampled_from(WEIGHT_DTYPES))
        if draw(st.booleans()):
            mode["metadata"] = want["metadata"] = draw(st.dictionaries(text, json_values_of(text), max_size=3))
        modes[name], expected[name] = mode, want
    document = {"modes": modes}
    if draw(st.booleans()):
        document["default_mode"] = draw(st.sampled_from(mode_names))
    if draw(st.booleans()):
        document["cache"] = {"max_modes": draw(st.integers(1, 1000)), "max_gb": draw(st.floats(0.001, 2**20))}
    return document, expected


def dump(document, style) -> str:
    return yaml.safe_dump(document, default_flow_style=style, allow_unicode=True, sort_keys=False)


def paths_in(value, path=()):
    """Every path into a dict / list document (where a mutation may land)."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_in(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_in(item, path + (index,))


@st.composite
def near_valid_texts(draw):
    """A valid document with one thing changed: a value, a key, a removed key, or a raw YAML line."""
    document, _ = draw(valid_documents())
    where = draw(st.sampled_from(list(paths_in(document))))
    how = draw(st.sampled_from(["value", "key", "remove", "raw"]))
    parent = document
    for step in where[:-1]:
        parent = parent[step]
    if where and how == "value":
        parent[where[-1]] = draw(weird)
    elif where and how == "remove":
        del parent[where[-1]]
    elif how == "key":
        target = parent[where[-1]] if where else document
        if isinstance(target, dict):
            target[draw(st.one_of(st.text(max_size=8), st.sampled_from(["modle", "loras", "strenght", "<<", "null"])))] \
                = draw(weird)
    text = dump(document, draw(st.sampled_from([False, True, None])))
    if how == "raw":
        lines = text.split("\n")
        index = draw(st.integers(0, len(lines)))
        raw = draw(st.one_of(st.sampled_from(RAW_LINES), st.sampled_from(lines)))  # a copied line: duplicate key
        indent = " " * draw(st.sampled_from([0, 2, 4, 6]))
        lines.insert(index, indent + raw)
        text = "\n".join(lines)
    return text


RAW_LINES = [
    "x: !!int abc", "x: 2024-13-45", "!foo x: 1", "x: !foo 1", "x: &a [1, 2]", "y: *a", "x: *nowhere", "<<: {a: 1}",
    "x: " + "9" * 5000, "? [a]", ": 1", "x: !!binary '!!'", "x: !!python/object:os.system ls", "x: |", "modes: {}",
    "modes:", "\t", "x: '", "'", "x: " + "[" * 80 + "]" * 80, "x: !!float abc", "? !!int abc", "x: !!timestamp 1",
    "x: !!set {a, b}", "x: !!omap [a: 1]", "2024-13-45: 1", "x: .nan", "x: -.inf", "x: 0x1F", "x: 0o17",
    "x: 1_000", "---", "...", "%YAML 1.1", "x: ~", "x: \"\\ud800\"", "x: \"\\0\"", "\ufeffx: 1",
]


# ---- properties ---------------------------------------------------------------------------
@SETTINGS
@given(st.one_of(st.text(max_size=200), st.text(alphabet=YAML_CHARS, max_size=200), st.binary(max_size=100)))
@example("a: !!int abc")       # ValueError from the int constructor
@example("a: 2024-13-45")      # ValueError: month must be in 1..12 (a date-like value)
@example("!foo a: 1")          # ConstructorError raised outside the located error path (a key)
@example("? !!float x\n: 1")   # ValueError in a key
@example("a: " + "1" * 5000)   # ValueError: more than 4300 digits
@example("[" * 5000 + "]" * 5000)  # RecursionError in PyYAML's composer
def test_any_text_gives_a_config_or_located_errors(world, text):
    validate(text, world)


@SETTINGS
@given(near_valid_texts())
@example("x: !!timestamp 1\nmodes: {a: {model: a.safetensors}}")           # AttributeError in PyYAML
@example("model_root: \"~nobody/x\"\nmodes: {a: {model: a.safetensors}}")   # RuntimeError from expanduser
@example("model_root: " + "d" * 300 + "\nmodes: {a: {model: a.safetensors}}")  # OSError: name too long
@example("modes: {a: {model: \"~nobody/a.safetensors\"}}")
@example("modes: {a: {model: \"/tmp/a\\0b\"}}")                               # ValueError from realpath
@example("modes: {a: {model: a.safetensors, loras: [bad.safetensors]}}")    # TypeError in the LoRA header
@example("modes: {a: {model: a.safetensors, metadata: {created: 2024-01-01}}}")  # the route's json.dumps
@example("modes: {a: {model: a.safetensors, metadata: {ratio: .nan}}}")
def test_near_valid_documents_give_a_config_or_located_errors(world, text):
    validate(text, world)


@SETTINGS
@given(valid_documents(), st.sampled_from([False, True, None]))
def test_valid_documents_come_out_with_the_values_written(world, case, style):
    document, expected = case
    config = validate(dump(document, style), world)
    assert isinstance(config, ModesConfig), config
    assert list(config.modes) == list(expected)
    assert config.default_mode == document.get("default_mode", next(iter(expected)))
    if "cache" in document:
        assert (config.cache_max_modes, config.cache_max_gb) == (document["cache"]["max_modes"],
                                                                  document["cache"]["max_gb"])
    for name, want in expected.items():
        spec = config.modes[name]
        assert (spec.width, spec.height, spec.steps, spec.guidance) == (want["width"], want["height"], want["steps"],
                                                                        want["guidance"])
        assert [(Path(l.path).name, l.strength, l.skip_reason is not None) for l in spec.loras] == want["loras"]
        assert (spec.compute_device, spec.allocation, spec.weight_dtype) == (
            want["compute_device"], want["allocation"], want["weight_dtype"])
        assert spec.metadata == want["metadata"]


@SETTINGS
@given(valid_documents(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=10).filter(
    lambda key: yaml.safe_load(key) == key))  # written unquoted ('true', 'null' would be quoted)
def test_an_unknown_key_is_reported_where_it_is_written(world, case, key):
    document, expected = case
    name = next(iter(expected))
    if key in MODE_KEYS:
        return
    document["modes"][name][key] = 1
    text = dump(document, False)
    error = validate(text, world)
    assert isinstance(error, ModesFileError)
    [problem] = [p for p in error.problems if f"unknown key '{key}'" in p.message]
    line = LINE_BREAKS.split(text)[problem.line - 1]
    assert line[problem.column - 1:].startswith(f"{key}:"), (line, problem)


@SETTINGS
@given(valid_documents(plain_texts), st.data())
def test_a_duplicate_key_is_reported_at_its_second_occurrence(world, case, data):
    document, _ = case
    text = dump(document, False)
    lines = text.split("\n")
    keyed = [i for i, line in enumerate(lines) if re.match(r"^ *[a-z_]+:", line)]
    index = data.draw(st.sampled_from(keyed))
    key = lines[index].strip().split(":")[0]
    # the copy goes right after the original's whole block, at the same indentation
    indent = len(lines[index]) - len(lines[index].lstrip())
    end = index + 1
    while end < len(lines) and lines[end].strip() and (len(lines[end]) - len(lines[end].lstrip()) > indent
                                                        or lines[end].lstrip().startswith("- ") and
                                                        len(lines[end]) - len(lines[end].lstrip()) == indent):
        end += 1
    lines[end:end] = lines[index:end]
    error = validate("\n".join(lines), world)
    assert isinstance(error, ModesFileError)
    assert any(f"duplicate key '{key}'" in p.message and p.line == end + 1 and p.column == indent + 1
               for p in error.problems), (error.problems, end + 1)


@SETTINGS
@given(st.integers(1, 400), st.sampled_from(["[{}]", "{{a: {}}}", "- {}"]))
@example(MAX_DEPTH - 3, "[{}]")
@example(MAX_DEPTH - 2, "[{}]")
def test_nesting_is_accepted_up_to_the_limit_and_refused_with_a_location_beyond(world, depth, form):
    if form == "- {}":  # block style: one '- ' per level, each on its own line
        value = "\n" + "\n".join("        " + "  " * level + "-" for level in range(depth)) + " 1"
    else:
        value = "1"
        for _ in range(depth):
            value = form.format(value)
    text = f"modes:\n  a:\n    model: a.safetensors\n    metadata:\n      deep: {value}\n"
    outcome = validate(text, world)
    # path: modes, a, metadata, deep, then one key or index per level
    if 4 + depth <= MAX_DEPTH:
        assert isinstance(outcome, ModesConfig), outcome
    else:
        assert isinstance(outcome, ModesFileError)
        assert any(f"nested more than {MAX_DEPTH}" in p.message for p in outcome.problems), outcome.problems


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12))
def test_aliases_expand_or_are_refused_as_a_bomb(world, levels, fan_out):
    lines = ["modes:", "  a:", "    model: a.safetensors", "    metadata:", "      l0: &l0 [1, 2]"]
    for level in range(1, levels):
        lines.append(f"      l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * fan_out)}]")
    outcome = validate("\n".join(lines) + "\n", world)
    aliases = fan_out * (levels - 1)
    sizes = [3]  # l0: the list and its two items
    for _ in range(1, levels):
        sizes.append(1 + fan_out * sizes[-1])
    expanded = sum(sizes)
    if aliases <= 100 and expanded < 90_000:
        assert isinstance(outcome, ModesConfig), outcome
    elif aliases > 100 or expanded > 100_000:
        assert isinstance(outcome, ModesFileError) and "alias" in str(outcome)


# ---- the LoRA / model header behind the schema's checks ------------------------------------
@SETTINGS
@given(st.one_of(
    st.binary(max_size=64),
    st.builds(lambda raw, extra: struct.pack("<Q", max(0, len(raw) + extra)) + raw,
              st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=40),
                        st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
                        st.dictionaries(st.text(max_size=40), json_values, max_size=4).map(
                            lambda d: json.dumps(d).encode())),
              st.sampled_from([0, 0, 1, -1]))))
@example(struct.pack("<Q", 20_000) + b"[" * 10_000 + b"]" * 10_000)   # RecursionError in json.loads
@example(framed(b'{"a.attn2.to_k.lora_down.weight": {"shape": 5}}'))  # TypeError: len(5)
@example(framed(b'{"w": {"dtype": "F16", "shape": [1e12, 1e12]}}'))  # floats as sizes
@example(framed(b'{"w": {"dtype": "F16", "shape": [1099511627776, 2e6]}}'))
@example(framed(b'{"w": {"dtype": "F16", "shape": [1099511627776, 1099511627776]}}'))  # torch overflow
def test_any_file_has_a_header_or_a_header_error(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "header-probe.safetensors"
    path.write_bytes(data)
    try:
        header = read_header(path)
        width = lora_context_dim(path)
    except HeaderError as error:
        assert "header-probe.safetensors" in str(error)
        return
    try:
        state = shape_only_state_dict(header)  # what detect_model hands the host's detection
    except HeaderError as error:  # the schema puts it under the mode's 'model' key, which names the file
        assert any(f"tensor '{name}'" in str(error) for name in header)
        return
    assert isinstance(header, dict) and "__metadata__" not in header
    for info in header.values():
        assert isinstance(info["dtype"], str) and all(isinstance(n, int) and n >= 0 for n in info["shape"])
    assert width is None or isinstance(width, int)
    assert {name: list(tensor.shape) for name, tensor in state.items()} == {n: i["shape"] for n, i in header.items()}
