"""The engine's host-facing half: what calls ComfyUI and torch."""
