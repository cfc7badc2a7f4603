"""A DisTorch split of a model loaded by ComfyUI-GGUF (its GGUFModelPatcher, its GGMLOps layers),
in-process on the real host: the same output as the unsplit GGUF model, weights kept quantized on
the donor, clones (LoRA) staying split."""

import pytest
import torch

import make_gguf

UNET_Q8 = make_gguf.gguf_file("Q8_0")
LORA = "distorch-test-lora.safetensors"


@pytest.fixture(scope="module")
def models(synthetic_models):
    """The synthetic models (tools/make_models.py, which also writes the .gguf UNets)."""
    return synthetic_models


@pytest.fixture
def load_gguf(comfyui_gguf, models, monkeypatch):
    """Loads a .gguf UNet through ComfyUI-GGUF's own UnetLoaderGGUF node."""
    import folder_paths

    monkeypatch.setitem(folder_paths.folder_names_and_paths, "diffusion_models",
                        ([str(models / "diffusion_models")], {".gguf", ".safetensors"}))

    def load(name=UNET_Q8):
        (patcher,) = comfyui_gguf.nodes.UnetLoaderGGUF().load_unet(name)
        return patcher
    return load


@pytest.fixture(autouse=True)
def nothing_loaded_after(mm, monkeypatch):
    # The test UNet's layers are small once quantized (most under 1 MiB): let the planner move
    # those over 64 KiB, or a split of it would keep everything on the compute device.
    monkeypatch.setenv("DISTORCH_TINY_BYTES", str(64 << 10))
    yield
    mm.unload_all_models()
    mm.current_loaded_models.clear()


def split(patcher, virtual_gib=0.016):
    from distorch.logic.split_request import split_request
    from distorch.host.split_loaded import SplitRuntime, split_loaded_model

    return split_loaded_model(patcher, split_request("cpu", ["cpu"], virtual_gib, "cpu", ""), "test", SplitRuntime())


def denoise(mm, patcher):
    """One UNet call through the host's model wrapper, on fixed inputs."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, 768, generator=generator)
    mm.load_models_gpu([patcher])
    with torch.no_grad():
        return patcher.model.apply_model(x, torch.tensor([500.0]), c_crossattn=context)


def with_lora(patcher, models, strength=0.8):
    import comfy.sd
    import comfy.utils

    lora = comfy.utils.load_torch_file(str(models / "loras" / LORA), safe_load=True)
    model, _ = comfy.sd.load_lora_for_models(patcher, None, lora, strength, 0)
    return model


def test_a_gguf_split_gives_the_unsplit_output_with_donor_weights_still_quantized(mm, load_gguf, comfyui_gguf):
    from distorch.host.split_patcher import PLACED_MARK, DisTorchModelPatcher

    plain = load_gguf()
    expected = denoise(mm, plain)
    mm.unload_all_models()
    patcher, plan = split(load_gguf())
    # Still ComfyUI-GGUF's patcher (its load, patching and mmap release), split.
    assert isinstance(patcher, DisTorchModelPatcher) and isinstance(patcher, comfyui_gguf.nodes.GGUFModelPatcher)
    assert torch.equal(denoise(mm, patcher), expected)
    donor = set(plan.modules_on("cpu (donor)"))
    modules = dict(patcher.model.named_modules())
    assert {name for name, m in modules.items() if getattr(m, PLACED_MARK, False)} == donor and len(donor) >= 5
    # Bytes per slot are the plan's, counted on the tensors the modules really hold.
    for slot in ("cpu", "cpu (donor)"):
        assert sum(held(modules[name]) for name in plan.modules_on(slot)) == plan.device_bytes[slot] > 0
    # The donor holds the file's quantized blocks, dequantized per layer at each forward.
    quantized = [m.weight for name, m in modules.items() if name in donor and getattr(m.weight, "tensor_type", None)
                 is not None and m.weight.tensor_type.name == "Q8_0"]
    assert quantized and all(w.dtype == torch.uint8 for w in quantized)


def held(module):
    """A module's stored tensors (a GGMLTensor's own element count is its packed bytes), plus the
    fp16 buffer ComfyUI-GGUF counts into its largest layer for dequantizing it (``temp.weight`` in
    its state dict, which the planner reads)."""
    stored = sum(p.nelement() * p.element_size() for p in module.parameters(recurse=False))
    if getattr(module, "largest_layer", False):
        stored += 2 * torch.Size(module.weight.tensor_shape).numel()
    return stored


def test_the_plan_of_the_loaded_gguf_model_is_the_preview_from_its_file(load_gguf, models):
    """Module for module, the loaded model's sizes (what the applied plan uses) are the file's
    (what GET /distorch/plan shows), with two differences ComfyUI-GGUF makes: layers that hold no
    quantized tensor and are not Linear are loaded into the host's own parameters, at the model's
    dtype (fp32 on this CPU host: twice the file's F16); the largest quantized layer also counts an
    fp16 buffer for dequantizing it."""
    from distorch.logic.gguf_tables import read_table
    from distorch.logic.module_sizes import modules_of

    patcher = load_gguf()
    table = read_table(models / "diffusion_models" / UNET_Q8)
    types = {}
    for name, tensor in table.state_dict_names():
        types.setdefault(name.rsplit(".", 1)[0], set()).add(tensor.type_name)
    layers = dict(patcher.model.diffusion_model.named_modules())
    loaded = {m.name[len("diffusion_model."):]: m.bytes for m in modules_of(patcher.model)}
    assert set(loaded) == set(types)
    widened = largest = 0
    for module in table.modules():
        layer = layers[module.name]
        if getattr(layer, "largest_layer", False):
            largest += 1
            assert loaded[module.name] == module.bytes + 2 * torch.Size(layer.weight.tensor_shape).numel()
        elif types[module.name] == {"F16"} and not isinstance(layer, torch.nn.Linear):
            widened += 1
            assert loaded[module.name] == 2 * module.bytes, module.name
        else:
            assert loaded[module.name] == module.bytes, module.name
    assert largest == 1 and 0 < widened < len(loaded) // 2


def test_clones_stay_split_and_a_lora_on_a_split_gguf_model_matches_unsplit(mm, load_gguf, models):
    from distorch.host.split_patcher import DisTorchModelPatcher, split_of

    expected = denoise(mm, with_lora(load_gguf(), models))
    mm.unload_all_models()
    patcher, plan = split(load_gguf())
    clone = with_lora(patcher, models)  # LoraLoader clones the model, then adds its patches
    assert type(clone) is type(patcher) and isinstance(clone, DisTorchModelPatcher)
    assert split_of(clone) is split_of(patcher) and clone.size == patcher.whole_model_size()
    assert torch.equal(denoise(mm, clone), expected)
    # Patches reach the quantized donor layers the way ComfyUI-GGUF delivers them: on the weight.
    donor = plan.modules_on("cpu (donor)")
    modules = dict(clone.model.named_modules())
    patched = [name for name in donor if getattr(modules[name].weight, "patches", None)]
    assert patched, "no LoRA patch on a donor layer"
