"""Tensor tables of .gguf files for the planner, read from the header only (distorch/logic/gguf_tables.py),
on files written the way ComfyUI-GGUF's tools write them (tools/make_gguf.py)."""
import io
import os
import time

import gguf
import pytest
import torch

import make_gguf
from distorch.logic.gguf_tables import GGUFError, read_table
from distorch.logic.module_sizes import file_modules
from distorch.logic.planner import ModuleInfo

GiB = 2**30

# A slice of an SD1.5 UNet: names and shapes as ComfyUI's UNet has them.
SD1_SHAPES = {
    "input_blocks.0.0.weight": (320, 4, 3, 3), "input_blocks.0.0.bias": (320,),
    "time_embed.0.weight": (1280, 320), "time_embed.0.bias": (1280,),
    "input_blocks.1.0.in_layers.2.weight": (320, 320, 3, 3), "input_blocks.1.0.in_layers.2.bias": (320,),
    "input_blocks.1.1.norm.weight": (320,), "input_blocks.1.1.norm.bias": (320,),
    "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": (320, 320),
    "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    "input_blocks.1.1.transformer_blocks.0.ff.net.2.weight": (320, 1280),
    "input_blocks.1.1.transformer_blocks.0.ff.net.2.bias": (320,),
    "out.2.weight": (4, 320, 3, 3), "out.2.bias": (4,),
}


def sd1_state(prefix=""):
    generator = torch.Generator().manual_seed(0)
    return {prefix + key: torch.randn(shape, generator=generator).to(torch.float16) for key, shape in SD1_SHAPES.items()}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """{qtype: (path, name -> GGML type chosen)} for Q8_0 and Q4_0 files of the slice above."""
    folder = tmp_path_factory.mktemp("gguf")
    return {qtype: (folder / f"slice-{qtype}.gguf", make_gguf.write_unet_gguf(sd1_state(), folder / f"slice-{qtype}.gguf",
                                                                              qtype))
            for qtype in ("Q8_0", "Q4_0")}


def stored_bytes(shape, type_name):
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    count = 1
    for extent in shape:
        count *= extent
    return count // block * size


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_module_bytes_are_the_quantized_sizes_the_file_stores(written, qtype):
    path, chosen = written[qtype]
    table = read_table(path)
    assert table.architecture == "sd1"
    # What the gguf package's own reader says each tensor occupies in the file.
    reference = {t.name: (t.tensor_type.name, int(t.n_bytes), int(t.data_offset)) for t in gguf.GGUFReader(path).tensors}
    assert {t.name: (t.type_name, t.nbytes, table.data_offset + t.offset) for t in table.tensors} == reference
    # The quantizer's choices, as ComfyUI-GGUF's tools make them for sd1.
    assert chosen["time_embed.0.weight"] == chosen["input_blocks.0.0.weight"] == chosen["out.2.weight"] == "F16"
    assert chosen["input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"] == qtype
    assert chosen["input_blocks.1.0.in_layers.2.weight"] == qtype  # a 3x3 conv, quantized as rows of 256
    assert chosen["input_blocks.1.1.transformer_blocks.0.ff.net.2.weight"] == ("Q4_1" if qtype == "Q4_0" else qtype)
    assert chosen["input_blocks.1.1.norm.weight"] == "F16"
    # Shapes come back as ComfyUI sees them (the original shape of reshaped tensors).
    shapes = {t.name: t.shape for t in table.tensors}
    assert shapes == SD1_SHAPES
    modules = {m.name: m for m in table.modules()}
    to_q = "input_blocks.1.1.transformer_blocks.0.attn1.to_q"
    assert modules[to_q] == ModuleInfo(to_q, stored_bytes((320, 320), qtype), "layer")
    ff = "input_blocks.1.1.transformer_blocks.0.ff.net.2"
    assert modules[ff].bytes == stored_bytes((320, 1280), chosen[ff + ".weight"]) + 320 * 2
    assert modules["input_blocks.1.1.norm"] == ModuleInfo("input_blocks.1.1.norm", 2 * 320 * 2, "norm")
    total = sum(m.bytes for m in modules.values())
    assert total == sum(stored_bytes(shape, chosen[name]) for name, shape in SD1_SHAPES.items())
    assert total < (0.7 if qtype == "Q8_0" else 0.5) * sum(2 * torch.Size(s).numel() for s in SD1_SHAPES.values())
    assert file_modules(str(path)) == table.modules()  # what the loaders' header check uses


