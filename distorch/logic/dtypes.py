"""The one dtype table: safetensors header dtypes (bytes per element, torch name) and the
``weight_dtype`` choices of ComfyUI's diffusion-model loader (what a model's weights are stored in
once loaded). Pure: torch names are strings, resolved by callers that have torch."""
from __future__ import annotations

# safetensors header name -> (torch dtype name, bytes per element)
SAFETENSORS = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1), "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
}
BYTES = {name: size for name, (_, size) in SAFETENSORS.items()}
TORCH_NAMES = {name: torch_name for name, (torch_name, _) in SAFETENSORS.items()}
TORCH_BYTES = {torch_name: size for torch_name, size in SAFETENSORS.values()}  # "float32" -> 4
FLOATS = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")

# the diffusion-model loader's weight_dtype -> (torch dtype name, fp8 fast matmuls), None = the file's own
WEIGHT_DTYPES = {
    "default": None,
    "fp8_e4m3fn": ("float8_e4m3fn", False),
    "fp8_e4m3fn_fast": ("float8_e4m3fn", True),
    "fp8_e5m2": ("float8_e5m2", False),
}
WEIGHT_DTYPE_BYTES = {name: 1 for name, stored in WEIGHT_DTYPES.items() if stored is not None}
