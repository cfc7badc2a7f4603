"""A parsed modes file (``yamlsafe.Document``) -> ``ModesConfig``, or every located error at once.

Checks happen here and nowhere later: keys, types, ranges, ``default_mode``, model / LoRA files
(through ``paths``), devices and allocation strings (through callables the caller passes, so this
module needs no ComfyUI). The base model of each mode is read from its header (``inspect_model``);
LoRAs made for another base become warnings, and are skipped when the mode loads.
"""
from __future__ import annotations

import datetime
import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .paths import PathRefused, Roots, resolve_lora, resolve_model
from .yamlsafe import Document, ModesFileError, Problem

DEFAULT_WIDTH = DEFAULT_HEIGHT = 512
DEFAULT_STEPS = 4
DEFAULT_GUIDANCE = 1.0
DEFAULT_CACHE_MODES = 3
DEFAULT_CACHE_GB = 24.0
MAX_SIDE = 16384
WEIGHT_DTYPES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")

TOP_KEYS = ("model_root", "lora_root", "default_mode", "modes", "cache")
MODE_KEYS = ("model", "loras", "default_size", "default_steps", "default_guidance", "metadata",
             "compute_device", "allocation", "weight_dtype", "vae_tiling", "attention")
VAE_TILING_KEYS = ("tile_size", "overlap")
DEFAULT_TILE_SIZE, DEFAULT_TILE_OVERLAP = 512, 64  # pixels, as ComfyUI's "VAE Decode (Tiled)" defaults
LORA_KEYS = ("path", "strength", "strength_clip", "adapter_name")
CACHE_KEYS = ("max_modes", "max_gb")
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


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


class _Collector:
    def __init__(self, doc: Document):
        self.doc = doc
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, path: tuple, message: str, key: bool = False):
        self.errors.append(self.doc.problem(path, message, key))

    def warn(self, path: tuple, message: str):
        self.warnings.append(self.doc.problem(path, message))


def _label(path: tuple) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")


def _check_keys(c: _Collector, mapping: dict, path: tuple, allowed: tuple, where: str):
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            c.error(path + (key,), f"unknown key '{key}' in {where}; {hint}allowed: {', '.join(allowed)}", key=True)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_setting(c, mode: dict, path, key, default, low, high, unit=""):
    if key not in mode:
        return default
    value = mode[key]
    if not isinstance(value, int) or isinstance(value, bool):
        c.error(path + (key,), f"{_label(path + (key,))}: {value!r} is not a whole number; use e.g. {default}")
        return default
    if not low <= value <= high:
        c.error(path + (key,), f"{_label(path + (key,))}: {value} is out of range; allowed {low} to {high}{unit}")
        return default
    return value


def _float_setting(c, mode: dict, path, key, default, low, high):
    if key not in mode:
        return default
    value = mode[key]
    if not _is_number(value):
        c.error(path + (key,), f"{_label(path + (key,))}: {value!r} is not a number; use e.g. {default}")
        return default
    if not low <= value <= high:
        c.error(path + (key,), f"{_label(path + (key,))}: {value} is out of range; allowed {low} to {high}")
        return default
    return float(value)


def _vae_tiling(c, mode: dict, path) -> tuple[int, int] | None:
    """``vae_tiling: true`` (the defaults) or ``{tile_size, overlap}`` in pixels; false / absent = untiled."""
    key_path = path + ("vae_tiling",)
    value = mode.get("vae_tiling")
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_TILE_SIZE, DEFAULT_TILE_OVERLAP
    if not isinstance(value, dict):
        c.error(key_path, f"{_label(key_path)}: {value!r} is not allowed; write true, false or "
                          f"{{tile_size: {DEFAULT_TILE_SIZE}, overlap: {DEFAULT_TILE_OVERLAP}}} (pixels)")
        return None
    _check_keys(c, value, key_path, VAE_TILING_KEYS, _label(key_path))
    tile = _int_setting(c, value, key_path, "tile_size", DEFAULT_TILE_SIZE, 64, 4096, " pixels")
    overlap = _int_setting(c, value, key_path, "overlap", DEFAULT_TILE_OVERLAP, 0, 4096, " pixels")
    if tile % 32:
        c.error(key_path + ("tile_size",), f"{_label(key_path + ('tile_size',))}: {tile} is not a multiple of 32 "
                                           "(the VAE works in blocks of 8 latent pixels); use e.g. 512")
    if overlap * 4 > tile:
        c.error(key_path + ("overlap",), f"{_label(key_path + ('overlap',))}: {overlap} is more than a quarter of "
                                         f"tile_size {tile}; use at most {tile // 4}")
    return tile, overlap