class CountingFile(io.FileIO):
    """A file that counts the bytes read from the OS (read-ahead included)."""

    read_bytes = 0

    def readinto(self, buffer):
        count = super().readinto(buffer)
        self.read_bytes += count or 0
        return count


def bytes_read(path):
    with CountingFile(path) as raw:
        table = read_table(io.BufferedReader(raw, 1 << 16))
        return table, raw.read_bytes


def test_the_table_is_read_from_the_header_whatever_the_file_size(written, tmp_path):
    small, _ = written["Q8_0"]
    table, count = bytes_read(small)
    assert table.data_offset < count <= table.data_offset + (1 << 16)  # the header and one read-ahead
    # Same kind of table, 60 GiB of tensor data (a sparse file: the data is a hole).
    huge = tmp_path / "huge.gguf"
    size = make_gguf.write_declared(huge, [(f"blocks.{i}.weight", (16384, 16384), "Q8_0") for i in range(224)])
    if os.stat(huge).st_blocks * 512 > 64 << 20:
        pytest.skip(f"{tmp_path} does not keep sparse files; the test would write {size / GiB:.0f} GiB")
    started = time.perf_counter()
    table, count = bytes_read(huge)
    elapsed = time.perf_counter() - started
    assert sum(m.bytes for m in table.modules()) == 224 * stored_bytes((16384, 16384), "Q8_0") > 59 * GiB
    assert count <= table.data_offset + (1 << 16) < 1 << 20
    started = time.perf_counter()
    assert read_table(huge) == table  # the path form reads the same way
    assert max(elapsed, time.perf_counter() - started) < 1.0


def test_names_follow_comfyui_gguf_for_prefixed_and_text_encoder_files(tmp_path):
    prefixed = tmp_path / "prefixed.gguf"
    state = sd1_state("model.diffusion_model.")
    state["first_stage_model.decoder.conv_in.weight"] = torch.zeros(512, 4, 3, 3, dtype=torch.float16)
    make_gguf.write_unet_gguf(state, prefixed, "Q8_0")
    names = [name for name, _ in read_table(prefixed).state_dict_names()]
    assert names == list(SD1_SHAPES)  # prefix dropped, the tensors outside it left out

    t5 = tmp_path / "t5.gguf"
    make_gguf.write_declared(t5, [("enc.blk.0.attn_q.weight", (64, 64), "Q8_0"), ("enc.output_norm.weight", (64,), "F32"),
                                  ("token_embd.weight", (100, 64), "F16")], arch="t5encoder")
    modules = {m.name: m.kind for m in read_table(t5).modules()}
    assert modules == {"encoder.block.0.layer.0.SelfAttention.q": "layer", "encoder.final_layer_norm": "norm",
                       "shared": "layer"}


@pytest.mark.parametrize("data, words", [
    (b"PK\x03\x04 not gguf", ["not a GGUF file"]),
    (b"GGUF\x01\x00\x00\x00" + bytes(16), ["version 1"]),
    (b"GGUF\x03\x00\x00\x00" + (5).to_bytes(8, "little") + (0).to_bytes(8, "little"), ["header ends early"]),
])
def test_damaged_files_are_refused_with_what_is_wrong(tmp_path, data, words):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError) as raised:
        read_table(path)
    for word in words:
        assert word in str(raised.value)


def test_names_match_what_comfyui_gguf_loader_gives_comfyui(comfyui_gguf, written, tmp_path):
    """The real ComfyUI-GGUF loader (in-process) is the reference for the names."""
    path, _ = written["Q4_0"]
    assert [name for name, _ in read_table(path).state_dict_names()] == list(comfyui_gguf.loader.gguf_sd_loader(str(path)))
    prefixed = tmp_path / "prefixed.gguf"
    make_gguf.write_unet_gguf(sd1_state("model.diffusion_model."), prefixed, "Q8_0")
    assert [n for n, _ in read_table(prefixed).state_dict_names()] == list(comfyui_gguf.loader.gguf_sd_loader(str(prefixed)))
    t5 = tmp_path / "t5.gguf"
    make_gguf.write_declared(t5, [("enc.blk.0.attn_q.weight", (64, 64), "Q8_0"), ("enc.blk.0.ffn_gate.weight", (64, 64), "F16"),
                                  ("enc.output_norm.weight", (64,), "F32"), ("token_embd.weight", (100, 64), "F16")],
                             arch="t5encoder")
    assert [n for n, _ in read_table(t5).state_dict_names()] == list(comfyui_gguf.loader.gguf_clip_loader(str(t5)))
