"""A split applied through the real comfy.model_patcher / comfy.model_management (in-process):
outputs, patches, the host's accounting and eviction."""
import gc
import types
import weakref

import pytest
import torch


MiB = 2**20


@pytest.fixture(scope="module")
def comfy_host(mm):
    import comfy.model_patcher
    import comfy.ops

    return types.SimpleNamespace(mm=mm, mp=comfy.model_patcher, ops=comfy.ops)


@pytest.fixture(autouse=True)
def nothing_loaded_after(comfy_host):
    yield
    comfy_host.mm.unload_all_models()
    comfy_host.mm.current_loaded_models.clear()


def tiny_model(comfy_host, seed=0):
    """Embedding + norm + six 1.5 MiB layers, built from the host's own ops."""
    ops = comfy_host.ops.disable_weight_init

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = ops.Embedding(16, 64)
            self.norm = ops.LayerNorm(64)
            self.inp = ops.Linear(64, 640)
            self.blocks = torch.nn.ModuleList([ops.Linear(640, 640) for _ in range(6)])
            self.out = ops.Linear(640, 8)

        def forward(self, tokens):
            x = self.inp(self.norm(self.embed(tokens)))
            for block in self.blocks:
                x = torch.nn.functional.gelu(block(x))
            return self.out(x)

    model = Tiny()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[-1] ** 0.5)
    return model


def patcher_of(comfy_host, model):
    cpu = torch.device("cpu")
    return comfy_host.mp.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def split(comfy_host, patcher, virtual_gib=0.006, runtime=None):
    """(the split patcher, its plan): the split of ``patcher``'s model, built as a clone."""
    from distorch.logic.split_request import split_request
    from distorch.host.split_loaded import SplitRuntime, split_loaded_model

    request = split_request("cpu", ["cpu"], virtual_gib, "cpu", "")
    return split_loaded_model(patcher, request, "test", runtime or SplitRuntime())


TOKENS = torch.arange(12).reshape(2, 6) % 16


def run(comfy_host, patcher):
    comfy_host.mm.load_models_gpu([patcher])
    with torch.no_grad():
        return patcher.model(TOKENS)


def test_modules_of_a_real_model_lists_host_units_with_kinds(comfy_host):
    from distorch.logic.module_sizes import modules_of

    modules = {m.name: m for m in modules_of(tiny_model(comfy_host))}
    assert list(modules)[:3] == ["embed", "norm", "inp"]
    assert modules["embed"].kind == "embedding" and modules["norm"].kind == "norm"
    assert modules["blocks.0"].kind == "layer" and modules["blocks.0"].bytes == (640 * 640 + 640) * 4
    plain = torch.nn.Sequential(torch.nn.Linear(4, 4))  # not a host op: cannot be cast per forward
    assert modules_of(plain)[0].kind == "fixed"


def test_split_runs_offloaded_layers_through_the_host_cast_and_matches(comfy_host):
    from distorch.host.split_patcher import PLACED_MARK, DisTorchModelPatcher

    expected = run(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host)))
    patcher = patcher_of(comfy_host, tiny_model(comfy_host))
    patcher, plan = split(comfy_host, patcher)
    offloaded = plan.modules_on("cpu (donor)")
    assert isinstance(patcher, DisTorchModelPatcher) and len(offloaded) >= 3
    assert "embed" in plan.modules_on("cpu") and "norm" in plan.modules_on("cpu")
    assert torch.equal(run(comfy_host, patcher), expected)
    modules = dict(patcher.model.named_modules())
    assert all(modules[name].comfy_cast_weights and getattr(modules[name], PLACED_MARK) for name in offloaded)
    assert not modules["blocks.0"].comfy_cast_weights or "blocks.0" in offloaded
    # The donor here is the compute device itself ("cpu (donor)"): its modules stay resident there,
    # so the host counts the whole model as loaded on it and sees nothing more to load.
    assert patcher.loaded_size() == patcher.model_size() == patcher.whole_model_size()
    (loaded,) = [m for m in comfy_host.mm.current_loaded_models if m.model is patcher]
    assert loaded.model_offloaded_memory() == 0
    # A second run reuses the placement and gives the same result.
    assert torch.equal(run(comfy_host, patcher), expected)


