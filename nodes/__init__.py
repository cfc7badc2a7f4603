"""Node classes ComfyUI sees. Thin: parse inputs, call the engine, return outputs."""
from .diffusers import DIFFUSERS_DISPLAY_NAMES, DIFFUSERS_NODES
from .gguf import gguf_nodes
from .keep_loaded import honour_keep_loaded
from .loaders import LOADER_DISPLAY_NAMES, LOADER_NODES
from .modes import MODE_DISPLAY_NAMES, MODE_NODES
from .multigpu import compat_nodes
from .place import PLACE_DISPLAY_NAMES, PLACE_NODES

GGUF_NODES, GGUF_DISPLAY_NAMES = gguf_nodes()
# ComfyUI-MultiGPU's loader node types (none where ComfyUI-MultiGPU itself is installed).
MULTIGPU_NODES, MULTIGPU_DISPLAY_NAMES = compat_nodes()
NODE_CLASS_MAPPINGS = {**{name: honour_keep_loaded(cls)
                          for name, cls in {**LOADER_NODES, **DIFFUSERS_NODES, **GGUF_NODES}.items()},
                       **PLACE_NODES, **MODE_NODES, **MULTIGPU_NODES}
NODE_DISPLAY_NAME_MAPPINGS = {**LOADER_DISPLAY_NAMES, **DIFFUSERS_DISPLAY_NAMES, **GGUF_DISPLAY_NAMES, **PLACE_DISPLAY_NAMES, **MODE_DISPLAY_NAMES,
                              **MULTIGPU_DISPLAY_NAMES}