def _size(c, mode: dict, path) -> tuple[int, int]:
    key_path = path + ("default_size",)
    if "default_size" not in mode:
        return DEFAULT_WIDTH, DEFAULT_HEIGHT
    value = mode["default_size"]
    if isinstance(value, int) and not isinstance(value, bool):
        width = height = value
    else:
        match = _SIZE.match(str(value)) if isinstance(value, str) else None
        if not match:
            c.error(key_path, f"{_label(key_path)}: {value!r} is not a size; write \"WIDTHxHEIGHT\", e.g. \"1024x1024\"")
            return DEFAULT_WIDTH, DEFAULT_HEIGHT
        width, height = int(match.group(1)), int(match.group(2))
    for side, label in ((width, "width"), (height, "height")):
        if not 16 <= side <= MAX_SIDE or side % 8:
            c.error(key_path, f"{_label(key_path)}: {label} {side} is not allowed; each side must be a multiple "
                              f"of 8 from 16 to {MAX_SIDE}")
            return DEFAULT_WIDTH, DEFAULT_HEIGHT
    return width, height


def _json_value(c, value, path: tuple):
    """``value`` as GET /distorch/modes can send it (strict JSON, which the browser parses): YAML
    dates become ISO text; NaN, infinity and binary data are refused where they were written."""
    if isinstance(value, dict):
        return {key: _json_value(c, item, path + (key,)) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_value(c, item, path + (index,)) for index, item in enumerate(value)]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        c.error(path, f"{_label(path)}: {value!r} cannot be sent as JSON; write it in quotes")
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    c.error(path, f"{_label(path)}: a {type(value).__name__} value is not allowed here; write text in quotes")
    return None


def _root(c, top: dict, key: str, base_dir: Path) -> Path | None:
    if top.get(key) is None:
        return None
    value = top[key]
    if not isinstance(value, str) or not value.strip():
        c.error((key,), f"{key}: {value!r} is not a folder path; write an absolute path, or one relative to "
                        "the modes file")
        return None
    try:
        folder = Path(value).expanduser()
        if not folder.is_absolute():
            folder = base_dir / folder
        is_dir = folder.is_dir()
    except (OSError, ValueError, RuntimeError) as exc:  # '~nobody' (RuntimeError), names too long (OSError)
        c.error((key,), f"{key}: {value!r} cannot be a folder path here ({exc}); fix the path")
        return None
    if not is_dir:
        c.error((key,), f"{key}: folder '{value}' does not exist ({folder}); create it or fix the path")
        return None
    return folder


