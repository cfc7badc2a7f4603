"""The model files behind each loaded model, whoever loaded it (core loaders, DisTorch, ComfyUI-GGUF).

``GET /internal/memory`` names a core-loaded model by its class (``BaseModel``): routing a prompt to
the server that holds its files needs the files. The loader nodes' functions are wrapped, through
the patch registry, to note for each model object they return the identity of the files their
inputs named (folder, name, size, modification time). What a loader returns and does is unchanged:
the wrapper calls it and reads its result.

Records are keyed weakly by the torch module a ModelPatcher wraps, which every clone shares, so a
record goes when the host lets the model go. LoRA loaders return a clone of their input with
patches: their files are noted on that clone (the patcher), not on the shared module.
"""
from __future__ import annotations

import inspect
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Mapping

from ..logic.residency import LOADER_FILE_INPUTS, FileIdentity

log = logging.getLogger("distorch.residency")

# Loaders whose output is their input model with patches added: noted on the returned patcher.
PATCHING_LOADERS = frozenset({"LoraLoader", "LoraLoaderModelOnly"})


def file_identity(folder: str, name: str) -> FileIdentity | None:
    """The identity of ``name`` in ComfyUI's ``folder`` on this server (None if it is not there)."""
    import folder_paths

    try:
        path = folder_paths.get_full_path(folder, name)
    except Exception:
        path = None
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return FileIdentity(folder, name, int(info.st_size), int(info.st_mtime_ns))


def patchers_in(outputs) -> list:
    """The ModelPatchers inside a loader's outputs (MODEL is one; CLIP and VAE carry one)."""
    found = []
    for item in outputs or ():
        patcher = item if hasattr(item, "attachments") else getattr(item, "patcher", None)
        if patcher is not None and hasattr(patcher, "attachments"):
            found.append(patcher)
    return found


class ModelFiles:
    """Which files each model came from: module -> files (base loads), patcher -> files (LoRAs)."""

    def __init__(self):
        self._by_module: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._by_patcher: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.loads: dict[tuple[str, str], int] = {}  # (folder, name) -> times a loader read it here

    def note(self, class_name: str, inputs: Mapping, outputs) -> None:
        files = [identity for folder, name in requested_files(class_name, inputs)
                 if (identity := file_identity(folder, name)) is not None]
        if not files:
            return
        with self._lock:
            for identity in files:
                key = (identity.folder, identity.name)
                self.loads[key] = self.loads.get(key, 0) + 1
            for patcher in patchers_in(outputs if isinstance(outputs, (tuple, list)) else ()):
                if getattr(patcher, "model", None) is None:
                    continue
                try:
                    if class_name in PATCHING_LOADERS:
                        self._by_patcher[patcher] = tuple(dict.fromkeys((*self._by_patcher.get(patcher, ()), *files)))
                    else:
                        self._by_module[patcher.model] = tuple(files)
                except TypeError:  # not weakly referenceable: nothing to note it on
                    continue

    def files_of(self, patcher) -> tuple[FileIdentity, ...]:
        with self._lock:
            base = self._by_module.get(getattr(patcher, "model", None), ()) if getattr(patcher, "model", None) is not None else ()
            extra = self._by_patcher.get(patcher, ())
        return tuple(dict.fromkeys((*base, *extra)))

    def alive_modules(self) -> list:
        """The modules with a record that the host still keeps (e.g. in its node output cache)."""
        with self._lock:
            return list(self._by_module.keys())

    def files_of_module(self, module) -> tuple[FileIdentity, ...]:
        with self._lock:
            return self._by_module.get(module, ())


def requested_files(class_name: str, inputs: Mapping) -> list[tuple[str, str]]:
    """(folder, name) of the files a loader node's inputs name."""
    found = []
    for input_name, folder in LOADER_FILE_INPUTS.get(class_name, {}).items():
        value = inputs.get(input_name)
        if isinstance(value, str) and value:
            found.append((folder, value))
    return found


def install_loader_notes(registry, files: ModelFiles, node_classes: Mapping[str, type]) -> list[str]:
    """Wrap the function of every known loader class present in ``node_classes`` (the host's
    NODE_CLASS_MAPPINGS) so that what it returns is noted in ``files``. Returns the classes wrapped."""
    wrapped = []
    for class_name in LOADER_FILE_INPUTS:
        cls = node_classes.get(class_name)
        function_name = getattr(cls, "FUNCTION", None) if cls is not None else None
        if not isinstance(function_name, str):
            continue
        if not inspect.isfunction(inspect.getattr_static(cls, function_name, None)):
            log.debug("residency: %s.%s is not a plain method; its loads are not noted", class_name, function_name)
            continue
        if registry.patch_for(cls, function_name) is not None:
            continue
        registry.wrap(cls, function_name, _noting(class_name, files, function_name, cls),
                      label=f"residency: {class_name}.{function_name}")
        wrapped.append(class_name)
    return wrapped


def _noting(class_name: str, files: ModelFiles, function_name: str, cls: type):
    signature = inspect.signature(inspect.getattr_static(cls, function_name))

    def behaviour(original, *args, **kwargs):
        outputs = original(*args, **kwargs)
        try:
            bound = signature.bind_partial(*args, **kwargs).arguments
            files.note(class_name, bound, outputs)
        except Exception as exc:  # noting must never break a load
            log.debug("residency: noting the files of %s failed: %s", class_name, exc)
        return outputs

    return behaviour


def placement_files(placement) -> tuple[FileIdentity, ...]:
    """The files of a pack-loaded model from its placement record (modes load without a node)."""
    if placement is None:
        return ()
    folders = LOADER_FILE_INPUTS.get(placement.loader, {})
    found = []
    for folder in dict.fromkeys(folders.values()):
        for name in _names(placement.source):
            identity = file_identity(folder, name)
            if identity is not None:
                found.append(identity)
    return tuple(dict.fromkeys(found))


def _names(source: str) -> Iterable[str]:
    """A placement's source names one file, or several joined with " + " (dual text encoders)."""
    return [part.strip() for part in str(source or "").split(" + ") if part.strip()]
