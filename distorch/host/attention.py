"""Per-model attention: one model runs the attention function a mode names, the others keep the
process-wide choice. It uses the host's own extension points: the registry of attention
functions (``comfy.ldm.modules.attention.REGISTERED_ATTENTION_FUNCTIONS``: pytorch, split,
sub_quad, and sage / flash / xformers where installed) and the per-model
``transformer_options["optimized_attention_override"]`` its attention wrapper honours. A host
without them (older ComfyUI) sets attention for the whole process only; there the choice is
refused when the modes file is read, saying so.
"""
from __future__ import annotations

DEFAULT = "default"  # the process-wide choice (ComfyUI's command line)
OVERRIDE_KEY = "optimized_attention_override"


def _attention_module():
    import comfy.ldm.modules.attention as attention

    return attention


def choices() -> list[str]:
    """What a mode may name here: 'default' and the host's registered attention functions."""
    attention = _attention_module()
    if not hasattr(attention, "wrap_attn") or not hasattr(attention, "get_attention_function"):
        return [DEFAULT]
    return [DEFAULT, *sorted(getattr(attention, "REGISTERED_ATTENTION_FUNCTIONS", {}))]


def check(value: str, key: str) -> str | None:
    """Why ``value`` cannot be this host's per-model attention, or None."""
    allowed = choices()
    if value in allowed:
        return None
    if allowed == [DEFAULT]:
        return (f"{key}: '{value}' cannot be set for one model in this ComfyUI: its attention is chosen for the "
                "whole process (--use-pytorch-cross-attention, --use-split-cross-attention, ...). Remove the key, "
                "or update ComfyUI")
    return f"{key}: '{value}' is not an attention function of this ComfyUI; use one of {', '.join(allowed)}"


def with_attention(patcher, name: str):
    """A clone of ``patcher`` whose model runs attention ``name`` (the patcher itself for 'default')."""
    if name == DEFAULT:
        return patcher
    chosen = _attention_module().get_attention_function(name)

    def override(default_function, *args, **kwargs):
        return chosen(*args, **kwargs)

    clone = patcher.clone()
    options = clone.model_options.setdefault("transformer_options", {})
    options[OVERRIDE_KEY] = override
    return clone