def _loras(c, mode: dict, path, checks: Checks, roots: Roots, base) -> tuple[LoraSpec, ...]:
    if "loras" not in mode or mode["loras"] is None:
        return ()
    items = mode["loras"]
    if not isinstance(items, list):
        c.error(path + ("loras",), f"{_label(path + ('loras',))}: must be a list of LoRA file names or "
                                   "{path, strength, adapter_name} entries")
        return ()
    specs = []
    for index, item in enumerate(items):
        item_path = path + ("loras", index)
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict):
            c.error(item_path, f"{_label(item_path)}: {item!r} is not a LoRA; write a file name or "
                               "{path: ..., strength: ...}")
            continue
        _check_keys(c, item, item_path, LORA_KEYS, f"LoRA entry {_label(item_path)}")
        if not isinstance(item.get("path"), str) or not item["path"].strip():
            c.error(item_path, f"{_label(item_path)}: missing 'path' (the LoRA file, relative to the LoRA folder)")
            continue
        strength = _float_setting(c, item, item_path, "strength", 1.0, -100.0, 100.0)
        strength_clip = _float_setting(c, item, item_path, "strength_clip", strength, -100.0, 100.0)
        adapter = item.get("adapter_name", Path(item["path"]).stem)
        if not isinstance(adapter, str):
            c.error(item_path + ("adapter_name",), f"{_label(item_path + ('adapter_name',))}: must be text")
            adapter = str(adapter)
        try:
            file = str(resolve_lora(item["path"], roots))
        except PathRefused as exc:
            c.error(item_path + ("path",), f"{_label(item_path + ('path',))}: {exc}")
            continue
        skip = None
        if base is not None and checks.lora_width is not None:
            from .header import HeaderError, lora_mismatch
            try:
                skip = lora_mismatch(base, checks.lora_width(file))
            except HeaderError as exc:
                c.error(item_path + ("path",), f"{_label(item_path + ('path',))}: {exc}")
                continue
            if skip:
                c.warn(item_path + ("path",), f"{_label(item_path)}: LoRA '{item['path']}' is {skip}; "
                                              "it will be skipped when the mode loads. Remove it, or pick a "
                                              "LoRA for this model")
        specs.append(LoraSpec(item["path"], file, strength, strength_clip, adapter, skip))
    return tuple(specs)


def _mode(c, name: str, mode, checks: Checks, roots: Roots) -> ModeSpec | None:
    path = ("modes", name)
    if not isinstance(mode, dict):
        c.error(path, f"mode '{name}': must be a mapping with at least 'model: <file>'")
        return None
    _check_keys(c, mode, path, MODE_KEYS, f"mode '{name}'")
    model = mode.get("model")
    model_file = None
    base = None
    if "model" not in mode:
        c.error(path, f"mode '{name}': missing key 'model' (the checkpoint or diffusion model file)", key=True)
    elif not isinstance(model, str) or not model.strip():
        c.error(path + ("model",), f"modes.{name}.model: {model!r} is not a file name")
    else:
        try:
            model_file = str(resolve_model(model, roots))
        except PathRefused as exc:
            c.error(path + ("model",), f"modes.{name}.model: {exc}")
    if model_file is not None and checks.inspect_model is not None:
        from .header import HeaderError
        try:
            base = checks.inspect_model(model_file)
        except HeaderError as exc:
            c.error(path + ("model",), f"modes.{name}.model: {exc}")
        else:
            if base.family is None and (model_file.lower().endswith((".safetensors", ".sft"))
                                        or os.path.isdir(model_file)):
                c.warn(path + ("model",), f"modes.{name}.model: ComfyUI does not recognise the model in "
                                          f"'{model}' from its header; loading may fail")
    width, height = _size(c, mode, path)
    steps = _int_setting(c, mode, path, "default_steps", DEFAULT_STEPS, 1, 10000)
    guidance = _float_setting(c, mode, path, "default_guidance", DEFAULT_GUIDANCE, 0.0, 100.0)
    loras = _loras(c, mode, path, checks, roots, base)
    metadata = mode.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        c.error(path + ("metadata",), f"modes.{name}.metadata: must be a mapping, e.g. {{description: \"...\"}}")
        metadata = {}
    metadata = _json_value(c, metadata, path + ("metadata",))
    text = {}
    vae_tiling = _vae_tiling(c, mode, path)
    for key, default in (("compute_device", "default"), ("allocation", ""), ("weight_dtype", "default"),
                         ("attention", "default")):
        value = mode.get(key, default)
        if value is None:
            value = default
        if not isinstance(value, str):
            c.error(path + (key,), f"modes.{name}.{key}: {value!r} must be text")
            value = default
        text[key] = value.strip()
    if text["weight_dtype"] not in WEIGHT_DTYPES:
        c.error(path + ("weight_dtype",), f"modes.{name}.weight_dtype: '{text['weight_dtype']}' is not allowed; "
                                          f"use one of {', '.join(WEIGHT_DTYPES)}")
    if model_file is not None and os.path.isdir(model_file) and text["weight_dtype"] != "default":
        c.error(path + ("weight_dtype",), f"modes.{name}.weight_dtype: '{text['weight_dtype']}' does not apply to a "
                                          "diffusers folder (ComfyUI's diffusers loader keeps the files' dtype); "
                                          "remove it, or use a single-file model")
    for key, check in (("compute_device", checks.check_device), ("allocation", checks.check_allocation),
                       ("attention", checks.check_attention)):
        if key in mode and text[key]:
            problem = check(text[key], f"modes.{name}.{key}")
            if problem:
                c.error(path + (key,), problem)
    if model_file is None:
        return None
    return ModeSpec(name=name, model=model, model_file=model_file, loras=loras, width=width, height=height,
                    steps=steps, guidance=guidance, compute_device=text["compute_device"] or "default",
                    allocation=text["allocation"], weight_dtype=text["weight_dtype"], vae_tiling=vae_tiling,
                    attention=text["attention"] or "default", base=base.label if base is not None else "unknown", metadata=metadata)


