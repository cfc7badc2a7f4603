"""comfyui-distorch: ComfyUI registers the pack from here. Registration only."""
import logging

from . import model_management_mgpu, routes
from .distorch import __version__
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"  # the memory panel and node additions (JS modules), help pages in web/docs

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

_report = model_management_mgpu.install()
_routes = routes.register()
logging.getLogger("distorch").info(
    "comfyui-distorch %s: %d nodes; patched comfy.model_management: %s; routes: %s", __version__,
    len(NODE_CLASS_MAPPINGS), ", ".join(_report.patched) or "nothing", ", ".join(_routes) or "none")
