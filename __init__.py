"""comfyui-distorch: ComfyUI registers the pack from here. Registration only."""
import logging

from . import model_management_mgpu, routes
from .distorch import __version__
from .modes import runtime as modes_runtime
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.loaders import check_split_host

WEB_DIRECTORY = "./web"  # JS modules: memory panel, node additions, modes dropdowns; help pages in web/docs

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

_report = model_management_mgpu.install(queue=getattr(routes.host_server(), "prompt_queue", None))
_routes = routes.register()
_split_host = check_split_host()  # the host internals a split relies on; logs one warning if they differ
if _routes:  # inside a running ComfyUI: read modes.yaml now and watch it
    modes_runtime.start()
logging.getLogger("distorch").info(
    "comfyui-distorch %s: %d nodes; patched comfy.model_management: %s%s; routes: %s%s", __version__,
    len(NODE_CLASS_MAPPINGS), ", ".join(_report.patched) or "nothing",
    " (keep_loaded rule on POST /free)" if _report.free_requests_watched else "", ", ".join(_routes) or "none",
    "" if _split_host.ok else "; splits off (this ComfyUI's internals differ: see the warning above)")
