"""A parsed modes file (``yamlsafe.Document``) -> ``ModesConfig``, or every located error at once.

Two passes, both always run, so one reload reports every mistake:
1. shape: the pydantic models below check each value on its own (keys, types, ranges, formats).
   Each entry of pydantic's ``ValidationError`` becomes a ``Problem`` at the line and column its
   ``loc`` points to in the file, worded with the field's own bounds, default and example.
2. references: what a value names outside itself: ``default_mode`` (a mode of this file), model
   and LoRA files (through ``paths``), devices, allocation strings and attention (through the
   callables in ``Checks``, so this module needs no ComfyUI), the base model in a file's header.
   LoRAs made for another base become warnings, and are skipped when the mode loads.
The same models give schemas/modes.schema.json (``json_schema()``; a unit test keeps them equal).
"""
from __future__ import annotations

import dataclasses
import datetime
import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, JsonValue,
                      StringConstraints, Tag, ValidationError, ValidationInfo, WithJsonSchema, field_validator)
from pydantic_core import PydanticCustomError

from .paths import PathRefused, Roots, resolve_lora, resolve_model
from .yamlsafe import Document, ModesFileError, Problem

try:  # the pack: modes/ sits beside distorch/
    from ..distorch.logic import dtypes
except ImportError:  # modes imported on its own (unit tests put the repository root on sys.path)
    from distorch.logic import dtypes

DEFAULT_WIDTH = DEFAULT_HEIGHT = 512
DEFAULT_STEPS = 4
DEFAULT_GUIDANCE = 1.0
DEFAULT_CACHE_MODES = 3
DEFAULT_CACHE_GB = 24.0
DEFAULT_TILE_SIZE, DEFAULT_TILE_OVERLAP = 512, 64  # pixels, as ComfyUI's "VAE Decode (Tiled)" defaults
MAX_SIDE = 16384
WEIGHT_DTYPES = tuple(dtypes.WEIGHT_DTYPES)
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "modes.schema.json"
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


# ---- the document's shape --------------------------------------------------------------------
# strict: no "3" for 3, no true for 1, no 2.0 for a whole number; NaN and infinities refused.
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
# the error types of our own checks below: their messages say what is wrong with the value
_OURS = {"blank", "mode_name", "size", "tile_size", "overlap", "lora", "vae_tiling"}


def _written(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "is not a file name; write the file, e.g. x.safetensors")
    return value


def _folder(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "is not a folder path; write an absolute path, or one relative to the "
                                           "modes file")
    return value


def _mode_name(name: str) -> str:
    if not name.strip() or name != name.strip():
        raise PydanticCustomError("mode_name", "must not be empty or start / end with spaces")
    return name


def _size(value) -> tuple[int, int]:
    """``1024`` (a square) or ``"WIDTHxHEIGHT"``; each side a multiple of 8 from 16 to MAX_SIDE."""
    if isinstance(value, int) and not isinstance(value, bool):
        width = height = value
    else:
        match = _SIZE.match(value) if isinstance(value, str) else None
        if not match:
            raise PydanticCustomError("size", 'is not a size; write "WIDTHxHEIGHT", e.g. "1024x1024"')
        width, height = int(match.group(1)), int(match.group(2))
    for side, label in ((width, "width"), (height, "height")):
        if not 16 <= side <= MAX_SIDE or side % 8:
            raise PydanticCustomError("size", "has {label} {side}; each side must be a multiple of 8 from 16 to "
                                              "{most}", {"label": label, "side": side, "most": MAX_SIDE})
    return width, height


def _iso_dates(value):
    """YAML reads ``2024-01-01`` as a date: metadata keeps it as ISO text (it is sent as JSON)."""
    if isinstance(value, dict):
        return {key: _iso_dates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_iso_dates(item) for item in value]
    return value.isoformat() if isinstance(value, (datetime.date, datetime.datetime)) else value


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _kind(value) -> str | None:
    """The member of a ``file name | {mapping}`` union a value is written as (None: neither)."""
    return "name" if isinstance(value, str) else "mapping" if isinstance(value, dict) else None


FileName = Annotated[str, AfterValidator(_written)]
FolderName = Annotated[str, AfterValidator(_folder)]
Text = Annotated[str, StringConstraints(strip_whitespace=True)]
Size = Annotated[tuple[int, int], BeforeValidator(_size), WithJsonSchema({"anyOf": [
    {"type": "integer", "minimum": 16, "maximum": MAX_SIDE, "multipleOf": 8, "description": "a square"},
    {"type": "string", "pattern": _SIZE.pattern, "description": "WIDTHxHEIGHT, each a multiple of 8 from 16"}]})]