def test_host_asks_room_for_the_compute_share_only(comfy_host):
    """load_models_gpu frees model_memory_required() on the compute device before a load (and
    model_offloaded_memory() when the model is used again): for a model split onto another device
    that must be the compute device's share, or the host evicts other models for bytes that live
    on the donor. (On a CPU host load_models_gpu frees nothing, so the host's own LoadedModel
    answers are checked; the plan is moved onto a 'cuda:1' donor, which needs no load to count.)"""
    from distorch.host.split_patcher import SPLIT_KEY, SplitLayout
    from distorch.logic.planner import Plan

    patcher = patcher_of(comfy_host, tiny_model(comfy_host))
    whole = patcher.model_size()
    patcher, plan = split(comfy_host, patcher)
    compute_share, donor_share = plan.device_bytes["cpu"], plan.device_bytes["cpu (donor)"]
    assert compute_share + donor_share == whole and donor_share > 0
    # A donor slot on the compute device itself stays resident there: the whole model is asked for.
    assert comfy_host.mm.LoadedModel(patcher).model_memory_required(torch.device("cpu")) == whole
    elsewhere = Plan("cpu", {name: "cpu" if slot == "cpu" else "cuda:1" for name, slot in plan.assignment.items()},
                     {"cpu": compute_share, "cuda:1": donor_share}, plan.reserve_bytes)
    patcher.attachments[SPLIT_KEY] = SplitLayout.from_plan(elsewhere, "test")
    assert comfy_host.mm.LoadedModel(patcher).model_memory_required(torch.device("cpu")) == compute_share
    # RAM use and clones still count the whole model; a clone asks for the same share.
    clone = patcher.clone()
    assert patcher.get_ram_usage() == clone.get_ram_usage() == whole
    assert clone.model_size() == compute_share and clone.whole_model_size() == whole


def with_patch(patcher, strength, keys=("blocks.4.weight", "blocks.5.weight")):
    """A clone carrying a diff patch (what a LoRA is to the host: a patch per weight key)."""
    clone = patcher.clone()
    diff = torch.full((640, 640), 0.01)
    clone.add_patches({key: ("diff", (diff,)) for key in keys}, strength)
    return clone


def run_lowvram(comfy_host, patcher):
    """ComfyUI's own lowvram path: its load with no room for weights (what load_models_gpu asks on
    a GPU that is short of memory) leaves every castable layer offloaded, its patches applied per
    forward by LowVramPatch."""
    comfy_host.mm.LoadedModel(patcher).model_load(lowvram_model_memory=1)
    try:
        with torch.no_grad():
            return patcher.model(TOKENS)
    finally:
        patcher.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_patches_on_offloaded_layers_are_the_hosts_lowvram_patches(comfy_host, dtype, monkeypatch):
    """A LoRA on a split model: offloaded layers get the host's LowVramPatch, the same object its
    lowvram mode gives the layers it does not load. Result: bit for bit ComfyUI's lowvram run with
    the same patch (fp32 and bf16 on CPU); in fp32 also the fully loaded run."""
    monkeypatch.setenv("DISTORCH_TINY_BYTES", str(64 * 1024))  # bf16 layers are 0.8 MiB

    def model(seed=0):
        return tiny_model(comfy_host, seed).to(dtype)

    base = patcher_of(comfy_host, model())
    unpatched = run(comfy_host, base)
    full = run(comfy_host, with_patch(base, 1.0))
    comfy_host.mm.unload_all_models()
    lowvram = run_lowvram(comfy_host, with_patch(patcher_of(comfy_host, model()), 1.0))

    patcher, plan = split(comfy_host, patcher_of(comfy_host, model()), 0.006 * dtype.itemsize / 4)
    assert {"blocks.4", "blocks.5"} <= set(plan.modules_on("cpu (donor)"))
    keys = ("blocks.4.weight", "blocks.5.weight")
    originals = {key: patcher.model.get_parameter(key).detach().clone() for key in keys}
    patched = with_patch(patcher, 1.0)
    ours = run(comfy_host, patched)
    assert torch.equal(ours, lowvram)
    if dtype == torch.float32:
        assert torch.equal(ours, full)
    assert not torch.equal(ours, unpatched)
    # No backup and no patched copy: the donor keeps the original weights.
    assert not [key for key in patched.backup if key.startswith(("blocks.4.", "blocks.5."))]
    assert all(torch.equal(patched.model.get_parameter(key), weight) for key, weight in originals.items())
    block = patched.model.blocks[4]
    assert [type(f) for f in block.weight_function] == [comfy_host.mp.LowVramPatch] and block.bias_function == []
    assert patched.model.lowvram_patch_counter == 2
    # A new strength applies to the same originals (a patch is never applied to a patched weight).
    half = run(comfy_host, with_patch(patcher, 0.5))
    again = run(comfy_host, with_patch(patcher, 1.0))
    assert not torch.equal(half, ours) and torch.equal(again, ours)
    assert torch.equal(run(comfy_host, patcher), unpatched)


