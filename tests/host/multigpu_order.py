"""ComfyUI-MultiGPU's loader node types and their inputs in its order, as the pack's compatibility
nodes must declare them (evidence: README, "Workflows saved with ComfyUI-MultiGPU")."""
SPLIT = ["virtual_vram_gb", "donor_device", "expert_mode_allocations", "eject_models"]
# Saved workflows show these orders as widget values (e.g. UNETLoaderDisTorch2MultiGPU:
# [unet_name, weight_dtype, "cuda:0", 7, "cpu", "", true]; CLIPLoaderMultiGPU: [clip_name, type, "cuda:1"]).
ORDER = {
    "UNETLoaderMultiGPU": ["unet_name", "weight_dtype", "device"],
    "UNETLoaderDisTorch2MultiGPU": ["unet_name", "weight_dtype", "compute_device", *SPLIT],
    "VAELoaderMultiGPU": ["vae_name", "device"],
    "VAELoaderDisTorch2MultiGPU": ["vae_name", "compute_device", *SPLIT],
    "CLIPLoaderMultiGPU": ["clip_name", "type", "device"],
    "CLIPLoaderDisTorch2MultiGPU": ["clip_name", "type", "device", *SPLIT],
    "DualCLIPLoaderMultiGPU": ["clip_name1", "clip_name2", "type", "device"],
    "DualCLIPLoaderDisTorch2MultiGPU": ["clip_name1", "clip_name2", "type", "device", *SPLIT],
    "TripleCLIPLoaderMultiGPU": ["clip_name1", "clip_name2", "clip_name3", "device"],
    "TripleCLIPLoaderDisTorch2MultiGPU": ["clip_name1", "clip_name2", "clip_name3", "device", *SPLIT],
    "QuadrupleCLIPLoaderMultiGPU": ["clip_name1", "clip_name2", "clip_name3", "clip_name4", "device"],
    "QuadrupleCLIPLoaderDisTorch2MultiGPU": ["clip_name1", "clip_name2", "clip_name3", "clip_name4", "device",
                                             *SPLIT],
    "CLIPVisionLoaderMultiGPU": ["clip_name", "device"],
    "CLIPVisionLoaderDisTorch2MultiGPU": ["clip_name", "device", *SPLIT],
    "CheckpointLoaderSimpleMultiGPU": ["ckpt_name", "device"],
    "CheckpointLoaderSimpleDisTorch2MultiGPU": ["ckpt_name", "compute_device", *SPLIT],
    "ControlNetLoaderMultiGPU": ["control_net_name", "device"],
    "ControlNetLoaderDisTorch2MultiGPU": ["control_net_name", "compute_device", *SPLIT],
    "DiffControlNetLoaderMultiGPU": ["model", "control_net_name", "device"],
    "DiffControlNetLoaderDisTorch2MultiGPU": ["model", "control_net_name", "compute_device", *SPLIT],
    "CheckpointLoaderAdvancedMultiGPU": ["ckpt_name", "unet_device", "clip_device", "vae_device"],
    "CheckpointLoaderAdvancedDisTorch2MultiGPU": [
        "ckpt_name", "unet_compute_device", "unet_virtual_vram_gb", "unet_donor_device", "clip_compute_device",
        "clip_virtual_vram_gb", "clip_donor_device", "vae_device", "unet_expert_mode_allocations",
        "clip_expert_mode_allocations", "high_precision_loras"],
}
