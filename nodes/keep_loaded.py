"""``keep_loaded = on``: the loader's outputs are held by the pack and reused.

Wraps each DisTorch loader's function (in place, once): when a model with the same inputs and the
same file (size, modification time) is already held, it is returned as is, so a prompt after
"Free model and node cache" gets the loaded model without reading the file again. With
``keep_loaded = off`` nothing is held and the model lives as long as ComfyUI's node cache keeps it.

Each loader node owns what it holds: when it runs again with other inputs, or with keep_loaded
off, the copy it held for its old inputs is released before anything else loads. A node is known
as ComfyUI knows it, by its class and its id in the graph (read from the host's executing-node
context; a hidden UNIQUE_ID input would also give it, but would stop ComfyUI from sharing one
load between two identical loader nodes). Where the host has no such context, by the node object
ComfyUI keeps for it (reused from prompt to prompt until "Free model and node cache").
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import time
import uuid

import folder_paths

from .. import device_utils
from ..distorch.placement import attach, placement_of
from ..model_management_mgpu import LOADED_AT_KEY, patchers_in
from .bound import runtime_of

log = logging.getLogger("distorch.keep_loaded")
WRAPPED_MARKER = "__distorch_keep_loaded__"
# Inputs that name a file, and the folder they are looked up in.
FILE_INPUTS = {"unet_name": "diffusion_models", "clip_name": "text_encoders", "clip_name1": "text_encoders",
               "clip_name2": "text_encoders", "vae_name": "vae", "ckpt_name": "checkpoints"}


def _file_identity(folder: str, name) -> tuple:
    path = folder_paths.get_full_path(folder, name) if isinstance(name, str) else None
    try:
        stat = os.stat(path) if path else None
    except OSError:
        stat = None
    return (path, stat.st_size, stat.st_mtime_ns) if stat else (path, None, None)


def retention_key(node_class: str, inputs: dict) -> tuple:
    """What makes two loads the same: the loader, its inputs but keep_loaded, and the files."""
    parts = []
    for name in sorted(inputs):
        if name == "keep_loaded":
            continue
        value = inputs[name]
        parts.append((name, value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)))
        if name in FILE_INPUTS:
            parts.append((name + ":file", _file_identity(FILE_INPUTS[name], value)))
    return node_class, tuple(parts)


def _set_keep_loaded(outputs, keep_loaded: bool) -> None:
    for patcher in patchers_in(outputs):
        placement = placement_of(patcher)
        if placement is not None and placement.keep_loaded != keep_loaded:
            attach(patcher, dataclasses.replace(placement, keep_loaded=keep_loaded))


OWNER_ATTRIBUTE = "_distorch_owner"


def _owner_of(node) -> str:
    """A name for the loader node ``node`` (ComfyUI's object for it) that is running now."""
    try:
        from comfy_execution.utils import get_executing_context

        context = get_executing_context()
    except ImportError:  # hosts before the executing-node context
        context = None
    if context is not None and context.node_id is not None:
        return f"{type(node).__name__} node {context.node_id}"
    owner = node.__dict__.get(OWNER_ATTRIBUTE)
    if owner is None:
        owner = f"{type(node).__name__} object {uuid.uuid4().hex[:6]}"
        node.__dict__[OWNER_ATTRIBUTE] = owner
    return owner


def honour_keep_loaded(cls):
    """Wrap ``cls.FUNCTION`` so keep_loaded outputs are held and reused. Idempotent."""
    function_name = cls.FUNCTION
    original = getattr(cls, function_name)
    if getattr(original, WRAPPED_MARKER, False):
        return cls

    signature = inspect.signature(original)
    defaults = {name: p.default for name, p in signature.parameters.items()
                if p.default is not inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    @functools.wraps(original)
    def load(self, *args, **inputs):
        if args:  # ComfyUI passes inputs by name; direct Python callers may not
            inputs = dict(signature.bind(self, *args, **inputs).arguments)
            inputs.pop(next(iter(signature.parameters)))
        owner = _owner_of(self)
        runtime = runtime_of(self)
        control = runtime.memory
        keep = bool(inputs.get("keep_loaded", False))
        if control is None:  # memory control is off: the flag is only recorded
            return original(self, **inputs)
        # Optional inputs left out (an API prompt from a saved workflow) and sent with their
        # defaults (the UI) are the same load.
        key = retention_key(type(self).__name__, {**defaults, **inputs})
        held = control.retained_outputs(key, owner if keep else None)
        if held is not None:
            _set_keep_loaded(held, keep)
            if not keep:
                control.retained.pop(key)
                control.disown(owner)
            log.info("%s: reusing the loaded model (keep_loaded), no file read", type(self).__name__)
            return held
        # What this node kept for its old inputs can no longer be reached from it: let it go
        # before loading the new one (a 12 GB model must not be held twice).
        control.disown(owner)
        with device_utils.logged_change(f"{type(self).__name__} load memory change", log, nvml=runtime.readings):
            outputs = original(self, **inputs)
        now = time.time()
        for patcher in patchers_in(outputs):
            patcher.attachments[LOADED_AT_KEY] = now
        if keep:
            control.retain(key, outputs, owner)
        return outputs

    setattr(load, WRAPPED_MARKER, True)
    setattr(cls, function_name, load)
    return cls