def test_three_split_models_are_evicted_and_freed_like_core_models(comfy_host):
    from distorch.host.split_patcher import PLACED_MARK

    mm = comfy_host.mm
    patchers = [split(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host, seed))).patcher for seed in range(3)]
    for patcher in patchers:
        run(comfy_host, patcher)
    assert len(mm.current_loaded_models) == 3
    assert all(0 < p.loaded_size() == p.model_size() == p.whole_model_size() for p in patchers)
    unloaded = mm.free_memory(1e30, torch.device("cpu"))  # what unload_all_models does on this host
    assert len(unloaded) == 3 and mm.current_loaded_models == []
    for patcher in patchers:
        assert patcher.loaded_size() == 0
        for module in patcher.model.modules():
            assert not getattr(module, "comfy_cast_weights", False)
            assert not hasattr(module, PLACED_MARK)
    # Nothing of the pack keeps a model alive once the workflow drops it.
    models = [weakref.ref(p.model) for p in patchers]
    del patchers, unloaded, patcher, module
    gc.collect()
    assert [ref() for ref in models] == [None, None, None]


def test_partial_unload_by_the_host_only_touches_compute_modules(comfy_host):
    patcher = patcher_of(comfy_host, tiny_model(comfy_host))
    patcher, plan = split(comfy_host, patcher)
    expected = run(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host)))
    run(comfy_host, patcher)
    before = patcher.loaded_size()
    freed = patcher.partially_unload(torch.device("cpu"), 2 * MiB)
    assert 0 < freed <= before and patcher.loaded_size() == before - freed
    assert patcher.loaded_size() >= 0
    assert torch.equal(run(comfy_host, patcher), expected)
    assert set(plan.modules_on("cpu (donor)")).isdisjoint(n for _, _, n, *_ in patcher._load_list())


def test_dynamic_vram_is_detected_and_refused_with_one_clear_message(comfy_host, monkeypatch, caplog):
    from distorch.host import dynamic_vram
    from distorch.host.split_patcher import SplitUnsupported, apply_split

    mp = comfy_host.mp
    assert not dynamic_vram.host_uses_dynamic_vram(mp)  # 0.3.75 has no DynamicVRAM

    class ModelPatcherDynamic(mp.ModelPatcher):
        pass

    newer = types.SimpleNamespace(ModelPatcher=mp.ModelPatcher, ModelPatcherDynamic=ModelPatcherDynamic,
                                  CoreModelPatcher=ModelPatcherDynamic)
    assert dynamic_vram.host_uses_dynamic_vram(newer)
    newer.CoreModelPatcher = mp.ModelPatcher  # --disable-dynamic-vram
    assert not dynamic_vram.host_uses_dynamic_vram(newer)

    monkeypatch.setattr(mp, "ModelPatcherDynamic", ModelPatcherDynamic, raising=False)
    monkeypatch.setattr(mp, "CoreModelPatcher", ModelPatcherDynamic, raising=False)
    from distorch.host.split_loaded import SplitRuntime

    cpu = torch.device("cpu")
    dynamic = ModelPatcherDynamic(tiny_model(comfy_host), load_device=cpu, offload_device=cpu)
    owner = SplitRuntime()  # the log line is given once per owner (the pack's runtime)
    with caplog.at_level("WARNING", logger="distorch"):
        for _ in range(2):
            with pytest.raises(SplitUnsupported, match="--disable-dynamic-vram"):
                split(comfy_host, dynamic, runtime=owner)
    assert type(dynamic) is ModelPatcherDynamic and "distorch.split" not in dynamic.attachments
    assert len([r for r in caplog.records if "DynamicVRAM" in r.getMessage()]) == 1

    class OtherPatcher(mp.ModelPatcher):
        pass

    with pytest.raises(SplitUnsupported, match="OtherPatcher"):
        apply_split(OtherPatcher(tiny_model(comfy_host), load_device=cpu, offload_device=cpu), None)


