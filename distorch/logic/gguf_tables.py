"""The planner's module list for a ``.gguf`` file (the format ComfyUI-GGUF loads), from its header
only: no tensor data is read, so a preview of a 20 GB model costs what a 20 MB one does.

Sizes are the bytes the file stores (quantized). ComfyUI-GGUF keeps quantized weights quantized in
memory and dequantizes one layer at a time when it runs, so these are the bytes a placement moves.
Key names are mapped the way ComfyUI-GGUF's loader maps them (its ``loader.py``): the
``model.diffusion_model.`` prefix is dropped when present (image models such as ``sd1``), and text
encoders in llama.cpp naming (``t5``, ``llama``, ``qwen*``) get their original names back.

The header is read with plain sequential reads rather than ``gguf.GGUFReader``: the reader maps
the file without touching tensor data too, but it parses every metadata value into numpy arrays,
and text encoders carry their tokenizer (150 000+ strings) in the metadata: measured 5.7 to 8.5 s
for such a file, against 0.13 s here, where values nobody needs are skipped. The ``gguf`` package still
provides the type table (block and byte sizes per quantization type), so new types come with it.
Pure Python (no ComfyUI import).
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from .planner import ModuleInfo, kind_from_name
from .errors import shown_by_name

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
PREFIX = "model.diffusion_model."  # ComfyUI-GGUF strips it when any tensor has it
ORIG_SHAPE = "comfy.gguf.orig_shape."  # ComfyUI-GGUF's record of a tensor's shape before reshaping
READ_BUFFER = 1 << 16
MAX_NAME = 1 << 16  # no key or tensor name is this long: a larger length means a damaged header

# Metadata value types (GGUF spec): type id -> struct code of a scalar; 8 = string, 9 = array.
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9

# Text encoders in llama.cpp naming -> the names ComfyUI's text encoders use, applied in order as
# substring replacements (ComfyUI-GGUF's gguf_clip_loader does the same per architecture).
T5_NAMES = (
    ("enc.", "encoder."), (".blk.", ".block."), ("token_embd", "shared"), ("output_norm", "final_layer_norm"),
    ("attn_q", "layer.0.SelfAttention.q"), ("attn_k", "layer.0.SelfAttention.k"),
    ("attn_v", "layer.0.SelfAttention.v"), ("attn_o", "layer.0.SelfAttention.o"),
    ("attn_norm", "layer.0.layer_norm"), ("attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"),
    ("ffn_up", "layer.1.DenseReluDense.wi_1"), ("ffn_down", "layer.1.DenseReluDense.wo"),
    ("ffn_gate", "layer.1.DenseReluDense.wi_0"), ("ffn_norm", "layer.1.layer_norm"),
)
LLAMA_NAMES = (
    ("blk.", "model.layers."), ("attn_norm", "input_layernorm"), ("attn_q_norm.", "self_attn.q_norm."),
    ("attn_k_norm.", "self_attn.k_norm."), ("attn_v_norm.", "self_attn.v_norm."), ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
    ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"), ("ffn_gate", "mlp.gate_proj"),
    ("ffn_norm", "post_attention_layernorm"), ("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"),
    ("output.weight", "lm_head.weight"),
)
NAME_MAPS = {"t5": T5_NAMES, "t5encoder": T5_NAMES, "llama": LLAMA_NAMES, "qwen2vl": LLAMA_NAMES,
             "qwen3": LLAMA_NAMES, "qwen3vl": LLAMA_NAMES}


@shown_by_name
class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands; the message says what and where."""


@shown_by_name
class GGUFUnavailable(GGUFError):
    """The 'gguf' package (the type table) is not installed."""


@dataclass(frozen=True)
class GGUFTensor:
    name: str                 # as stored in the file
    type_name: str            # GGML type: "F16", "Q8_0", ...
    shape: tuple[int, ...]    # torch order (outermost first); the original shape where the file records one
    nbytes: int               # bytes the file stores for it
    offset: int               # from the start of the data section


@dataclass(frozen=True)
class GGUFTable:
    version: int
    architecture: str | None
    alignment: int
    data_offset: int          # where tensor data starts (the header is everything before)
    tensors: tuple[GGUFTensor, ...]

    def state_dict_names(self) -> list[tuple[str, GGUFTensor]]:
        """(name as ComfyUI-GGUF's loader gives it to ComfyUI, tensor), in file order."""
        names = [t.name for t in self.tensors]
        found = list(zip(names, self.tensors))
        if any(name.startswith(PREFIX) for name in names):
            found = [(name[len(PREFIX):], t) for name, t in found if name.startswith(PREFIX)]
        for old, new in NAME_MAPS.get(self.architecture or "", ()):
            found = [(name.replace(old, new), t) for name, t in found]
        return found

    def modules(self) -> list[ModuleInfo]:
        """The planner's modules (the name without its last part), bytes as stored, in file order."""
        sizes: dict[str, int] = {}
        for name, tensor in self.state_dict_names():
            module = name.rsplit(".", 1)[0] if "." in name else name
            sizes[module] = sizes.get(module, 0) + tensor.nbytes
        return [ModuleInfo(name, size, kind_from_name(name)) for name, size in sizes.items()]


