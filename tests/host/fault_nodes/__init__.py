"""A tiny custom-node pack for the memory-safety tests: faults a real workflow can meet.

- ``DisTorchTestRaiseOOM`` raises ComfyUI's own OOM exception (what a sampler raises when the GPU
  is full), after its MODEL input was loaded, so ComfyUI runs its OOM recovery.
- ``DisTorchTestPurge`` calls ``unload_all_models()`` as other packs' "purge VRAM" nodes do.
- ``DisTorchTestBreakUnload`` makes the next unload of its MODEL's loaded entry raise once (a
  driver error while moving weights), to check that a failed unload stays accounted.
- ``DisTorchTestGate`` waits until a file exists (at most two minutes): a prompt that holds the
  worker while a test queues others behind it. Its ``tag`` makes each prompt distinct.
- ``DisTorchTestOtherLoader`` is "another pack's loader": it builds a diffusion model with the host's
  own ``comfy.sd.load_diffusion_model``, for the place nodes.
- ``distorch_test_counting`` is an attention function registered with the host's registry: it
  counts its calls and runs the host's basic attention. ``DisTorchTestAttentionCalls`` shows the
  count, so a test can see which model ran which attention.
Installed only into test hosts' custom_nodes/; never shipped.
"""
import comfy.model_management as mm


class RaiseOOM:
    CATEGORY = "DisTorch/tests"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "run"
    OUTPUT_NODE = True  # runs without a consumer

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def run(self, model, seed):
        mm.load_models_gpu([model])  # what a sampler does first: the models are loaded when it fails
        raise mm.OOM_EXCEPTION("injected by DisTorchTestRaiseOOM: out of memory")


class BreakUnload:
    CATEGORY = "DisTorch/tests"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def run(self, model, seed):
        mm.load_models_gpu([model])
        for entry in mm.current_loaded_models:
            if entry.model is not None and entry.model.model is model.model:
                def refuse_once(*args, _entry=entry, **kwargs):
                    del _entry.model_unload  # the next try goes to the class's own method
                    raise RuntimeError("injected by DisTorchTestBreakUnload: the weights could not be moved")

                entry.model_unload = refuse_once
        return (model,)


class Purge:
    CATEGORY = "DisTorch/tests"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def run(self, model, seed):
        mm.unload_all_models()
        return (model,)


class OtherLoader:
    CATEGORY = "DisTorch/tests"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {"unet_name": (folder_paths.get_filename_list("diffusion_models"),)}}

    def load(self, unet_name):
        import comfy.sd
        import folder_paths

        return (comfy.sd.load_diffusion_model(folder_paths.get_full_path("diffusion_models", unet_name)),)


class Gate:
    CATEGORY = "DisTorch/tests"
    RETURN_TYPES = ()
    FUNCTION = "wait"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"gate": ("STRING", {"default": ""}), "tag": ("STRING", {"default": ""})},
                "optional": {"mode": ("STRING", {"forceInput": True})}}

    def wait(self, gate, tag, mode=None):
        import os
        import time

        deadline = time.monotonic() + 120
        while gate and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"ui": {"text": [tag]}}


ATTENTION_CALLS = {"count": 0}


def _register_counting_attention():
    import comfy.ldm.modules.attention as attention

    if not hasattr(attention, "register_attention_function"):
        return

    def counting(*args, **kwargs):
        ATTENTION_CALLS["count"] += 1
        return attention.attention_basic(*args, **kwargs)

    attention.register_attention_function("distorch_test_counting", counting)


_register_counting_attention()


class AttentionCalls:
    CATEGORY = "DisTorch/tests"
    RETURN_TYPES = ()
    FUNCTION = "report"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"after": ("LATENT",)}}

    @classmethod
    def IS_CHANGED(cls, after):
        return float("nan")  # always runs: it reports a counter

    def report(self, after):
        return {"ui": {"text": [str(ATTENTION_CALLS["count"])]}}


NODE_CLASS_MAPPINGS = {"DisTorchTestAttentionCalls": AttentionCalls, "DisTorchTestGate": Gate, "DisTorchTestOtherLoader": OtherLoader, "DisTorchTestRaiseOOM": RaiseOOM, "DisTorchTestBreakUnload": BreakUnload,
                       "DisTorchTestPurge": Purge}