def test_dynamic_vram_model_is_split_through_the_hosts_plain_copy(comfy_host, pack_module, monkeypatch):
    """Newer ComfyUI turns DynamicVRAM on by default. Its ModelPatcherDynamic.clone(disable_dynamic=True)
    rebuilds the model from its file (cached_patcher_init) as a plain ModelPatcher; the loaders split
    that copy. 0.3.75 has no DynamicVRAM: the stand-in below reproduces only that documented contract."""
    mp = comfy_host.mp
    apply, placement = (pack_module(n) for n in ("distorch.host.split_patcher", "distorch.logic.placement_record"))
    cpu = torch.device("cpu")
    built = []

    class ModelPatcherDynamic(mp.ModelPatcher):
        def clone(self, disable_dynamic=False, **kwargs):
            if not disable_dynamic:
                return super().clone()
            if self.cached_patcher_init is None:
                raise RuntimeError("Cannot create non-dynamic delegate: cached_patcher_init is not initialized.")
            # As the host's clone: a new plain ModelPatcher on the rebuilt model, with this one's
            # patches, attachments and wrappers, and parent = this one.
            rebuilt = self.cached_patcher_init[0](*self.cached_patcher_init[1], disable_dynamic=True)
            plain = mp.ModelPatcher(rebuilt.model, self.load_device, self.offload_device, self.model_size())
            plain.patches = {key: value[:] for key, value in self.patches.items()}
            plain.attachments = dict(self.attachments)
            plain.wrappers = {kind: {key: list(fns) for key, fns in entries.items()}
                              for kind, entries in self.wrappers.items()}
            plain.parent = self
            return plain

    def load_from_file(seed, disable_dynamic=False):
        built.append("plain" if disable_dynamic else "dynamic")
        patcher = (mp.ModelPatcher if disable_dynamic else ModelPatcherDynamic)(
            tiny_model(comfy_host, seed), load_device=cpu, offload_device=cpu)
        patcher.cached_patcher_init = (load_from_file, (seed,))
        return patcher

    monkeypatch.setattr(mp, "ModelPatcherDynamic", ModelPatcherDynamic, raising=False)
    monkeypatch.setattr(mp, "CoreModelPatcher", ModelPatcherDynamic, raising=False)
    expected = run(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host, 3)))
    dynamic = load_from_file(3)
    pipeline = pack_module("distorch.host.load_pipeline")
    part = pipeline.part_request("unet", "cpu", split=(0.006, "cpu", ""))
    pipeline.record(dynamic, pipeline.build_request("DisTorchUNETLoader", "tiny.safetensors", False, [part]), part)
    result = pipeline.LoadPipeline().split(dynamic, "unet", part, "test")
    assert built == ["dynamic", "plain"]
    assert type(result) is apply.DisTorchModelPatcher and apply.split_of(result).offloaded
    assert placement.placement_of(result).source == "tiny.safetensors" and result.parent is None
    assert torch.equal(run(comfy_host, result), expected)
    gone = weakref.ref(dynamic)
    del dynamic
    gc.collect()
    assert gone() is None, "the split copy keeps the dynamic model alive"
    # No way to rebuild it: refused with the message, nothing applied.
    other = load_from_file(4)
    other.cached_patcher_init = None
    with pytest.raises(RuntimeError, match="--disable-dynamic-vram"):
        pipeline.LoadPipeline().split(other, "unet", part, "test")
    assert type(other) is ModelPatcherDynamic and "distorch.split" not in other.attachments


def test_a_copy_retargeted_to_another_device_runs_unsplit(comfy_host, caplog):
    """Newer ComfyUI copies a model to other GPUs itself (deepclone_multigpu, then
    match_multigpu_clones re-cloning it before every sampling run, and its device-select nodes):
    each is a clone() with another load_device. The plan is for its own device only."""
    from distorch.host.split_patcher import split_of

    patcher, _ = split(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host)))
    copy = patcher.clone()
    copy.load_device = torch.device("cuda", 1)  # what those host paths do to the clone
    assert split_of(copy) is not None  # the attachment travels, as every clone's does
    with caplog.at_level("WARNING", logger="distorch"):
        assert copy._distorch_split() is None and copy._distorch_split() is None
    assert copy.model_size() == copy.whole_model_size()  # it asks for the whole model there
    assert [r.getMessage() for r in caplog.records].count(next(
        r.getMessage() for r in caplog.records if "runs unsplit" in r.getMessage())) == 1  # logged once
    assert patcher._distorch_split() is not None  # the original keeps its plan


