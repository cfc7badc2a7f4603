"""The APPLY_MODEL wrapper that makes a diffusion model's device current for each step, through
the real host's wrapper machinery and a real sampling run (CPU here: it must only call through)."""
import pytest
import torch


def test_loader_models_carry_the_wrapper_and_it_calls_through_off_cuda(mm, pack_module):
    import comfy.model_patcher
    import comfy.patcher_extension as patcher_extension

    pipeline = pack_module("distorch.host.load_pipeline")
    context = pack_module("distorch.host.device_context")
    patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(4, 4), load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    part = pipeline.part_request("unet", "cpu")
    request = pipeline.build_request("DisTorchUNETLoader", "m.safetensors", False, [part])
    pipeline.record(patcher, request, part)
    pipeline.record(patcher, request, part)  # idempotent
    kind = patcher_extension.WrappersMP.APPLY_MODEL
    assert patcher.get_all_wrappers(kind) == [context.run_on_input_device]
    assert patcher.clone().get_all_wrappers(kind) == [context.run_on_input_device]
    # Through the host's executor, as BaseModel.apply_model runs it.
    calls = []
    executor = patcher_extension.WrapperExecutor.new_executor(
        lambda x, t: calls.append(x.device) or x * 2, patcher.get_all_wrappers(kind))
    x = torch.ones(2)
    assert torch.equal(executor.execute(x, 0), x * 2) and calls == [torch.device("cpu")]


@pytest.mark.gpu
def test_the_inputs_gpu_is_current_inside_the_step(pack_module):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    context = pack_module("distorch.host.device_context")
    seen = []
    torch.cuda.set_device(0)
    x = torch.ones(2, device="cuda:1")
    context.run_on_input_device(lambda value: seen.append(torch.cuda.current_device()) or value, x)
    assert seen == [1] and torch.cuda.current_device() == 0


def test_a_sampling_run_goes_through_the_wrapper(mm, pack_module, monkeypatch):
    """A DisTorch-loaded UNet sampled by the host's own KSampler code calls the wrapper once per
    model evaluation (the synthetic models are built by `make setup`)."""
    import hostenv

    models = hostenv.models_dir()
    unet = models / "diffusion_models" / "distorch-test-unet.safetensors"
    clip_file = models / "text_encoders" / "distorch-test-clip-l.safetensors"
    if not unet.exists() or not clip_file.exists():
        pytest.fail(f"no synthetic models in {models}: run `make setup`")
    import comfy.sd
    import nodes

    context = pack_module("distorch.host.device_context")
    pipeline = pack_module("distorch.host.load_pipeline")
    seen = []
    original = context.run_on_input_device
    monkeypatch.setattr(context, "run_on_input_device",
                        lambda executor, x, *a, **k: seen.append(x.device) or original(executor, x, *a, **k))
    model = comfy.sd.load_diffusion_model(str(unet))
    part = pipeline.part_request("unet", "cpu")
    pipeline.record(model, pipeline.build_request("DisTorchUNETLoader", unet.name, False, [part]), part)
    clip = comfy.sd.load_clip([str(clip_file)], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
    tokens = clip.tokenize("a red cube")
    cond = [[clip.encode_from_tokens(tokens), {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    nodes.common_ksampler(model, 1, 2, 1.0, "euler", "normal", cond, cond, latent)
    assert seen and set(seen) == {torch.device("cpu")}
