"""The engine's pure half: no torch, no ComfyUI (checked by the import-linter contracts)."""
