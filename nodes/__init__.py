"""Node classes ComfyUI sees. Thin: parse inputs, call the engine, return outputs.

``node_mappings(runtime)`` gives the classes to register, each bound to the pack's runtime
(``bound.bind``); the classes defined in the modules stay unbound."""
from .bound import bind
from .diffusers import DIFFUSERS_DISPLAY_NAMES, DIFFUSERS_NODES
from .gguf import gguf_nodes
from .keep_loaded import honour_keep_loaded
from .loaders import LOADER_DISPLAY_NAMES, LOADER_NODES
from .modes import MODE_DISPLAY_NAMES, MODE_NODES
from .multigpu import compat_nodes
from .place import PLACE_DISPLAY_NAMES, PLACE_NODES

for _loader in (*LOADER_NODES.values(), *DIFFUSERS_NODES.values(), *PLACE_NODES.values()):
    honour_keep_loaded(_loader)  # the keep_loaded holder around each loader's function (idempotent)
del _loader


def node_mappings(runtime) -> tuple[dict, dict]:
    """(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS) for this ComfyUI, bound to ``runtime``."""
    gguf, gguf_titles = gguf_nodes()
    # ComfyUI-MultiGPU's loader node types (none where ComfyUI-MultiGPU itself is installed).
    multigpu, multigpu_titles = compat_nodes()
    classes = {**LOADER_NODES, **DIFFUSERS_NODES, **{name: honour_keep_loaded(cls) for name, cls in gguf.items()},
               **PLACE_NODES, **MODE_NODES, **multigpu}
    titles = {**LOADER_DISPLAY_NAMES, **DIFFUSERS_DISPLAY_NAMES, **gguf_titles, **PLACE_DISPLAY_NAMES,
              **MODE_DISPLAY_NAMES, **multigpu_titles}
    return {name: bind(cls, runtime) for name, cls in classes.items()}, titles
