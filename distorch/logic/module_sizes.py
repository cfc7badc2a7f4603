"""The planner's input: a model's placeable modules (name, bytes, kind), from a loaded model or
from a file's header (safetensors here, .gguf in gguf_tables.py; no weights read).

A placeable module is a module holding parameters of its own and none in its children: the unit
ComfyUI loads or offloads as a whole. Kinds: ``embedding`` and ``norm`` stay with the compute
device (see planner.py); ``fixed`` is a module the host cannot cast per forward (no
``comfy_cast_weights``), so it must stay there too; everything else is a ``layer``.
"""
from __future__ import annotations

from collections.abc import Iterable

from .dtypes import BYTES as DTYPE_BYTES
from .gguf_tables import gguf_modules
from .planner import ModuleInfo, kind_from_name



def kind_of_module(module) -> str:
    name = type(module).__name__
    if "Embedding" in name:
        return "embedding"
    if "Norm" in name:
        return "norm"
    if not hasattr(module, "comfy_cast_weights"):
        return "fixed"
    return "layer"


def module_bytes(module) -> int:
    """Bytes of a module's own state (parameters and buffers), as the host counts them."""
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def placeable_modules(model) -> list[tuple[str, object]]:
    """(name, module) for each module with parameters of its own and none in its children,
    in model order."""
    found = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if sum(1 for _ in module.parameters(recurse=True)) != len(own):
            continue  # parameters in children too: not a unit the host moves as a whole
        found.append((name, module))
    return found


def modules_of(model) -> list[ModuleInfo]:
    """The planner's module list for a loaded torch model."""
    return [ModuleInfo(name, module_bytes(module), kind_of_module(module))
            for name, module in placeable_modules(model)]


def modules_from_tensors(tensors: Iterable[tuple[str, str, tuple[int, ...]]], prefix: str = "",
                         bytes_per_element: int | None = None) -> list[ModuleInfo]:
    """Group (tensor name, dtype, shape) by module (the name without its last part), in file
    order. Only names under ``prefix`` count (and lose it). ``bytes_per_element`` overrides the
    file's dtype (the dtype the weights will be stored in, when known)."""
    sizes: dict[str, int] = {}
    for key, dtype, shape in tensors:
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        module = key.rsplit(".", 1)[0] if "." in key else key
        count = 1
        for extent in shape:
            count *= int(extent)
        width = bytes_per_element or DTYPE_BYTES.get(str(dtype).upper(), 4)
        sizes[module] = sizes.get(module, 0) + count * width
    return [ModuleInfo(name, size, kind_from_name(name)) for name, size in sizes.items()]


def weights_dtype(tensors: Iterable[tuple[str, str, tuple[int, ...]]], prefix: str = "") -> tuple[str | None, int]:
    """The dtype holding most elements under ``prefix`` (a header name, "F16"; None when nothing
    is there) and the element count under ``prefix``: what ComfyUI's loader reads from a state dict
    (``comfy.utils.weight_dtype``, ``calculate_parameters``) to choose the dtype it stores in."""
    counts: dict[str, int] = {}
    for key, dtype, shape in tensors:
        if not key.startswith(prefix):
            continue
        count = 1
        for extent in shape:
            count *= int(extent)
        counts[str(dtype).upper()] = counts.get(str(dtype).upper(), 0) + count
    return (max(counts, key=counts.get) if counts else None), sum(counts.values())


def header_tensors(path: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype, shape) of every tensor in a safetensors file, from its header only
    (``safe_open`` slices: no tensor data is read)."""
    from safetensors import safe_open

    found = []
    with safe_open(path, framework="pt") as handle:
        for key in handle.keys():
            piece = handle.get_slice(key)
            found.append((key, piece.get_dtype(), tuple(piece.get_shape())))
    return found


def file_modules(path: str, prefix: str = "", bytes_per_element: int | None = None) -> list[ModuleInfo]:
    """The planner's modules from a model file's header: safetensors, or .gguf (sizes as the file
    stores them, quantized; its names as ComfyUI-GGUF's loader gives them, so ``prefix`` and
    ``bytes_per_element`` do not apply)."""
    if str(path).lower().endswith(".gguf"):
        return gguf_modules(path)
    return modules_from_tensors(header_tensors(path), prefix, bytes_per_element)
