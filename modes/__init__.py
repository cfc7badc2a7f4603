"""Modes: named model setups from ``modes.yaml``, switched at run time.

One job per module, in the order data flows:
- ``yamlsafe``: bytes -> plain values + a mark (line, column) per path; refuses oversized files,
  alias bombs and duplicate keys.
- ``schema``: plain values -> ``ModesConfig`` through pydantic models (every key checked, every
  error located); the same models give schemas/modes.schema.json.
- ``paths``: model / LoRA names -> files inside the allowed roots.
- ``header``: safetensors header (``safe_open``) -> shape-only tensors -> the host's own model detection.
- ``location``: which file is the modes file (env, user directory, legacy variables).
- ``cache``: LRU of loaded modes bounded by count and bytes.
- ``state``: the current valid config, reloads, listeners; ``watch``: file events and SIGHUP.
- ``load``: a mode -> MODEL / CLIP / VAE through the DisTorch loaders' path.
"""
