"""How classes are named where ComfyUI's user reads them. ComfyUI names a node's exception by its
class's module and name (``execution.full_type_name``), and a custom node's modules are named after
its folder's path, so the error dialog read
'/home/me/ComfyUI/custom_nodes/comfyui-distorch.distorch.host.load_pipeline.SplitFailed'. A class
marked ``@shown_by_name`` is shown as 'comfyui-distorch.SplitFailed': the pack, then the class.
``type_name`` names another pack's class in a message the same way, without the path."""
from __future__ import annotations

import re

PACK = "comfyui-distorch"


def shown_by_name(cls: type) -> type:
    """Class decorator: ComfyUI shows ``cls`` as '<pack>.<class name>' (its module is only a label:
    the class is found through the module that defines it, as before)."""
    cls.__module__ = PACK
    return cls


def type_name(cls: type) -> str:
    """``cls`` as a user reads it: 'SomePatcher (SomePack)', the package being the folder's name
    where a custom node's module is named after its path ('/.../custom_nodes/SomePack.patcher')."""
    module = getattr(cls, "__module__", None) or ""
    if module in ("builtins", "__main__", ""):
        return cls.__qualname__
    package = re.split(r"[\\/]", module)[-1].split(".", 1)[0]
    return f"{cls.__qualname__} ({package})"
