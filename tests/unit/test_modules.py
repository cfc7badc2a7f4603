"""Module lists for the planner from safetensors headers (pure) and the floor a compute device needs."""
import torch
from safetensors.torch import save_file

from distorch.logic.module_sizes import header_tensors, kind_from_name, modules_from_tensors, weights_dtype
from distorch.logic.planner import ModuleInfo, compute_floor

MiB = 2**20


def test_tensors_group_by_module_in_file_order_with_prefix_and_dtype():
    tensors = [
        ("model.diffusion_model.blocks.0.weight", "F16", (1024, 1024)),
        ("model.diffusion_model.blocks.0.bias", "F16", (1024,)),
        ("model.diffusion_model.norm_out.weight", "F32", (1024,)),
        ("model.diffusion_model.token_embedding.weight", "BF16", (10, 4)),
        ("first_stage_model.decoder.conv_in.weight", "F16", (512, 4, 3, 3)),
    ]
    modules = modules_from_tensors(tensors, prefix="model.diffusion_model.")
    assert modules == [ModuleInfo("blocks.0", 2 * (1024 * 1024 + 1024), "layer"),
                       ModuleInfo("norm_out", 4 * 1024, "norm"),
                       ModuleInfo("token_embedding", 2 * 40, "embedding")]
    fp8 = modules_from_tensors(tensors, prefix="model.diffusion_model.", bytes_per_element=1)
    assert fp8[0].bytes == 1024 * 1024 + 1024


def test_weights_dtype_is_the_dtype_of_most_elements_under_the_prefix_as_comfyui_reads_it():
    tensors = [("model.diffusion_model.a.weight", "F16", (100, 10)), ("model.diffusion_model.a.bias", "F32", (100,)),
               ("first_stage_model.b.weight", "F32", (10000,))]
    assert weights_dtype(tensors, "model.diffusion_model.") == ("F16", 1100)  # the VAE's fp32 is not counted
    assert weights_dtype(tensors) == ("F32", 11100)
    assert weights_dtype(tensors, "nothing.") == (None, 0)


def test_kind_from_name():
    assert kind_from_name("encoder.layers.0.layer_norm1") == "norm"
    assert kind_from_name("input_blocks.1.1.norm") == "norm"
    assert kind_from_name("embeddings.position_embedding") == "embedding"
    assert kind_from_name("input_blocks.1.0.emb_layers.1") == "layer"  # 'emb' alone is not an embedding
    assert kind_from_name("transformer_blocks.0.attn1.to_q") == "layer"


def test_header_tensors_read_names_dtypes_and_shapes(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": torch.zeros(3, 5, dtype=torch.float16), "a.bias": torch.zeros(3)}, str(path))
    assert sorted(header_tensors(str(path))) == [("a.bias", "F32", (3,)), ("a.weight", "F16", (3, 5))]
    assert modules_from_tensors(header_tensors(str(path))) == [ModuleInfo("a", 12 + 30, "layer")]


def test_compute_floor_counts_pinned_modules_and_the_largest_movable_one():
    modules = [ModuleInfo("emb", 50 * MiB, "embedding"), ModuleInfo("tiny", 1000),
               ModuleInfo("fixed", 3 * MiB, "fixed"), ModuleInfo("a", 10 * MiB), ModuleInfo("b", 20 * MiB)]
    assert compute_floor(modules) == (50 * MiB + 1000 + 3 * MiB, 20 * MiB)
    assert compute_floor([]) == (0, 0)


def test_modes_reads_the_one_dtype_table():
    """modes/ keeps no dtype table of its own: its header reader and its schema use distorch/logic/dtypes.py
    (also when modes/ is imported on its own, as these tests do)."""
    from distorch.logic import dtypes
    from modes import detection, header, schema

    assert schema.WEIGHT_DTYPES == tuple(dtypes.WEIGHT_DTYPES)
    assert detection.TORCH_NAMES is dtypes.TORCH_NAMES
    assert not [name for module in (header, detection) for name in vars(module)
                if "DTYPE" in name.upper() and name != "TORCH_NAMES"]