def test_a_donor_slot_on_the_compute_device_counts_toward_its_memory():
    """'cuda:0 (donor)' modules stay on cuda:0: the host must make room for them there."""
    from distorch.host.split_patcher import SplitLayout
    from distorch.logic.planner import ModuleInfo, plan_placement

    modules = [ModuleInfo(f"block.{i}", 10 * MiB) for i in range(6)]
    plan = plan_placement(modules, "cuda:0", {"cuda:0": 25 * MiB, "cuda:0 (donor)": 50 * MiB, "cpu": 100 * MiB})
    assert plan.device_bytes == {"cuda:0": 10 * MiB, "cuda:0 (donor)": 50 * MiB}
    assert SplitLayout.from_plan(plan, "test").offloaded_bytes == 0
    plan = plan_placement(modules, "cuda:0", {"cuda:0": 25 * MiB, "cuda:0 (donor)": 20 * MiB, "cpu": 100 * MiB})
    assert SplitLayout.from_plan(plan, "test").offloaded_bytes == plan.device_bytes["cpu"] == 30 * MiB


def test_layers_in_flight_follow_the_hosts_offload_streams(comfy_host, monkeypatch):
    from distorch.host.split_loaded import layers_in_flight

    monkeypatch.setattr(comfy_host.mm, "NUM_STREAMS", 2)
    assert (layers_in_flight("cuda:0"), layers_in_flight("cpu")) == (3, 1)
    monkeypatch.setattr(comfy_host.mm, "NUM_STREAMS", 0)  # --disable-async-offload: synchronous copies
    assert layers_in_flight("cuda:0") == 1


def test_split_load_sets_the_hosts_cast_flag_and_offload_room(comfy_host):
    patcher = patcher_of(comfy_host, tiny_model(comfy_host))
    patcher.force_cast_weights = True  # what set_model_compute_dtype does (text encoders)
    patcher, plan = split(comfy_host, patcher)
    run(comfy_host, patcher)
    modules = dict(patcher.model.named_modules())
    assert all(modules[name].comfy_force_cast_weights is True for name in plan.modules_on("cpu (donor)"))
    assert patcher.model.model_offload_buffer_memory >= plan.reserve_bytes > 0


def test_tiny_module_threshold_can_be_tuned_by_environment(comfy_host, monkeypatch, caplog):
    from distorch.host.split_loaded import tiny_bytes

    monkeypatch.delenv("DISTORCH_TINY_BYTES", raising=False)
    assert tiny_bytes() == MiB
    assert split(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host))).plan.modules_on("cpu (donor)")
    monkeypatch.setenv("DISTORCH_TINY_BYTES", str(10 * MiB))  # every layer counts as tiny: nothing moves
    assert tiny_bytes() == 10 * MiB
    assert split(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host))).plan.modules_on("cpu (donor)") == []
    monkeypatch.setenv("DISTORCH_TINY_BYTES", "lots")
    with caplog.at_level("WARNING", logger="distorch"):
        assert tiny_bytes() == MiB
    assert "DISTORCH_TINY_BYTES='lots'" in caplog.text


def host_state(comfy_host, patcher):
    """What a failed split must leave as it was: the patcher's class and attachments, its model's
    weights (values, devices, storage), per-layer marks and load accounting, and the host's list of
    loaded models."""
    from distorch.host.split_patcher import PLACED_MARK

    model = patcher.model
    return {
        "class": type(patcher), "attachments": dict(patcher.attachments),
        "weights": {name: (t.device, t.dtype, t.data_ptr(), t.detach().clone())
                    for name, t in model.state_dict().items()},
        "layers": {name: (getattr(m, "comfy_cast_weights", None), list(getattr(m, "weight_function", None) or []),
                          hasattr(m, PLACED_MARK), hasattr(m, "prev_comfy_cast_weights"))
                   for name, m in model.named_modules()},
        "accounting": (model.model_loaded_weight_memory, model.model_lowvram, model.lowvram_patch_counter,
                       patcher.loaded_size()),
        "loaded": [(entry, entry.model) for entry in comfy_host.mm.current_loaded_models],
    }


