"""Synthetic ``.gguf`` UNets, quantized the way ComfyUI-GGUF's own tools quantize an SD1.5 UNet.

ComfyUI-GGUF makes a quantized UNet in two steps (its ``tools/README.md``): ``convert.py`` writes
an F16 GGUF (architecture ``sd1``; tensors whose last dimension is not a multiple of 256 are
reshaped to rows of 256 and their shape kept in ``comfy.gguf.orig_shape.<name>``), then its patched
``llama-quantize`` quantizes the 2-D weights, except the SD1/SDXL input, output and embedding
layers, which stay F16; for Q4_0 the feed-forward down projections (``ff.net.2``) get Q4_1. This
module redoes both steps on a state dict with the ``gguf`` package, so the files have the tensor
types, shapes and metadata real ones have. Nothing is downloaded.

    python tools/make_gguf.py --src UNET.safetensors --out DIR

Writes ``DIR/distorch-test-unet-Q8_0.gguf`` and ``-Q4_0.gguf`` (skipping files that exist).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

ARCH = "sd1"
QTYPES = ("Q8_0", "Q4_0")
GGUF_FILE = "distorch-test-unet-{qtype}.gguf"

# convert.py: tensors are reshaped to rows of 256 when they have at least this many elements.
REARRANGE_THRESHOLD = 512
ROW = 256
# The patched llama-quantize keeps these SD1 tensors unquantized (name contains / equals).
KEEP_CONTAINING = ("class_embedding.", "time_embedding.", "add_embedding.", "time_embed.", "label_emb.",
                   "conv_in.", "conv_out.")
KEEP_EXACT = ("input_blocks.0.0.weight", "out.2.weight")
FFN_DOWN = ".ff.net.2.weight"


def gguf_file(qtype: str) -> str:
    return GGUF_FILE.format(qtype=qtype)


def stored_layout(key: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], bool]:
    """(shape as convert.py stores the tensor, whether it was reshaped to rows of 256)."""
    count = int(np.prod(shape)) if shape else 1
    if len(shape) > 1 and count >= REARRANGE_THRESHOLD and count % ROW == 0 and shape[-1] % ROW != 0:
        return (count // ROW, ROW), True
    return tuple(shape), False


def quant_type(key: str, stored_shape: tuple[int, ...], target: str, gguf):
    """The type the patched llama-quantize gives one F16 tensor for ``target`` (an ftype name)."""
    types = gguf.GGMLQuantizationType
    if len(stored_shape) != 2 or not key.endswith("weight"):
        return types.F16  # image models: only 2-D weights are quantized
    if any(part in key for part in KEEP_CONTAINING) or key in KEEP_EXACT:
        return types.F16
    chosen = types[target]
    if target == "Q4_0" and key.endswith(FFN_DOWN):
        chosen = types.Q4_1
    block, _ = gguf.GGML_QUANT_SIZES[chosen]
    if stored_shape[-1] % block:
        return types.F16  # rows that do not split into blocks stay F16, as llama-quantize falls back
    return chosen


def write_unet_gguf(state: dict, path: Path, target: str) -> dict[str, str]:
    """Write ``state`` (name -> torch tensor, fp16 or fp32) as an ``sd1`` GGUF quantized to
    ``target`` ("Q8_0", "Q4_0", or "F16" for convert.py's output alone). Returns name -> type name."""
    import gguf

    writer = gguf.GGUFWriter(path=None, arch=ARCH)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{target}"))
    chosen = {}
    for key, tensor in state.items():
        data = tensor.float().numpy() if tensor.dtype.is_floating_point else tensor.numpy()
        shape, reshaped = stored_layout(key, tuple(data.shape))
        if reshaped:
            writer.add_array(f"comfy.gguf.orig_shape.{key}", [int(extent) for extent in data.shape])
        data = data.reshape(shape)
        qtype = quant_type(key, shape, target, gguf) if target != "F16" else gguf.GGMLQuantizationType.F16
        writer.add_tensor(key, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        chosen[key] = qtype.name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    writer.write_header_to_file(path=partial)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.rename(path)
    return chosen


def write_declared(path: Path, tensors, arch: str = ARCH) -> int:
    """A GGUF whose header declares ``tensors`` ((name, torch shape, type name)) and whose data is a
    hole: a sparse file as large as such a model would be, costing no disk, for tests that show a
    reader does not read tensor data (zeros are valid blocks of every type). Returns its size."""
    import gguf

    writer = gguf.GGUFWriter(path=None, arch=arch)
    data_bytes = 0
    for name, shape, type_name in tensors:
        qtype = gguf.GGMLQuantizationType[type_name]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(shape)) // block * size
        writer.add_tensor_info(name, tuple(shape), np.dtype(np.float32), nbytes, raw_dtype=qtype)
        data_bytes += gguf.GGUFWriter.ggml_pad(nbytes, writer.data_alignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    total = gguf.GGUFWriter.ggml_pad(path.stat().st_size, writer.data_alignment) + data_bytes
    os.truncate(path, total)
    return total


def write_missing(src: Path, out: Path, qtypes=QTYPES) -> list[Path]:
    """Write the quantized files of ``src`` (a UNet safetensors) that ``out`` lacks."""
    from safetensors.torch import load_file

    written, state = [], None
    for qtype in qtypes:
        path = out / gguf_file(qtype)
        if path.exists():
            continue
        state = load_file(str(src)) if state is None else state
        counts: dict[str, int] = {}
        for name in write_unet_gguf(state, path, qtype).values():
            counts[name] = counts.get(name, 0) + 1
        print(f"[make_gguf] wrote {path} ({path.stat().st_size / 2**20:.1f} MiB; "
              f"{', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})", flush=True)
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="UNet safetensors file (SD1.5 keys)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the .gguf files into")
    args = parser.parse_args(argv)
    write_missing(args.src, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
