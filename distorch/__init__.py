"""DisTorch engine, in two halves (the layer contracts in pyproject.toml keep them apart):

- ``logic``: pure, neither torch nor ComfyUI, tested on byte-sized fixtures: the allocation grammar,
  split requests, the planner, module sizes from file headers (safetensors, GGUF), placement
  records, retention and scheduling rules, memory-report rules, the patch registry, the device
  choice of a loading node.
- ``host``: what meets ComfyUI and torch: the load pipeline (request -> plan -> load -> place ->
  record, every entry point's one path), the split of a loaded model and its patcher (built through
  ``clone()``), transfer checks, the host-internals check, DynamicVRAM, device context, queue
  control, diffusers folders and their assets, and the ``Runtime`` that owns the process's state.
"""

__version__ = "0.2.0"