def assert_same_state(before, after, storage=True):
    assert after["class"] is before["class"] and after["attachments"] == before["attachments"]
    assert after["layers"] == before["layers"] and after["accounting"] == before["accounting"]
    assert len(after["loaded"]) == len(before["loaded"])
    assert all(a[0] is b[0] and a[1] is b[1] for a, b in zip(after["loaded"], before["loaded"]))
    assert after["weights"].keys() == before["weights"].keys()
    for name, (device, dtype, pointer, value) in before["weights"].items():
        now = after["weights"][name]
        assert (now[0], now[1]) == (device, dtype) and torch.equal(now[3], value), name
        assert not storage or now[2] == pointer, name


def preloaded(comfy_host, seed=0):
    """A plain patcher the host has loaded already (as it loads a text encoder that fits while
    building it), with a patch on a layer the split offloads (so loading patched that weight)."""
    patcher = with_patch(patcher_of(comfy_host, tiny_model(comfy_host, seed)), 1.0)
    comfy_host.mm.load_models_gpu([patcher])
    assert comfy_host.mm.current_loaded_models[0].model is patcher and patcher.loaded_size() > 0
    return patcher


def test_a_failed_plan_changes_nothing(comfy_host, monkeypatch):
    from distorch.host import split_loaded as split_model
    from distorch.logic.planner import PlanError

    def failing_plan(*args, **kwargs):
        raise PlanError("injected planning failure")

    original = preloaded(comfy_host)
    before = host_state(comfy_host, original)
    monkeypatch.setattr(split_model, "plan_placement", failing_plan)
    with pytest.raises(PlanError, match="injected planning failure"):
        split(comfy_host, original)
    assert_same_state(before, host_state(comfy_host, original))


@pytest.mark.parametrize("halfway", [False, True], ids=["before-unloading", "after-unpatching"])
def test_a_failed_release_of_the_hosts_load_changes_nothing(comfy_host, monkeypatch, halfway):
    """The host loaded the model while building it; its unload fails, at once or after the host
    already unpatched and moved the weights: the entry stays, the model is loaded as it was."""
    from distorch.host.split_patcher import ReleaseFailed

    mp = comfy_host.mp
    original = preloaded(comfy_host)
    before = host_state(comfy_host, original)
    real_detach = mp.ModelPatcher.detach

    def failing_detach(self, unpatch_all=True):
        if self is not original:  # e.g. the unused split copy's clean-up (ModelPatcher.__del__)
            return real_detach(self, unpatch_all)
        if halfway:
            real_detach(self, unpatch_all)
        raise RuntimeError("injected unload failure")

    monkeypatch.setattr(mp.ModelPatcher, "detach", failing_detach)
    with pytest.raises(ReleaseFailed, match="injected unload failure"):
        split(comfy_host, original)
    monkeypatch.undo()
    # Unpatching restored the original weights and the reload patched them again: same values,
    # devices and accounting, new storage for the patched weights.
    assert_same_state(before, host_state(comfy_host, original), storage=not halfway)
    (entry,) = comfy_host.mm.current_loaded_models
    assert entry.model is original and entry.model_finalizer is not None


def test_a_failed_module_move_leaves_the_model_and_the_host_as_before_the_load(comfy_host, monkeypatch):
    """The split's own load fails while moving offloaded modules (after some were placed): the
    modules placed go back, unmarked, the host's accounting is as before the load, and the original
    patcher is untouched; the next load places everything and runs."""
    from distorch.host.split_patcher import PLACED_MARK, DisTorchModelPatcher

    original = patcher_of(comfy_host, tiny_model(comfy_host))
    expected = run(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host)))
    comfy_host.mm.unload_all_models()
    before = host_state(comfy_host, original)
    patcher, plan = split(comfy_host, original)
    assert len(plan.modules_on("cpu (donor)")) >= 3
    real_place_one = DisTorchModelPatcher._place_one
    calls = []

    def failing_place_one(self, name, *args):
        calls.append(name)
        if len(calls) == 3:
            raise RuntimeError(f"injected failure moving {name}")
        return real_place_one(self, name, *args)

    monkeypatch.setattr(DisTorchModelPatcher, "_place_one", failing_place_one)
    with pytest.raises(RuntimeError, match="injected failure moving"):
        comfy_host.mm.load_models_gpu([patcher])
    monkeypatch.undo()
    assert_same_state(before, host_state(comfy_host, original))
    assert not any(hasattr(m, PLACED_MARK) for m in original.model.modules())
    assert torch.equal(run(comfy_host, patcher), expected)