def quant_sizes() -> dict[int, tuple[str, int, int]]:
    """GGML type id -> (name, elements per block, bytes per block), from the ``gguf`` package."""
    try:
        import gguf
    except ImportError:
        raise GGUFUnavailable("reading .gguf files needs the 'gguf' package (ComfyUI-GGUF installs it): "
                        "pip install gguf") from None
    return {int(kind): (kind.name, block, size) for kind, (block, size) in gguf.GGML_QUANT_SIZES.items()}


class _Header:
    """Sequential reads of a GGUF header with the file's byte order."""

    def __init__(self, stream: BinaryIO, order: str):
        self.stream, self.order = stream, order

    def exact(self, count: int) -> bytes:
        data = self.stream.read(count)
        if len(data) != count:
            raise GGUFError(f"the header ends early (wanted {count} bytes at offset {self.stream.tell() - len(data)})")
        return data

    def scalar(self, code: str):
        return struct.unpack(self.order + code, self.exact(struct.calcsize(code)))[0]

    def string(self) -> str:
        length = self.scalar("Q")
        if length > MAX_NAME:
            raise GGUFError(f"a {length}-byte name at offset {self.stream.tell() - 8}: the header is damaged")
        return self.exact(length).decode("utf-8", errors="replace")

    def skip(self, count: int) -> None:
        self.stream.seek(count, io.SEEK_CUR)

    def value(self, kind: int, keep: bool):
        """A metadata value; values not kept are skipped (seeked over), not parsed."""
        if kind in SCALARS:
            if keep:
                return self.scalar(SCALARS[kind])
            self.skip(struct.calcsize(SCALARS[kind]))
            return None
        if kind == STRING:
            if keep:
                return self.string()
            self.skip(self.scalar("Q"))
            return None
        if kind == ARRAY:
            item, count = self.scalar("I"), self.scalar("Q")
            if item in SCALARS:
                width = struct.calcsize(SCALARS[item])
                if not keep:
                    self.skip(width * count)
                    return None
                return list(struct.unpack(f"{self.order}{count}{SCALARS[item]}", self.exact(width * count)))
            values = [self.value(item, keep) for _ in range(count)]
            return values if keep else None
        raise GGUFError(f"unknown metadata value type {kind} at offset {self.stream.tell() - 4}")


def read_table(source: str | os.PathLike | BinaryIO) -> GGUFTable:
    """The tensor table of a GGUF file (a path or a binary file positioned at its start), read
    from the header: nothing past the header is read. Raises GGUFError for what is not GGUF."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb", buffering=READ_BUFFER) as stream:
            return _read(stream)
    return _read(source)


def _read(stream: BinaryIO) -> GGUFTable:
    start = stream.tell()
    if stream.read(4) != MAGIC:
        raise GGUFError("not a GGUF file (it does not start with 'GGUF')")
    raw_version = stream.read(4)
    if len(raw_version) != 4:
        raise GGUFError("the header ends early (wanted its version at offset 4)")
    order = "<"
    version = struct.unpack("<I", raw_version)[0]
    if version & 0xFFFF == 0 and version:  # written on a big-endian machine
        order, version = ">", struct.unpack(">I", raw_version)[0]
    if version < 2:
        raise GGUFError(f"GGUF version {version} is not supported (version 2 or later; convert the file again)")
    header = _Header(stream, order)
    tensor_count, kv_count = header.scalar("Q"), header.scalar("Q")
    architecture, alignment, orig_shapes = None, DEFAULT_ALIGNMENT, {}
    for _ in range(kv_count):
        key = header.string()
        kind = header.scalar("I")
        wanted = key in ("general.architecture", "general.alignment") or key.startswith(ORIG_SHAPE)
        value = header.value(kind, wanted)
        if key == "general.architecture" and isinstance(value, str):
            architecture = value
        elif key == "general.alignment" and isinstance(value, int) and value > 0:
            alignment = value
        elif key.startswith(ORIG_SHAPE) and isinstance(value, list):
            orig_shapes[key[len(ORIG_SHAPE):]] = tuple(int(v) for v in value)
    types = quant_sizes()
    tensors = []
    for _ in range(tensor_count):
        name = header.string()
        dims = [header.scalar("Q") for _ in range(header.scalar("I"))]
        type_id, offset = header.scalar("I"), header.scalar("Q")
        if type_id not in types:
            raise GGUFError(f"tensor {name!r} has GGML type {type_id}, unknown to the installed 'gguf' package: "
                            "pip install -U gguf")
        type_name, block, size = types[type_id]
        count = 1
        for extent in dims:
            count *= extent
        if count % block:
            raise GGUFError(f"tensor {name!r}: {count} elements do not fill whole {type_name} blocks of {block}")
        shape = orig_shapes.get(name, tuple(reversed(dims)))  # GGUF lists the innermost dimension first
        tensors.append(GGUFTensor(name, type_name, shape, count // block * size, offset))
    header_end = stream.tell() - start
    data_offset = -(-header_end // alignment) * alignment
    return GGUFTable(version, architecture, alignment, data_offset, tuple(tensors))


def gguf_modules(path: str | os.PathLike) -> list[ModuleInfo]:
    """The planner's module list for a .gguf file (header only)."""
    return read_table(path).modules()