def build_config(doc: Document, checks: Checks) -> ModesConfig:
    """Validate everything; raises ModesFileError listing every error (file, line, column)."""
    c = _Collector(doc)
    top = doc.value
    if top is None:
        raise ModesFileError([doc.problem((), "the file is empty; define at least one mode under 'modes:' "
                                              "(see modes.yaml.example)")])
    if not isinstance(top, dict):
        raise ModesFileError([doc.problem((), "the file must be a mapping with a 'modes:' key "
                                              "(see modes.yaml.example)")])
    _check_keys(c, top, (), TOP_KEYS, "the modes file")
    base_dir = Path(doc.file).resolve().parent
    roots = checks.roots
    model_root = _root(c, top, "model_root", base_dir)
    lora_root = _root(c, top, "lora_root", base_dir)
    roots = Roots(model_root=model_root, lora_root=lora_root, models_dir=roots.models_dir,
                  checkpoint_dirs=roots.checkpoint_dirs, diffusion_dirs=roots.diffusion_dirs,
                  diffusers_dirs=roots.diffusers_dirs, lora_dirs=roots.lora_dirs)
    cache_modes, cache_gb = DEFAULT_CACHE_MODES, DEFAULT_CACHE_GB
    if top.get("cache") is not None:
        if not isinstance(top["cache"], dict):
            c.error(("cache",), "cache: must be a mapping, e.g. {max_modes: 3, max_gb: 24}")
        else:
            _check_keys(c, top["cache"], ("cache",), CACHE_KEYS, "cache")
            cache_modes = _int_setting(c, top["cache"], ("cache",), "max_modes", DEFAULT_CACHE_MODES, 1, 1000)
            cache_gb = _float_setting(c, top["cache"], ("cache",), "max_gb", DEFAULT_CACHE_GB, 0.001, 1 << 20)
    modes: dict[str, ModeSpec] = {}
    raw_modes = top.get("modes")
    if "modes" not in top:
        c.error((), "missing key 'modes': name at least one mode, e.g. modes: {general: {model: x.safetensors}}")
    elif not isinstance(raw_modes, dict) or not raw_modes:
        c.error(("modes",), "modes: must be a mapping of mode names to settings, with at least one mode")
    else:
        for name, mode in raw_modes.items():
            if not name.strip() or name != name.strip():
                c.error(("modes", name), f"mode name {name!r} must not be empty or start / end with spaces",
                        key=True)
                continue
            spec = _mode(c, name, mode, checks, roots)
            if spec is not None:
                modes[name] = spec
    default_mode = top.get("default_mode")
    if default_mode is not None:
        if not isinstance(default_mode, str) or (isinstance(raw_modes, dict) and default_mode not in raw_modes):
            defined = ", ".join(raw_modes) if isinstance(raw_modes, dict) else "none"
            c.error(("default_mode",), f"default_mode: '{default_mode}' is not a mode defined in this file; "
                                       f"defined: {defined}")
    elif isinstance(raw_modes, dict) and raw_modes:
        default_mode = next(iter(raw_modes))
    if c.errors:
        raise ModesFileError(c.errors)
    return ModesConfig(file=doc.file, modes=modes, default_mode=default_mode, cache_max_modes=cache_modes,
                       cache_max_gb=cache_gb, warnings=c.warnings)
