"""DisTorch engine: placement records, file checks and (later) planning. No ComfyUI imports here,
so the pure parts can be unit-tested without a host."""

__version__ = "0.1.0"
