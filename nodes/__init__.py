"""Node classes ComfyUI sees. Thin: parse inputs, call the engine, return outputs."""
from .loaders import LOADER_NODES, LOADER_DISPLAY_NAMES
from .modes import MODE_DISPLAY_NAMES, MODE_NODES

NODE_CLASS_MAPPINGS = {**LOADER_NODES, **MODE_NODES}
NODE_DISPLAY_NAME_MAPPINGS = {**LOADER_DISPLAY_NAMES, **MODE_DISPLAY_NAMES}
