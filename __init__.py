"""comfyui-distorch: ComfyUI registers the pack from here. Registration only."""
from .registration import register

WEB_DIRECTORY = "./web"  # JS modules: memory panel, node additions, modes dropdowns; help pages in web/docs

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

# The one runtime of this process (distorch/host/runtime.py): every piece of state the pack keeps, and
# the record of every change it made to the host (RUNTIME.close() undoes them all).
RUNTIME, NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = register()
