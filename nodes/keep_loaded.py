"""``keep_loaded = on``: the loader's outputs are held by the pack and reused.

Wraps each DisTorch loader's function (in place, once): when a model with the same inputs and the
same file (size, modification time) is already held, it is returned as is, so a prompt after
"Free model and node cache" gets the loaded model without reading the file again. With
``keep_loaded = off`` nothing is held and the model lives as long as ComfyUI's node cache keeps it.

What the pack holds here is the one record of keep_loaded: a model is kept exactly while its
loader's outputs are retained (``MemoryControl.is_kept``); the unload rule, the memory report and
the panel all ask that record.

Each loader node owns what it holds: when it runs again with other inputs, or with keep_loaded
off, the copy it held for its old inputs is released before anything else loads. A node is known
as ComfyUI knows it, by its class and its id in the graph (read from the host's executing-node
context; a hidden UNIQUE_ID input would also give it, but would stop ComfyUI from sharing one
load between two identical loader nodes). Where the host has no such context, by the node object
ComfyUI keeps for it (reused from prompt to prompt until "Free model and node cache").
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import time
import uuid

import folder_paths

from .. import device_utils
from ..model_management_mgpu import LOADED_AT_KEY, patchers_in
from .bound import runtime_of

log = logging.getLogger("distorch.keep_loaded")
WRAPPED_MARKER = "__distorch_keep_loaded__"
# Inputs that name a file (or a diffusers folder), and the ComfyUI folder they are looked up in.
# A loader class whose input names another folder says so in its FILE_FOLDERS (e.g. a CLIP vision
# loader's clip_name is in clip_vision); every file input of every loader must be here or there.
FILE_INPUTS = {"unet_name": "diffusion_models", "clip_name": "text_encoders", "clip_name1": "text_encoders",
               "clip_name2": "text_encoders", "clip_name3": "text_encoders", "clip_name4": "text_encoders",
               "vae_name": "vae", "ckpt_name": "checkpoints", "control_net_name": "controlnet",
               "model_path": "diffusers"}


def _stat_identity(path: str) -> tuple:
    try:
        stat = os.stat(path)
    except OSError:
        return (path, None, None)
    return (path, stat.st_size, stat.st_mtime_ns)


def _folder_path(folder: str, name: str) -> str | None:
    for base in folder_paths.get_folder_paths(folder):
        candidate = os.path.join(base, name)
        if os.path.isdir(candidate):
            return candidate
    return None


def file_identity(folder: str, name) -> tuple:
    """(path, size, modification time) of the file an input names; for a diffusers folder, that of
    every file in it (a changed weight or config anywhere in the folder is another load)."""
    if not isinstance(name, str):
        return (None, None, None)
    path = folder_paths.get_full_path(folder, name)
    if path is not None and os.path.isfile(path):
        return _stat_identity(path)
    directory = _folder_path(folder, name) if path is None else path
    if directory is None:
        return (path, None, None)
    files = sorted(os.path.join(root, entry) for root, _, entries in os.walk(directory) for entry in entries)
    return (directory, tuple(_stat_identity(file) for file in files))


def retention_key(node_class: str, inputs: dict, folders: dict | None = None) -> tuple:
    """What makes two loads the same: the loader, its inputs but keep_loaded, and the files
    (``folders``: the loader's own input -> folder names, over FILE_INPUTS)."""
    file_inputs = {**FILE_INPUTS, **(folders or {})}
    parts = []
    for name in sorted(inputs):
        if name == "keep_loaded":
            continue
        value = inputs[name]
        parts.append((name, value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)))
        if name in file_inputs:
            parts.append((name + ":file", file_identity(file_inputs[name], value)))
    return node_class, tuple(parts)


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
        key = retention_key(type(self).__name__, {**defaults, **inputs}, getattr(self, "FILE_FOLDERS", None))
        held = control.retained_outputs(key, owner if keep else None)
        if held is not None:
            if not keep:  # no longer retained, so the next unload flags it
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