class Cache(BaseModel):
    model_config = ConfigDict(**_STRICT, title="cache",
                              json_schema_extra={"examples": [{"max_modes": 3, "max_gb": 24}]})
    max_modes: int = Field(DEFAULT_CACHE_MODES, ge=1, le=1000, description="loaded modes kept in memory")
    max_gb: float = Field(DEFAULT_CACHE_GB, ge=0.001, le=1 << 20,
                          description="GiB the kept modes may occupy once loaded")


class Lora(BaseModel):
    model_config = ConfigDict(**_STRICT, title="LoRA", json_schema_extra={"examples": [{"path": "x.safetensors",
                                                                                        "strength": 0.8}]})
    path: FileName = Field(description="the LoRA file, relative to lora_root, else model_root, else ComfyUI's "
                                       "loras folders")
    strength: float = Field(1.0, ge=-100, le=100, description="model strength")
    strength_clip: float | None = Field(None, ge=-100, le=100, description="text encoder strength; default: strength")
    adapter_name: str | None = Field(None, description="a label for listings; default: the file name")


LoraEntry = Annotated[Union[Annotated[FileName, Tag("name")], Annotated[Lora, Tag("mapping")]], Discriminator(
    _kind, custom_error_type="lora", custom_error_message="is not a LoRA; write a file name or "
                                                          "{path: ..., strength: ...}")]


