"""Node classes get the pack's runtime by binding: at registration each class ComfyUI sees is a
subclass carrying ``runtime`` (``bind``). The classes defined in the modules stay unbound, so
nothing is set on a shared class and a test can bind its own runtime."""
from __future__ import annotations


def bind(cls: type, runtime) -> type:
    """A subclass of ``cls`` with the runtime; ComfyUI sees the same name, module and inputs."""
    return type(cls.__name__, (cls,), {"runtime": runtime, "__module__": cls.__module__,
                                        "__qualname__": cls.__qualname__})


def runtime_of(node):
    """The runtime bound to a node (an instance or its class)."""
    runtime = getattr(node, "runtime", None)
    if runtime is None:
        name = node.__name__ if isinstance(node, type) else type(node).__name__
        raise RuntimeError(f"{name} is not bound to the comfyui-distorch runtime: take the class from the pack's "
                           "NODE_CLASS_MAPPINGS (nodes.bound.bind binds one for tests)")
    return runtime
