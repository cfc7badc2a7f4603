"""DisTorch engine. Pure modules (no torch, no ComfyUI; tested on byte-sized fixtures): allocation
(the grammar), split (requests from node inputs), planner, placement (records), retention (what is
kept and its budget), memory (report rules), dtypes, devices, gguf_tables, checks, assets (a diffusers
folder's model_index.json and part configs; fetches missing ones, never weights). The modules that
meet ComfyUI: pipeline (request -> plan -> load -> place -> record, every entry point's one path),
apply and split_model (the split patcher, built through clone()), host_checks, streaming,
device_context, dynamic_vram, modules (module lists from loaded models and headers)."""

__version__ = "0.1.0"
