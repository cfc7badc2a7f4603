"""Workflows saved with ComfyUI-MultiGPU open and run on the pack's compatibility nodes.

The workflows in multigpu_workflows/ are UI format: widget values by position, in ComfyUI-MultiGPU's
order. Each is converted through the server's own /object_info (as the frontend does), then run as
saved (DisTorch2 nodes split), run unsplit, and queued with a device this machine lacks."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import torch
from safetensors.torch import load_file

import hostenv
from comfy_host import ComfyHost, PromptRejected
from multigpu_order import ORDER
from ui_workflow import _is_widget, to_api

pytestmark = pytest.mark.host

WORKFLOWS = Path(__file__).parent / "multigpu_workflows"
CATEGORY = "DisTorch/MultiGPU compatible"
TEXT_ENCODERS = ("CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader", "QuadrupleCLIPLoader", "CLIPVisionLoader")
SCHEMA = json.loads((hostenv.REPO_ROOT / "schemas" / "internal_memory.schema.json").read_text())
MISSING = "cuda:31"  # a saved device no test machine has
FILES = sorted(path.stem for path in WORKFLOWS.glob("*.json"))


def device_input(node_type: str) -> str:
    return next(name for name in ORDER[node_type] if name.endswith("device"))


def load(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def compat_nodes(workflow: dict) -> list[dict]:
    return [node for node in workflow["nodes"] if node["type"] in ORDER]


def widget_names(info: dict) -> list[str]:
    specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
    return [name for name in order if _is_widget(specs[name])]


def widgets(node: dict, object_info: dict) -> dict:
    """A saved node's widget values by input name (the frontend's positional mapping)."""
    return dict(zip(widget_names(object_info[node["type"]]), node["widgets_values"]))


def with_widget(workflow: dict, object_info: dict, match, name: str, value) -> dict:
    """A copy of ``workflow`` with input ``name`` set to ``value`` on the nodes ``match`` picks."""
    copy = json.loads(json.dumps(workflow))
    for node in copy["nodes"]:
        if not match(node):
            continue
        names = widget_names(object_info[node["type"]])
        if name in names:
            node["widgets_values"][names.index(name)] = value
    return copy


def unsplit(workflow: dict, object_info: dict) -> dict:
    for name in ("virtual_vram_gb", "unet_virtual_vram_gb", "clip_virtual_vram_gb"):
        workflow = with_widget(workflow, object_info, lambda node: True, name, 0.0)
    return workflow


def latent_of(comfy, entry: dict) -> torch.Tensor:
    for output in entry["outputs"].values():
        for item in output.get("latents", []):
            return load_file(str(comfy.output_path(item)))["latent_tensor"]
    raise AssertionError(f"no saved latent in {entry['outputs']}")


def memory_models(comfy) -> list[dict]:
    document = comfy.get("/internal/memory")
    jsonschema.validate(document, SCHEMA)  # ControlNet and CLIP vision models included
    return document["models"]


@pytest.fixture(scope="module")
def object_info(comfy):
    info = comfy.object_info()
    yield info
    comfy.request("POST", "/distorch/free", {"force": True})  # what the workflows kept (eject_models off)


def test_each_node_type_has_multigpu_inputs_in_multigpu_order(object_info):
    here = object_info["DisTorchUNETLoader"]["input"]["required"]["compute_device"][0][1:]
    for node_type, order in ORDER.items():
        info = object_info[node_type]
        assert info["input_order"]["required"] + info["input_order"].get("optional", []) == order, node_type
        assert info["category"] == CATEGORY and "MultiGPU compatible" in info["display_name"]
        specs = {**info["input"]["required"], **info["input"].get("optional", {})}
        assert all(len(spec) > 1 and spec[1].get("tooltip") for spec in specs.values()), node_type
        for name in order:
            if name.endswith("device"):
                assert specs[name][0] == here, (node_type, name)  # this machine's devices, no "default"
        if "eject_models" in specs:
            text_encoder = node_type.startswith(TEXT_ENCODERS)
            assert specs["eject_models"][1]["default"] is (not text_encoder), node_type
            assert specs["virtual_vram_gb"][1]["default"] == 4.0 and specs["virtual_vram_gb"][1]["max"] == 128.0
            assert specs["donor_device"][1]["default"] == "cpu"
    saved = {node["type"] for name in FILES for node in compat_nodes(load(name))}
    assert saved == set(ORDER), "every node type has a saved workflow"


def check_placements(comfy, workflow: dict, object_info: dict, log: str) -> None:
    """Each compatibility node's model is recorded under the node's type with keep_loaded =
    not eject_models (no eject_models: not kept); eject_models on flags it for the next unload."""
    models = memory_models(comfy)
    for node in compat_nodes(workflow):
        values = widgets(node, object_info)
        keep = not values["eject_models"] if "eject_models" in values else False
        mine = [m for m in models if m["loader"] == node["type"]]
        if mine:
            assert all(m["keep_loaded"] is keep and m["flagged"] is (not keep) for m in mine), mine
            assert all(m["compute_device"] == "cpu" for m in mine)
        else:  # loaded and dropped again (never used by a sampler, not kept): its record was logged
            assert f"{node['type']}: " in log and f"(keep_loaded={keep})" in log, node["type"]


@pytest.mark.parametrize("name", FILES)
def test_saved_workflow_runs_split_and_unsplit(comfy, object_info, name):
    workflow = load(name)
    prompt = to_api(workflow, object_info)
    splits = [node for node in prompt.values()
              if any(v for k, v in node["inputs"].items() if k.endswith("virtual_vram_gb"))]
    before = len(comfy.log_text())
    entry = comfy.run(prompt)
    log = comfy.log_text()[before:]
    assert log.count(": placement of ") >= len(splits), log[-3000:]
    check_placements(comfy, workflow, object_info, log)
    if not splits or not any(node["type"] == "SaveLatent" for node in workflow["nodes"]):
        return
    split = latent_of(comfy, entry)
    assert torch.isfinite(split).all() and split.abs().max() > 0
    whole = latent_of(comfy, comfy.run(to_api(unsplit(workflow, object_info), object_info)))
    assert torch.equal(split, whole), f"{name}: the split run differs from the unsplit one"


def test_eject_models_flags_the_model_and_off_keeps_it(comfy, object_info):
    workflow = load("separate_distorch2")
    comfy.run(to_api(with_widget(workflow, object_info, lambda n: True, "virtual_vram_gb", 0.0), object_info))
    by_loader = {m["loader"]: m for m in memory_models(comfy)}
    assert by_loader["UNETLoaderDisTorch2MultiGPU"]["flagged"] is True  # eject_models on (saved)
    assert by_loader["UNETLoaderDisTorch2MultiGPU"]["keep_loaded"] is False
    assert by_loader["CLIPLoaderDisTorch2MultiGPU"]["flagged"] is False  # eject_models off (saved)
    assert by_loader["CLIPLoaderDisTorch2MultiGPU"]["keep_loaded"] is True


OUTPUT_NODES = ("SaveImage", "SaveLatent", "PreviewAny")


def outputs_through(prompt: dict, node_id: str) -> dict:
    """``prompt`` cut down to the outputs that depend on ``node_id`` (ComfyUI runs the outputs a
    bad node does not reach and answers 200 with the errors; a test of one node wants a 400)."""
    def ancestors(key, seen):
        seen.add(key)
        for value in prompt[key]["inputs"].values():
            if isinstance(value, list) and value[0] not in seen:
                ancestors(value[0], seen)
        return seen

    keep = set()
    for key, node in prompt.items():
        needed = ancestors(key, set()) if node["class_type"] in OUTPUT_NODES else set()
        if node_id in needed:
            keep |= needed
    return {key: node for key, node in prompt.items() if key in keep}


def only_error(body: dict, node_id: str) -> dict:
    assert set(body["node_errors"]) == {node_id}, body["node_errors"]
    errors = body["node_errors"][node_id]["errors"]
    assert len(errors) == 1, errors
    return errors[0]


NODES = sorted({(node["type"], name) for name in FILES for node in compat_nodes(load(name))})


@pytest.mark.parametrize("node_type,name", NODES, ids=[n for n, _ in NODES])
def test_a_saved_device_this_machine_lacks_is_one_error_on_its_input(comfy, object_info, node_type, name):
    workflow = load(name)
    target = device_input(node_type)
    changed = with_widget(workflow, object_info, lambda node: node["type"] == node_type, target, MISSING)
    (node,) = [n for n in changed["nodes"] if n["type"] == node_type]
    with pytest.raises(PromptRejected) as caught:
        comfy.queue(outputs_through(to_api(changed, object_info), str(node["id"])))
    error = only_error(caught.value.body, str(node["id"]))
    text = f"{error['message']}: {error['details']}"
    assert error["extra_info"]["input_name"] == target
    assert MISSING in text and "'cpu'" in text, text  # the saved device and the devices here


def test_a_bad_donor_or_expert_string_is_one_error_on_its_input(comfy, object_info):
    workflow = load("separate_distorch2")
    unet = lambda node: node["type"] == "UNETLoaderDisTorch2MultiGPU"  # noqa: E731
    with pytest.raises(PromptRejected) as caught:
        comfy.queue(to_api(with_widget(workflow, object_info, unet, "donor_device", MISSING), object_info))
    error = only_error(caught.value.body, "1")
    assert error["extra_info"]["input_name"] == "donor_device" and MISSING in error["details"]
    with pytest.raises(PromptRejected) as caught:
        comfy.queue(to_api(with_widget(workflow, object_info, unet, "expert_mode_allocations",
                                       f"{MISSING},2gb;cpu,*"), object_info))
    error = only_error(caught.value.body, "1")
    assert error["extra_info"]["input_name"] == "expert_mode_allocations"
    assert MISSING in error["details"] and "cpu" in error["details"], error["details"]


def test_an_expert_string_that_cannot_hold_the_model_names_the_input(comfy, object_info):
    """Checked when the node runs (it needs the file): the message uses this node's input name."""
    workflow = with_widget(load("separate_distorch2"), object_info,
                           lambda node: node["type"] == "UNETLoaderDisTorch2MultiGPU", "expert_mode_allocations",
                           "cpu,1kb")
    entry = comfy.wait(comfy.queue(to_api(workflow, object_info)))
    assert entry["status"]["status_str"] == "error"
    message = next(data for kind, data in entry["status"]["messages"] if kind == "execution_error")
    assert message["exception_message"].startswith("expert_mode_allocations:"), message["exception_message"]


