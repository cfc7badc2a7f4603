"""Node classes ComfyUI sees. Thin: parse inputs, call the engine, return outputs."""
from .loaders import LOADER_NODES, LOADER_DISPLAY_NAMES

NODE_CLASS_MAPPINGS = dict(LOADER_NODES)
NODE_DISPLAY_NAME_MAPPINGS = dict(LOADER_DISPLAY_NAMES)