def test_a_preloaded_clip_gets_the_split_clone_and_its_original_is_released(comfy_host, pack_module):
    """A CLIP holds its patcher: the split replaces ``clip.patcher`` with the split clone; the
    plain patcher the host had loaded is unloaded through the host (entry removed) and keeps its
    class."""
    import comfy.sd

    apply = pack_module("distorch.host.split_patcher")
    split_model = pack_module("distorch.host.split_loaded")
    expected = run(comfy_host, patcher_of(comfy_host, tiny_model(comfy_host)))
    comfy_host.mm.unload_all_models()
    original = patcher_of(comfy_host, tiny_model(comfy_host))
    comfy_host.mm.load_models_gpu([original])
    clip = comfy.sd.CLIP(no_init=True)  # the host's CLIP, as CLIP.clone() builds it
    clip.patcher = original
    pipeline = pack_module("distorch.host.load_pipeline")
    part = pipeline.part_request("clip", "cpu", split=(0.006, "cpu", ""))
    result = pipeline.LoadPipeline(split_model.SplitRuntime()).split(clip, "clip", part, "test")
    assert result is clip and type(clip.patcher) is apply.DisTorchModelPatcher
    assert type(original) is comfy_host.mp.ModelPatcher and "distorch.split" not in original.attachments
    assert comfy_host.mm.current_loaded_models == [] and original.loaded_size() == 0
    assert torch.equal(run(comfy_host, clip.patcher), expected)


def test_release_drops_the_entry_it_unloaded_found_by_identity(comfy_host, monkeypatch):
    """The host's unload may edit current_loaded_models (its clean-up of dead models): the entry
    removed is the one unloaded, wherever it is by then."""
    from distorch.host.split_patcher import release_if_loaded

    mm = comfy_host.mm
    first, second = preloaded(comfy_host, 1), preloaded(comfy_host, 2)
    entries = list(mm.current_loaded_models)  # [second, first]
    real_unload = mm.LoadedModel.model_unload

    def unload_after_reordering(self, *args, **kwargs):
        mm.current_loaded_models.reverse()  # what a clean-up pass may do to indexes
        return real_unload(self, *args, **kwargs)

    monkeypatch.setattr(mm.LoadedModel, "model_unload", unload_after_reordering)
    assert release_if_loaded(second) is True
    assert mm.current_loaded_models == [entries[1]] and mm.current_loaded_models[0].model is first
    assert release_if_loaded(patcher_of(comfy_host, tiny_model(comfy_host))) is False


def test_one_load_parses_its_allocation_once_and_plans_the_loaded_model_once(comfy_host, pack_module, monkeypatch):
    """A load through the pipeline: the allocation string is parsed once (part_request), bound to
    the compute device without parsing again, planned once for the loaded model, and the budgets
    for that plan are worked out once (the log's explanation reads them from the plan)."""
    allocation = pack_module("distorch.logic.allocation")
    split = pack_module("distorch.logic.split_request")
    split_model = pack_module("distorch.host.split_loaded")
    pipeline = pack_module("distorch.host.load_pipeline")
    counts = {"parse": 0, "plan": 0, "budgets": 0}

    def counting(name, function):
        def counted(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return counted

    monkeypatch.setattr(split, "parse_allocation", counting("parse", allocation.parse_allocation))
    monkeypatch.setattr(split_model, "plan_placement", counting("plan", split_model.plan_placement))
    monkeypatch.setattr(split.SplitRequest, "budgets", counting("budgets", split.SplitRequest.budgets))
    part = pipeline.part_request("unet", "cpu", split=(0.0, "cpu", "0.5"))
    request = pipeline.build_request("DisTorchUNETLoader", "tiny.safetensors", False, [part])
    (placed,) = pipeline.LoadPipeline().load(request, lambda: (patcher_of(comfy_host, tiny_model(comfy_host)),),
                                             ("unet",))
    assert "distorch.split" in placed.attachments, "the model was not split: the test counts nothing"
    assert counts == {"parse": 1, "plan": 1, "budgets": 1}, counts