FAKE_MULTIGPU = '''
class FakeUNETLoaderMultiGPU:
    CATEGORY = "multigpu"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": ("STRING", {"default": ""})}}

    def load(self, unet_name):
        raise RuntimeError("a stand-in for ComfyUI-MultiGPU")


NODE_CLASS_MAPPINGS = {"UNETLoaderMultiGPU": FakeUNETLoaderMultiGPU}
'''


def test_with_comfyui_multigpu_installed_the_pack_registers_none_of_its_names(tmp_path_factory, model_cache):
    fake = tmp_path_factory.mktemp("packs") / "ComfyUI-MultiGPU"
    fake.mkdir()
    (fake / "__init__.py").write_text(FAKE_MULTIGPU)
    host = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-with-multigpu"), model_cache,
                     hostenv.REPO_ROOT, extra_custom_nodes=(fake,))
    host.start()
    try:
        info = host.object_info()
        log = host.log_text()
    finally:
        host.stop()
    assert info["UNETLoaderMultiGPU"]["category"] == "multigpu"  # ComfyUI-MultiGPU's own
    assert [name for name in ORDER if name in info] == ["UNETLoaderMultiGPU"]
    assert "DisTorchUNETLoader" in info  # the pack's own nodes are there
    lines = [line for line in log.splitlines() if "ComfyUI-MultiGPU is installed" in line]
    assert len(lines) == 1 and "registers none" in lines[0], log[-3000:]
    assert re.search(r"ComfyUI-MultiGPU is installed \(.*ComfyUI-MultiGPU\)", lines[0])