class VaeTiling(BaseModel):
    model_config = ConfigDict(**_STRICT, title="vae_tiling",
                              json_schema_extra={"examples": [{"tile_size": DEFAULT_TILE_SIZE,
                                                               "overlap": DEFAULT_TILE_OVERLAP}]})
    tile_size: int = Field(DEFAULT_TILE_SIZE, ge=64, le=4096, description="tile side in pixels, a multiple of 32")
    overlap: int = Field(DEFAULT_TILE_OVERLAP, ge=0, le=4096,
                         description="pixels shared by neighbouring tiles, at most a quarter of tile_size")

    @field_validator("tile_size")
    @classmethod
    def _whole_blocks(cls, tile: int) -> int:
        if tile % 32:
            raise PydanticCustomError("tile_size", "is not a multiple of 32 (the VAE works in blocks of 8 latent "
                                                   "pixels); use e.g. 512")
        return tile

    @field_validator("overlap")
    @classmethod
    def _quarter(cls, overlap: int, info: ValidationInfo) -> int:
        tile = info.data.get("tile_size", DEFAULT_TILE_SIZE)
        if overlap * 4 > tile:
            raise PydanticCustomError("overlap", "is more than a quarter of tile_size {tile}; use at most {most}",
                                      {"tile": tile, "most": tile // 4})
        return overlap


VaeTilingChoice = Annotated[Union[Annotated[bool, Tag("name")], Annotated[VaeTiling, Tag("mapping")]], Discriminator(
    lambda value: "name" if isinstance(value, bool) else "mapping" if isinstance(value, dict) else None,
    custom_error_type="vae_tiling", custom_error_message=f"is not allowed; write true, false or "
                                                         f"{{tile_size: {DEFAULT_TILE_SIZE}, overlap: "
                                                         f"{DEFAULT_TILE_OVERLAP}}} (pixels)")]


class Mode(BaseModel):
    model_config = ConfigDict(**_STRICT, title="mode", json_schema_extra={"examples": [{"model": "x.safetensors"}]})
    model: FileName = Field(description="the checkpoint or diffusion model file, or a diffusers folder")
    loras: list[LoraEntry] | None = Field(None, examples=[["x.safetensors", {"path": "y.safetensors",
                                                                              "strength": 0.8}]])
    default_size: Size = Field(f"{DEFAULT_WIDTH}x{DEFAULT_HEIGHT}", validate_default=True,
                               description='"WIDTHxHEIGHT", or one number for a square')
    default_steps: int = Field(DEFAULT_STEPS, ge=1, le=10000)
    default_guidance: float = Field(DEFAULT_GUIDANCE, ge=0, le=100, description="the cfg of KSampler")
    metadata: Annotated[dict[str, JsonValue], BeforeValidator(_iso_dates)] | None = Field(
        None, examples=[{"description": "..."}], description="free text for listings (sent as JSON)")
    compute_device: Text | None = Field("default", description="as on the DisTorch loaders: default, cpu, cuda:0, ...")
    allocation: Text | None = Field("", description="split of the diffusion model (README, \"Splitting\")")
    weight_dtype: Annotated[Literal[WEIGHT_DTYPES], BeforeValidator(_strip)] | None = "default"
    vae_tiling: VaeTilingChoice | None = Field(None, description="true (the defaults), false, or tile_size / overlap")
    attention: Text | None = Field("default", description="the attention function of the diffusion model")


MODE_KEYS = tuple(Mode.model_fields)


class ModesFile(BaseModel):
    model_config = ConfigDict(**_STRICT, title="modes.yaml (comfyui-distorch): named model setups")
    model_root: FolderName | None = Field(None, description="folder of the models (absolute, or relative to this file)")
    lora_root: FolderName | None = Field(None, description="folder of the LoRAs; default: model_root")
    default_mode: str | None = Field(None, description="default: the first mode")
    modes: dict[Annotated[str, AfterValidator(_mode_name)], Mode] = Field(
        min_length=1, examples=[{"general": {"model": "x.safetensors"}}], description="the modes by name")
    cache: Cache | None = None


def json_schema() -> dict:
    """The JSON schema of a modes file (schemas/modes.schema.json)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://github.com/comfyui-distorch/comfyui-distorch/schemas/modes.schema.json",
            **ModesFile.model_json_schema()}


# ---- what validation gives ---------------------------------------------------------------------
@dataclass(frozen=True)
class LoraSpec:
    path: str              # as written
    file: str              # resolved, absolute
    strength: float
    strength_clip: float
    adapter_name: str
    skip_reason: str | None = None   # set when the header says it does not fit the model


@dataclass(frozen=True)
class ModeSpec:
    name: str
    model: str             # as written
    model_file: str        # resolved, absolute
    loras: tuple[LoraSpec, ...]
    width: int
    height: int
    steps: int
    guidance: float
    compute_device: str = "default"
    allocation: str = ""
    weight_dtype: str = "default"
    vae_tiling: tuple[int, int] | None = None  # (tile_size, overlap) in pixels; None = untiled
    attention: str = "default"                 # the attention this mode's diffusion model uses
    base: str = "unknown"  # the host's model class, from the header
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    def fingerprint(self) -> str:
        """Changes whenever what this mode loads changes (files, their size / mtime, settings)."""
        def stamp(file: str):
            try:
                stat = os.stat(file)
                return [stat.st_size, stat.st_mtime_ns]
            except OSError:
                return None
        parts = {"model": [self.model_file, stamp(self.model_file)], "dtype": self.weight_dtype,
                 "device": self.compute_device, "allocation": self.allocation,
                 "vae_tiling": self.vae_tiling, "attention": self.attention,
                 "loras": [[l.file, stamp(l.file), l.strength, l.strength_clip, l.skip_reason is None]
                           for l in self.loras]}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def signature(self) -> str:
        """Changes whenever anything the node outputs changes (defaults included), not only the files."""
        described = json.dumps(self.describe(), sort_keys=True, default=str)
        return self.fingerprint() + "-" + hashlib.sha256(described.encode()).hexdigest()[:12]

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model, "model_file": self.model_file, "base": self.base,
                "loras": [{"path": l.path, "strength": l.strength, "strength_clip": l.strength_clip,
                           "adapter_name": l.adapter_name, "skipped": l.skip_reason} for l in self.loras],
                "width": self.width, "height": self.height, "steps": self.steps, "guidance": self.guidance,
                "compute_device": self.compute_device, "allocation": self.allocation,
                "weight_dtype": self.weight_dtype,
                "vae_tiling": {"tile_size": self.vae_tiling[0], "overlap": self.vae_tiling[1]} if self.vae_tiling else None,
                "attention": self.attention, "metadata": self.metadata}


@dataclass
class ModesConfig:
    file: str
    modes: dict[str, ModeSpec]
    default_mode: str | None
    cache_max_modes: int = DEFAULT_CACHE_MODES
    cache_max_gb: float = DEFAULT_CACHE_GB
    warnings: list[Problem] = field(default_factory=list)


@dataclass
class Checks:
    """What validation needs from the outside world (ComfyUI folders, devices, the header reader)."""
    roots: Roots
    check_device: Callable[[str, str], str | None] = lambda value, key: None        # error or None
    check_allocation: Callable[[str, str], str | None] = lambda value, key: None
    check_attention: Callable[[str, str], str | None] = lambda value, key: None     # error or None
    inspect_model: Callable[[str], object] | None = None                           # -> header.BaseModel
    lora_width: Callable[[str], int | None] | None = None


# ---- pydantic's errors -> located problems -----------------------------------------------------
_TAGS = {"name", "mapping", "dict", "list", "str", "int", "float", "bool"}  # union members' names in a loc


def _label(path: tuple) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")


def _in_document(value, loc: tuple) -> tuple | None:
    """The document path (keys and list indexes) that a pydantic ``loc`` points to: the loc without
    the names pydantic gives union members. A step that is both a key and such a name is a key
    when the rest of the loc fits under it."""
    if not loc:
        return ()
    step, rest = loc[0], loc[1:]
    if (isinstance(value, dict) and step in value
            or isinstance(value, list) and type(step) is int and 0 <= step < len(value)):
        found = _in_document(value[step], rest)
        if found is not None:
            return (step,) + found
    return _in_document(value, rest) if step in _TAGS else None


def _bare(annotation):
    """``annotation`` without ``Annotated`` and ``| None``."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, type(int | None)) and type(None) in get_args(annotation):
            members = [a for a in get_args(annotation) if a is not type(None)]
            annotation = members[0] if len(members) == 1 else Union[tuple(members)]
        else:
            return annotation


def _declared(loc: tuple):
    """(model, its field named by the loc's last step or None, the type expected there) for a loc."""
    annotation, owner, declared = ModesFile, None, None
    for step in loc:
        annotation = _bare(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner, declared = annotation, annotation.model_fields.get(step)
            annotation = declared.annotation if declared else None
            continue
        owner = declared = None
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is Union:  # a tagged union: the step names the member
            annotation = next((m for m in get_args(annotation) if any(getattr(x, "tag", None) == step
                                                                       for x in get_args(m)[1:])), None)
        else:
            annotation = None
    return owner, declared, _bare(annotation)


def _flow(example) -> str:
    return yaml.safe_dump(example, default_flow_style=True, sort_keys=False, width=1000).strip()


def _example(declared, expected) -> str:
    examples = (declared.examples if declared is not None else None) or (
        (expected.model_config.get("json_schema_extra") or {}).get("examples")
        if isinstance(expected, type) and issubclass(expected, BaseModel) else None)
    return f", e.g. {_flow(examples[0])}" if examples else ""


def _bounds(declared) -> str:
    low = next((m.ge for m in getattr(declared, "metadata", ()) if hasattr(m, "ge")), None)
    high = next((m.le for m in getattr(declared, "metadata", ()) if hasattr(m, "le")), None)
    return f"allowed {low} to {high}" if low is not None and high is not None else "use a number in range"


def _message(entry: dict, path: tuple) -> str:
    kind, value, loc = entry["type"], entry.get("input"), entry["loc"]
    if loc and loc[-1] == "[key]":  # a key of a mapping (a mode name)
        return f"{_label(path[:-1])}: name {value!r} {entry['msg']}"
    owner, declared, expected = _declared(loc)
    where = _label(path) or "the modes file"
    if kind == "missing":
        what = f" ({declared.description})" if declared is not None and declared.description else ""
        example = declared.examples if declared is not None else None
        return f"{where}: missing key '{loc[-1]}'{what}" + (f"; write e.g. {loc[-1]}: {_flow(example[0])}"
                                                             if example else "")
    if kind == "extra_forbidden":
        allowed = tuple(owner.model_fields) if owner is not None else ()
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return (f"unknown key '{path[-1]}' in {_label(path[:-1]) or 'the modes file'}; {hint}"
                f"allowed: {', '.join(allowed)}")
    shown = repr(value)
    default = f"; use e.g. {declared.default}" if declared is not None and declared.default is not None else ""
    text = {
        "int_type": f"{shown} is not a whole number{default}",
        "float_type": f"{shown} is not a number{default}",
        "finite_number": f"{shown} is not a finite number; {_bounds(declared)}" if declared is not None
        else f"{shown} cannot be sent as JSON; write it in quotes",
        "greater_than_equal": f"{shown} is out of range; {_bounds(declared)}",
        "less_than_equal": f"{shown} is out of range; {_bounds(declared)}",
        "string_type": f"{shown} must be text; write it in quotes",
        "literal_error": f"{shown} is not allowed; use one of {(entry.get('ctx') or {}).get('expected')}",
        "dict_type": f"{shown} must be a mapping{_example(declared, expected)}",
        "model_type": f"{shown} must be a mapping{_example(declared, expected)}",
        "list_type": f"{shown} must be a list{_example(declared, expected)}",
        "too_short": f"must not be empty{_example(declared, expected)}",
        "invalid-json-value": f"a {type(value).__name__} value is not allowed here; write text in quotes",
    }.get(kind)
    if text is None:  # our own checks (PydanticCustomError, a union's custom error) say what is wrong
        text = f"{shown} {entry['msg']}" if kind in _OURS else f"{shown}: {entry['msg']}"
    return f"{where}: {text}"


def _shape_problems(doc: Document, error: ValidationError) -> list[Problem]:
    problems = []
    for entry in error.errors(include_url=False):
        loc, on_key = entry["loc"], False
        if loc and loc[-1] == "[key]":        # a mode name: at the name
            loc, on_key = loc[:-1], True
        elif entry["type"] == "missing":      # at the mapping that lacks it (its key when it has one)
            loc = loc[:-1]
        path = _in_document(doc.value, loc)
        if path is None:
            path = tuple(step for step in loc if step not in _TAGS)
        on_key = on_key or entry["type"] == "missing" and bool(path) and isinstance(path[-1], str)
        problems.append(doc.problem(path, _message(entry, path), key=on_key or entry["type"] == "extra_forbidden"))
    return problems


# ---- references: what a value names outside itself -----------------------------------------------
class _Report:
    def __init__(self, doc: Document):
        self.doc = doc
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, path: tuple, message: str):
        self.errors.append(self.doc.problem(path, message))

    def warn(self, path: tuple, message: str):
        self.warnings.append(self.doc.problem(path, message))


def _text(mapping, key: str) -> str | None:
    """The value at ``key`` when it is non-blank text (the shape pass reports anything else)."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def _root(report: _Report, top: dict, key: str, base_dir: Path) -> Path | None:
    value = _text(top, key)
    if value is None:
        return None
    try:
        folder = Path(value).expanduser()
        if not folder.is_absolute():
            folder = base_dir / folder
        is_dir = folder.is_dir()
    except (OSError, ValueError, RuntimeError) as exc:  # '~nobody' (RuntimeError), names too long (OSError)
        report.error((key,), f"{key}: {value!r} cannot be a folder path here ({exc}); fix the path")
        return None
    if not is_dir:
        report.error((key,), f"{key}: folder '{value}' does not exist ({folder}); create it or fix the path")
        return None
    return folder


@dataclass
class _Found:
    """What the references pass found for one mode."""
    model_file: str | None = None
    base: object = None                                        # header.BaseModel
    loras: dict[int, tuple[str, str | None]] = field(default_factory=dict)   # index -> (file, skip reason)


def _mode_references(report: _Report, name: str, mode: dict, checks: Checks, roots: Roots) -> _Found:
    from .header import HeaderError, lora_mismatch

    path, found = ("modes", name), _Found()
    model = _text(mode, "model")
    if model is not None:
        try:
            found.model_file = str(resolve_model(model, roots))
        except PathRefused as exc:
            report.error(path + ("model",), f"modes.{name}.model: {exc}")
    if found.model_file is not None and checks.inspect_model is not None:
        try:
            found.base = checks.inspect_model(found.model_file)
        except HeaderError as exc:
            report.error(path + ("model",), f"modes.{name}.model: {exc}")
        else:
            if found.base.family is None and (found.model_file.lower().endswith((".safetensors", ".sft"))
                                              or os.path.isdir(found.model_file)):
                report.warn(path + ("model",), f"modes.{name}.model: ComfyUI does not recognise the model in "
                                               f"'{model}' from its header; loading may fail")
    loras = mode.get("loras")
    for index, item in enumerate(loras if isinstance(loras, list) else ()):
        item_path = path + ("loras", index)
        written = item if isinstance(item, str) and item.strip() else _text(item, "path")
        if written is None:
            continue
        try:
            file = str(resolve_lora(written, roots))
        except PathRefused as exc:
            report.error(item_path + ("path",), f"{_label(item_path + ('path',))}: {exc}")
            continue
        skip = None
        if found.base is not None and checks.lora_width is not None:
            try:
                skip = lora_mismatch(found.base, checks.lora_width(file))
            except HeaderError as exc:
                report.error(item_path + ("path",), f"{_label(item_path + ('path',))}: {exc}")
                continue
            if skip:
                report.warn(item_path + ("path",), f"{_label(item_path)}: LoRA '{written}' is {skip}; it will be "
                                                   "skipped when the mode loads. Remove it, or pick a LoRA for this "
                                                   "model")
        found.loras[index] = (file, skip)
    dtype = _text(mode, "weight_dtype")
    if found.model_file is not None and os.path.isdir(found.model_file) and dtype and dtype.strip() != "default":
        report.error(path + ("weight_dtype",), f"modes.{name}.weight_dtype: '{dtype.strip()}' does not apply to a "
                                               "diffusers folder (ComfyUI's diffusers loader keeps the files' "
                                               "dtype); remove it, or use a single-file model")
    for key, check in (("compute_device", checks.check_device), ("allocation", checks.check_allocation),
                       ("attention", checks.check_attention)):
        value = _text(mode, key)
        if value is not None:
            problem = check(value.strip(), f"modes.{name}.{key}")
            if problem:
                report.error(path + (key,), problem)
    return found


def _spec(name: str, mode: Mode, found: _Found) -> ModeSpec:
    loras = []
    for index, entry in enumerate(mode.loras or ()):
        entry = Lora(path=entry) if isinstance(entry, str) else entry
        file, skip = found.loras[index]
        clip = entry.strength if entry.strength_clip is None else entry.strength_clip
        adapter = entry.adapter_name if entry.adapter_name is not None else Path(entry.path).stem
        loras.append(LoraSpec(entry.path, file, entry.strength, clip, adapter, skip))
    tiling = mode.vae_tiling
    return ModeSpec(name=name, model=mode.model, model_file=found.model_file, loras=tuple(loras),
                    width=mode.default_size[0], height=mode.default_size[1], steps=mode.default_steps,
                    guidance=mode.default_guidance, compute_device=mode.compute_device or "default",
                    allocation=mode.allocation or "", weight_dtype=mode.weight_dtype or "default",
                    vae_tiling=(DEFAULT_TILE_SIZE, DEFAULT_TILE_OVERLAP) if tiling is True
                    else (tiling.tile_size, tiling.overlap) if isinstance(tiling, VaeTiling) else None,
                    attention=mode.attention or "default",
                    base=found.base.label if found.base is not None else "unknown", metadata=mode.metadata or {})


def build_config(doc: Document, checks: Checks) -> ModesConfig:
    """Validate everything; raises ModesFileError listing every error (file, line, column)."""
    top = doc.value
    if top is None:
        raise ModesFileError([doc.problem((), "the file is empty; define at least one mode under 'modes:' "
                                              "(see modes.yaml.example)")])
    if not isinstance(top, dict):
        raise ModesFileError([doc.problem((), "the file must be a mapping with a 'modes:' key "
                                              "(see modes.yaml.example)")])
    report = _Report(doc)
    try:
        document = ModesFile.model_validate(top)
    except ValidationError as exc:
        document = None
        report.errors += _shape_problems(doc, exc)
    base_dir = Path(doc.file).resolve().parent
    roots = dataclasses.replace(checks.roots, model_root=_root(report, top, "model_root", base_dir),
                                lora_root=_root(report, top, "lora_root", base_dir))
    raw_modes = top.get("modes") if isinstance(top.get("modes"), dict) else {}
    found = {name: _mode_references(report, name, mode, checks, roots)
             for name, mode in raw_modes.items() if isinstance(mode, dict)}
    default_mode = top.get("default_mode")
    if isinstance(default_mode, str) and raw_modes and default_mode not in raw_modes:
        report.error(("default_mode",), f"default_mode: '{default_mode}' is not a mode defined in this file; "
                                        f"defined: {', '.join(raw_modes)}")
    if report.errors:
        raise ModesFileError(sorted(report.errors, key=lambda p: (p.line, p.column)))
    cache = document.cache or Cache()
    modes = {name: _spec(name, mode, found[name]) for name, mode in document.modes.items()}
    return ModesConfig(file=doc.file, modes=modes, default_mode=document.default_mode or next(iter(document.modes)),
                       cache_max_modes=cache.max_modes, cache_max_gb=cache.max_gb, warnings=report.warnings)


if __name__ == "__main__":  # python -m modes.schema > schemas/modes.schema.json
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
