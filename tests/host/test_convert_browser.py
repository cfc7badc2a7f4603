"""The workflow actions in the canvas menu, in a real browser (Debian's chromium through Playwright)
against a real ComfyUI server with the pack:

- "Convert MultiGPU nodes to DisTorch nodes": saved ComfyUI-MultiGPU workflows
  (multigpu_workflows/) are loaded into the page, converted through the menu and the confirm
  dialog; the graph then holds DisTorch loaders (same ids, positions, links, values mapped as
  nodes/multigpu.py loads them), the nodes without a DisTorch loader unchanged; one Ctrl+Z undoes
  it; the converted workflow runs (queued from the page, success in /history).
- "Move DisTorch nodes to devices this machine has": a workflow naming a device this machine lacks
  is offered the fix when loaded (once), and from the menu; nodes inside a subgraph are found; the
  fixed workflow queues without a node error and runs.
Screenshots go to test-artifacts/."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from comfy_host import PromptRejected
from ui_browser import normalized, screenshot
from ui_workflow import _is_widget, to_api

pytestmark = pytest.mark.host

WORKFLOWS = Path(__file__).parent / "multigpu_workflows"
CONVERT = "Convert MultiGPU nodes to DisTorch nodes"
FIX = "Move DisTorch nodes to devices this machine has"
CONVERT_TITLE = "Convert MultiGPU nodes"
FIX_TITLE = "Devices this machine lacks"
VUE_NODES = "Comfy.VueNodes.Enabled"

# Written from nodes/multigpu.py's PIPELINES, independently of web/multigpu_map.js.
TARGET = {
    "UNETLoaderMultiGPU": "DisTorchUNETLoader", "UNETLoaderDisTorch2MultiGPU": "DisTorchUNETLoader",
    "CLIPLoaderMultiGPU": "DisTorchCLIPLoader", "CLIPLoaderDisTorch2MultiGPU": "DisTorchCLIPLoader",
    "DualCLIPLoaderMultiGPU": "DisTorchDualCLIPLoader", "DualCLIPLoaderDisTorch2MultiGPU": "DisTorchDualCLIPLoader",
    "VAELoaderMultiGPU": "DisTorchVAELoader", "VAELoaderDisTorch2MultiGPU": "DisTorchVAELoader",
    "CheckpointLoaderSimpleMultiGPU": "DisTorchCheckpointLoader",
    "CheckpointLoaderSimpleDisTorch2MultiGPU": "DisTorchCheckpointLoader",
    "CheckpointLoaderAdvancedMultiGPU": "DisTorchCheckpointLoader",
}
CORE_INPUTS = ("unet_name", "weight_dtype", "clip_name", "clip_name1", "clip_name2", "type", "vae_name", "ckpt_name")

# Every node of the open workflow (root graph and subgraph definitions, through the public API) and
# every link, by graph.
GRAPH_STATE = """() => {
    const root = app.rootGraph ?? app.graph;
    const graphs = [root, ...(root.subgraphs?.values() ?? [])];
    const state = {};
    for (const graph of graphs) {
        const key = graph === root ? "root" : graph.name;
        const nodes = graph.nodes.map((n) => ({
            id: n.id, type: n.comfyClass ?? n.type, pos: [...n.pos], size: [...n.size], mode: n.mode,
            widgets: Object.fromEntries((n.widgets ?? []).filter((w) => w.name && w.serialize !== false)
                                        .map((w) => [w.name, w.value])),
        }));
        const links = [...graph.links.values?.() ?? Object.values(graph.links)].map(
            (l) => [l.origin_id, l.origin_slot, l.target_id, l.target_slot, l.type]);
        links.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
        state[key] = { nodes: Object.fromEntries(nodes.map((n) => [n.id, n])), links,
                       input: graph.inputNode?.id ?? null, output: graph.outputNode?.id ?? null };
    }
    return state;
}"""

# A page point over the empty graph canvas (no node, no group, nothing of the UI on top of it).
EMPTY_CANVAS_POINT = """() => {
    const canvas = app.canvas, rect = canvas.canvas.getBoundingClientRect(), ds = canvas.ds;
    for (let fy = 0.25; fy < 0.95; fy += 0.05) {
        for (let fx = 0.95; fx > 0.3; fx -= 0.05) {
            const x = rect.left + rect.width * fx, y = rect.top + rect.height * fy;
            const gx = (x - rect.left) / ds.scale - ds.offset[0], gy = (y - rect.top) / ds.scale - ds.offset[1];
            const graph = canvas.graph;
            if (graph.getNodeOnPos(gx, gy) || graph.getGroupOnPos?.(gx, gy)) continue;
            if (document.elementFromPoint(x, y) !== canvas.canvas) continue;
            return [x, y];
        }
    }
    return null;
}"""


def load_json(name: str) -> dict:
    workflow = json.loads((WORKFLOWS / f"{name}.json").read_text())
    workflow["id"] = str(uuid.uuid4())  # each load is a workflow of its own (the device check asks once per workflow)
    return workflow


def widget_order(info: dict) -> list[str]:
    specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
    return [name for name in order if _is_widget(specs[name])]


def saved_widgets(node: dict, object_info: dict) -> dict:
    return dict(zip(widget_order(object_info[node["type"]]), node["widgets_values"]))


def expected_inputs(node_type: str, old: dict) -> dict | None:
    """The converted node's widget values (None: the node is kept), from nodes/multigpu.py."""
    if node_type not in TARGET:
        return None
    values = {name: old[name] for name in CORE_INPUTS if name in old}
    if node_type == "CheckpointLoaderAdvancedMultiGPU":
        return {**values, "compute_device": old["unet_device"], "clip_device": old["clip_device"],
                "vae_device": old["vae_device"], "keep_loaded": False, "virtual_vram_gb": 0, "donor_device": "cpu",
                "allocation": ""}
    distorch2 = "DisTorch2" in node_type
    if node_type == "VAELoaderDisTorch2MultiGPU" and (old["virtual_vram_gb"] or old["expert_mode_allocations"]):
        return None  # DisTorchVAELoader has no split inputs
    device = old.get("device", old.get("compute_device"))
    values.update(compute_device=device, keep_loaded=(not old["eject_models"]) if distorch2 else False)
    if node_type.startswith("CheckpointLoaderSimple"):
        values.update(vae_device=device, clip_device="default")
    if TARGET[node_type] != "DisTorchVAELoader":
        values.update(virtual_vram_gb=old["virtual_vram_gb"] if distorch2 else 0,
                      donor_device=old["donor_device"] if distorch2 else "cpu",
                      allocation=old["expert_mode_allocations"] if distorch2 else "")
    return values


# ---- page actions --------------------------------------------------------------------------------

def load_into_page(page, workflow: dict) -> None:
    page.evaluate("async (workflow) => { await app.loadGraphData(workflow); }", workflow)
    page.wait_for_timeout(300)


def canvas_menu(page, entry: str) -> None:
    """Right-click the empty canvas and pick ``entry`` from the menu, as a user does."""
    point = page.evaluate(EMPTY_CANVAS_POINT)
    assert point, "no empty spot on the canvas to right-click"
    page.mouse.click(*point, button="right")
    page.locator(".litecontextmenu .litemenu-entry", has_text=entry).click()


def dialog(page, title: str):
    box = page.get_by_role("dialog").filter(has_text=title)
    box.wait_for(timeout=15_000)
    return box


def answer(box, button: str) -> None:
    box.get_by_role("button", name=button).click()
    box.wait_for(state="detached", timeout=10_000)


def items(box) -> list[str]:
    return box.locator("li").all_inner_texts()


def state(page) -> dict:
    return page.evaluate(GRAPH_STATE)


def queue_from_page(page, comfy) -> dict:
    """Queue the open workflow with the frontend's own queue call; the /prompt answer and the prompt sent."""
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST",
                              timeout=60_000) as answered:
        page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    response = answered.value
    body = response.json()
    assert response.status == 200 and not body.get("node_errors"), body
    return {"prompt_id": body["prompt_id"], "prompt": json.loads(response.request.post_data)["prompt"]}


def run_from_page(page, comfy) -> dict:
    queued = queue_from_page(page, comfy)
    entry = comfy.wait(queued["prompt_id"])
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    return queued["prompt"]


# What decides whether the frontend takes a key press as undo / redo: it ignores keys while a modal
# is open or an input has the focus (Nodes 2.0 widgets are DOM inputs).
KEY_TARGET = """() => {
    const active = document.activeElement;
    return { active: active ? `${active.tagName}.${active.className}`.slice(0, 120) : null,
             dialogStack: app.extensionManager?.dialog?.dialogStack?.length ?? null,
             dialogs: [...document.querySelectorAll('[role="dialog"], dialog[open]')].map(
                 (d) => (d.innerText || d.outerHTML).slice(0, 200)) };
}"""


def act_once_and_wait_for_node_type(page, node_type: str, *, keys: str = "", command: str = "",
                                    timeout_ms: int = 15_000) -> None:
    """Press ``keys`` once, or run a frontend ``command`` once as its Edit menu item does (Comfy.Undo,
    Comfy.Redo), then wait until node 1 of the graph is of ``node_type`` (the change tracker applies
    undo and redo asynchronously; a fixed pause was too short on a loaded machine)."""
    target = page.evaluate(KEY_TARGET)
    if keys:
        page.locator("body").press(keys)
    else:
        page.evaluate(f"async () => {{ await app.extensionManager.command.execute({command!r}); }}")
    try:
        page.wait_for_function(f"(({GRAPH_STATE})().root.nodes['1'] || {{}}).type === {json.dumps(node_type)}",
                               timeout=timeout_ms)
    except Exception as exc:
        action = keys or command
        screenshot(page, f"convert-{action.replace('+', '-')}-not-applied")
        raise AssertionError(f"{action} did not bring node 1 to {node_type}; at the action: {target}; "
                             f"the tracker now: {page.evaluate(TRACKER)}") from exc


# ---- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def object_info(comfy):
    return comfy.object_info()


@pytest.fixture(scope="module", params=[False, True], ids=["nodes-1", "nodes-2"])
def page(request, browser, comfy):
    """The page, with the frontend's "Nodes 2.0" (Vue nodes, setting Comfy.VueNodes.Enabled) off,
    then on: every test here runs in both. The setting is stored on the server, so it is switched
    back off afterwards."""
    page = browser.open(comfy.url)
    if not request.param:
        yield page
        return
    if page.evaluate(f"() => app.extensionManager.setting.get({VUE_NODES!r})") is None:
        pytest.skip(f"this frontend has no {VUE_NODES} setting (Nodes 2.0 came with frontend 1.3x)")
    page.evaluate(f"async () => await app.extensionManager.setting.set({VUE_NODES!r}, true)")
    try:
        page.wait_for_timeout(500)
        yield page
    finally:
        page.evaluate(f"async () => await app.extensionManager.setting.set({VUE_NODES!r}, false)")
        page.close()


# ---- convert -----------------------------------------------------------------------------------

def test_convert_lists_each_change_and_keeps_ids_positions_values_and_links(page, comfy, object_info):
    workflow = load_json("separate_distorch2")
    load_into_page(page, workflow)
    before = state(page)["root"]
    canvas_menu(page, CONVERT)
    box = dialog(page, CONVERT_TITLE)
    listed = items(box)
    screenshot(page, "convert-multigpu-dialog")
    assert "2 nodes converted, 1 kept" in box.inner_text()
    assert listed[:2] == [
        "Load Diffusion Model DisTorch2 (MultiGPU compatible) #1: UNETLoaderDisTorch2MultiGPU -> DisTorchUNETLoader",
        "Load CLIP DisTorch2 (MultiGPU compatible) #2: CLIPLoaderDisTorch2MultiGPU -> DisTorchCLIPLoader"], listed
    assert len(listed) == 3 and listed[2].startswith(
        "Load VAE DisTorch2 (MultiGPU compatible) #3: VAELoaderDisTorch2MultiGPU kept,"), listed
    assert "virtual_vram_gb 0.051" in listed[2] and "no split inputs" in listed[2], listed
    answer(box, "Confirm")

    after = state(page)["root"]
    assert {i: n["type"] for i, n in after["nodes"].items()} == {
        **{i: n["type"] for i, n in before["nodes"].items()},
        "1": "DisTorchUNETLoader", "2": "DisTorchCLIPLoader"}
    assert after["links"] == before["links"]  # same sources, slots and targets
    saved = {str(node["id"]): node for node in workflow["nodes"]}
    for node_id in ("1", "2"):
        node, old = after["nodes"][node_id], before["nodes"][node_id]
        assert node["pos"] == old["pos"] and node["size"][0] == old["size"][0] and node["size"][1] >= old["size"][1]
        expected = expected_inputs(saved[node_id]["type"], saved_widgets(saved[node_id], object_info))
        assert {name: node["widgets"][name] for name in expected} == expected, node["widgets"]
    assert after["nodes"]["1"]["widgets"]["keep_loaded"] is False  # eject_models was on
    assert after["nodes"]["2"]["widgets"]["keep_loaded"] is True   # eject_models was off
    assert after["nodes"]["2"]["widgets"]["virtual_vram_gb"] == pytest.approx(0.21)
    assert after["nodes"]["3"] == before["nodes"]["3"]  # kept as it was
    screenshot(page, "convert-multigpu-converted")


# The frontend's change tracker (1.49) records a change when it compares the graph with its last
# state; an undo pressed before it has recorded the conversion has nothing to undo.
RECORDED = """(type) => {
    const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
    if (!tracker) return true;  // a frontend without the workflow store: nothing to wait for
    const node = (tracker.activeState?.nodes || []).find((n) => String(n.id) === "1");
    return tracker.undoQueue.length > 0 && node?.type === type;
}"""


# What the change tracker holds, for the message of a wait that timed out.
TRACKER = """() => {
    const store = app.extensionManager?.workflow, tracker = store?.activeWorkflow?.changeTracker;
    if (!tracker) return null;
    const node = (state) => (state?.nodes || []).find((n) => String(n.id) === "1")?.type ?? null;
    return { workflow: store.activeWorkflow.path, open: store.openWorkflows?.length,
             changeCount: tracker.changeCount, loading: tracker.constructor.isLoadingGraph,
             restoring: tracker._restoringState, undo: tracker.undoQueue.length,
             undoNode1: node(tracker.undoQueue.at(-1)), activeNode1: node(tracker.activeState),
             graphNode1: (app.rootGraph ?? app.graph).getNodeById(1)?.type ?? null };
}"""


def wait_until_recorded(page, node_type: str) -> None:
    try:
        page.wait_for_function(RECORDED, arg=node_type, timeout=15_000)
    except Exception as exc:
        raise AssertionError(f"the change tracker did not record the conversion: {page.evaluate(TRACKER)}") from exc


# The undo entry the tracker holds (the last one) and the state it holds now, by node id.
UNDO_STEP = """() => {
    const tracker = app.extensionManager.workflow.activeWorkflow.changeTracker;
    const types = (graph) => Object.fromEntries((graph?.nodes || []).map((n) => [String(n.id), n.type]));
    return { before: types(tracker.undoQueue.at(-1)), now: types(tracker.activeState) };
}"""


def test_one_undo_brings_the_multigpu_nodes_back_and_redo_converts_again(page):
    """One undo, then one redo. With Nodes 2.0 off as a user presses Ctrl+Z and Ctrl+Y. With Nodes
    2.0 on through the Edit menu's Undo and Redo (the commands the keys run): there frontend 1.49 at
    times ignored the key press, outside the pack; the conversion is also checked as one undo step
    in its change tracker first."""
    converted = state(page)["root"]
    wait_until_recorded(page, "DisTorchUNETLoader")
    nodes_2 = page.evaluate(f"() => app.extensionManager.setting.get({VUE_NODES!r})")
    if nodes_2:
        step = page.evaluate(UNDO_STEP)
        assert {key: step["before"][key] for key in ("1", "2", "3")} == {
            "1": "UNETLoaderDisTorch2MultiGPU", "2": "CLIPLoaderDisTorch2MultiGPU", "3": "VAELoaderDisTorch2MultiGPU"}, step
        assert {key: step["now"][key] for key in ("1", "2", "3")} == {
            "1": "DisTorchUNETLoader", "2": "DisTorchCLIPLoader", "3": "VAELoaderDisTorch2MultiGPU"}, step
    act_once_and_wait_for_node_type(page, "UNETLoaderDisTorch2MultiGPU",
                                    **({"command": "Comfy.Undo"} if nodes_2 else {"keys": "Control+z"}))
    restored = state(page)["root"]
    assert restored["nodes"]["1"]["type"] == "UNETLoaderDisTorch2MultiGPU"
    assert restored["nodes"]["2"]["type"] == "CLIPLoaderDisTorch2MultiGPU"
    assert restored["links"] == converted["links"]
    act_once_and_wait_for_node_type(page, "DisTorchUNETLoader",
                                    **({"command": "Comfy.Redo"} if nodes_2 else {"keys": "Control+y"}))
    assert state(page)["root"]["nodes"]["1"]["type"] == "DisTorchUNETLoader"


def test_the_converted_workflow_runs(page, comfy):
    prompt = run_from_page(page, comfy)
    assert {key: prompt[key]["class_type"] for key in ("1", "2", "3")} == {
        "1": "DisTorchUNETLoader", "2": "DisTorchCLIPLoader", "3": "VAELoaderDisTorch2MultiGPU"}
    assert prompt["1"]["inputs"]["virtual_vram_gb"] == pytest.approx(0.031)
    assert prompt["1"]["inputs"]["keep_loaded"] is False and prompt["2"]["inputs"]["keep_loaded"] is True


def test_a_node_inside_a_subgraph_is_converted_with_its_links_through_the_subgraph(page, comfy, object_info):
    workflow = load_json("checkpoint_advanced")
    load_into_page(page, workflow)
    page.evaluate("""() => {
        const node = app.graph.getNodeById(1);
        app.graph.convertToSubgraph(new Set([node]));
    }""")
    before = state(page)
    (name,) = [key for key in before if key != "root"]
    inner = before[name]
    (loader,) = [n for n in inner["nodes"].values() if n["type"] == "CheckpointLoaderAdvancedMultiGPU"]
    out_links = sorted(link for link in inner["links"] if link[0] == loader["id"])
    # MODEL, CLIP (to both text encoders) and VAE leave the subgraph through its output node
    assert {link[2] for link in out_links} == {inner["output"]} and {link[1] for link in out_links} == {0, 1, 2}

    canvas_menu(page, CONVERT)
    box = dialog(page, CONVERT_TITLE)
    assert items(box) == [f'Checkpoint Loader Advanced (MultiGPU compatible) #{loader["id"]} in subgraph "{name}": '
                          "CheckpointLoaderAdvancedMultiGPU -> DisTorchCheckpointLoader"]
    answer(box, "Confirm")

    after = state(page)
    node = after[name]["nodes"][str(loader["id"])]
    assert node["type"] == "DisTorchCheckpointLoader"
    # The same connections (convertToSubgraph leaves two identical CLIP links into the subgraph's
    # output; a subgraph output takes one link, so one is made), the root graph untouched.
    assert set(map(tuple, after[name]["links"])) == set(map(tuple, inner["links"]))
    assert after["root"] == before["root"]
    assert node["widgets"] == {**node["widgets"], **expected_inputs(
        "CheckpointLoaderAdvancedMultiGPU", saved_widgets(workflow["nodes"][0], object_info))}
    prompt = run_from_page(page, comfy)
    assert sorted(entry["class_type"] for entry in prompt.values() if "Checkpoint" in entry["class_type"]) == [
        "DisTorchCheckpointLoader"]


@pytest.mark.parametrize("name", sorted(path.stem for path in WORKFLOWS.glob("*.json")))
def test_every_saved_multigpu_workflow_converts_as_the_compatibility_nodes_load(page, object_info, name):
    """Each saved workflow: what is converted and what is kept, and the converted nodes' values in
    the prompt the page would queue (checked by the server's own validation through /prompt's
    sibling: the frontend's graphToPrompt is what it sends)."""
    workflow = load_json(name)
    load_into_page(page, workflow)
    multigpu = [node for node in workflow["nodes"] if node["type"] in object_info
                and object_info[node["type"]]["category"] == "DisTorch/MultiGPU compatible"]
    expected = {str(node["id"]): expected_inputs(node["type"], saved_widgets(node, object_info)) for node in multigpu}
    converts = sorted(key for key, values in expected.items() if values is not None)
    canvas_menu(page, CONVERT)
    if not converts:
        toast = page.locator(".p-toast-message", has_text="has a DisTorch equivalent").last
        toast.wait_for(timeout=15_000)
        assert f"None of the {len(multigpu)} ComfyUI-MultiGPU node" in toast.inner_text()
        page.evaluate("() => app.extensionManager.toast.removeAll?.()")
        return
    box = dialog(page, CONVERT_TITLE)
    assert f"{len(converts)} node{'s' if len(converts) != 1 else ''} converted, {len(multigpu) - len(converts)} kept" \
        in box.inner_text()
    answer(box, "Confirm")
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    for node in multigpu:
        key = str(node["id"])
        if expected[key] is None:
            assert prompt[key]["class_type"] == node["type"]
            continue
        assert prompt[key]["class_type"] == TARGET[node["type"]]
        inputs = prompt[key]["inputs"]
        assert {k: inputs[k] for k in expected[key]} == expected[key], (node["type"], inputs)
    page.evaluate("() => app.extensionManager.toast.removeAll?.()")


# ---- devices this machine lacks --------------------------------------------------------------

def missing_device(object_info) -> str:
    listed = object_info["DisTorchUNETLoader"]["input"]["required"]["compute_device"][0]
    return next(device for device in ("cuda:7", "cuda:31") if device not in listed)


def distorch_workflow(object_info, missing: str) -> dict:
    """separate_distorch2's graph with DisTorch loaders: the diffusion model runs on ``missing`` and
    parks 0.031 GiB on ``missing``, the VAE runs on ``missing``, the text encoder on cpu."""
    workflow = load_json("separate_distorch2")
    values = {
        1: ("DisTorchUNETLoader", {"unet_name": "distorch-test-unet.safetensors", "weight_dtype": "default",
                                   "compute_device": missing, "keep_loaded": False, "virtual_vram_gb": 0.031,
                                   "donor_device": missing, "allocation": ""}),
        2: ("DisTorchCLIPLoader", {"clip_name": "distorch-test-clip-l.safetensors", "type": "stable_diffusion",
                                   "compute_device": "cpu", "keep_loaded": False, "virtual_vram_gb": 0.0,
                                   "donor_device": "cpu", "allocation": ""}),
        3: ("DisTorchVAELoader", {"vae_name": "distorch-test-vae.safetensors", "compute_device": missing,
                                  "keep_loaded": False}),
    }
    for node in workflow["nodes"]:
        if node["id"] in values:
            node_type, by_name = values[node["id"]]
            node["type"] = node["properties"]["Node name for S&R"] = node_type
            node["widgets_values"] = [by_name[name] for name in widget_order(object_info[node_type])]
    return workflow


def expected_fix(missing: str, vae_where: str = "") -> list[str]:
    return [f"Load Diffusion Model (DisTorch) #1: compute_device {missing} -> default",
            f"Load Diffusion Model (DisTorch) #1: donor_device {missing} -> cpu",
            f"Load VAE (DisTorch) #3{vae_where}: compute_device {missing} -> default"]


def test_a_loaded_workflow_naming_a_missing_device_is_offered_the_fix(page, comfy, object_info):
    missing = missing_device(object_info)
    workflow = distorch_workflow(object_info, missing)
    with pytest.raises(PromptRejected):  # as saved, the server refuses it
        comfy.queue(to_api(workflow, object_info))
    load_into_page(page, workflow)
    box = dialog(page, FIX_TITLE)
    assert items(box) == expected_fix(missing)
    assert "3 device inputs name a device this machine does not have" in box.inner_text()
    screenshot(page, "fix-devices-dialog")
    answer(box, "Confirm")
    nodes = state(page)["root"]["nodes"]
    assert nodes["1"]["widgets"]["compute_device"] == "default" and nodes["1"]["widgets"]["donor_device"] == "cpu"
    assert nodes["1"]["widgets"]["virtual_vram_gb"] == pytest.approx(0.031)
    assert nodes["3"]["widgets"]["compute_device"] == "default"
    assert nodes["2"]["widgets"]["compute_device"] == "cpu"
    prompt = run_from_page(page, comfy)
    assert prompt["1"]["inputs"]["compute_device"] == "default" and prompt["1"]["inputs"]["donor_device"] == "cpu"


def test_the_fix_is_offered_once_per_workflow_and_then_from_the_menu(page, object_info):
    missing = missing_device(object_info)
    workflow = distorch_workflow(object_info, missing)
    load_into_page(page, workflow)
    answer(dialog(page, FIX_TITLE), "Cancel")
    load_into_page(page, workflow)  # the same workflow again (as undo and tab switches do): not asked again
    page.wait_for_timeout(1000)
    assert page.get_by_role("dialog").filter(has_text=FIX_TITLE).count() == 0
    assert state(page)["root"]["nodes"]["1"]["widgets"]["compute_device"] == missing
    canvas_menu(page, FIX)
    box = dialog(page, FIX_TITLE)
    assert items(box) == expected_fix(missing)
    answer(box, "Cancel")
    assert state(page)["root"]["nodes"]["1"]["widgets"]["compute_device"] == missing  # no means no change


def test_a_multigpu_compatible_node_moves_to_its_own_default(page, comfy, object_info):
    """Their device lists have no `default`: the list's own default (first GPU, else cpu)."""
    missing = missing_device(object_info)
    listed = object_info["UNETLoaderMultiGPU"]["input"]["optional"]["device"][0]
    expected = next((device for device in listed if device != "cpu"), "cpu")
    workflow = load_json("separate_plain")
    workflow["nodes"][0]["widgets_values"][2] = missing
    load_into_page(page, workflow)
    box = dialog(page, FIX_TITLE)
    assert items(box) == [f"Load Diffusion Model (MultiGPU compatible) #1: device {missing} -> {expected}"]
    answer(box, "Confirm")
    assert state(page)["root"]["nodes"]["1"]["widgets"]["device"] == expected


def test_both_actions_are_commands_too(page):
    commands = page.evaluate("() => app.extensionManager.command.commands.map((c) => [c.id, c.label])")
    assert ["DisTorch.ConvertMultiGPUNodes", CONVERT] in commands
    assert ["DisTorch.MoveToDevicesThisMachineHas", FIX] in commands


def test_the_fix_finds_nodes_inside_subgraphs(page, comfy, object_info):
    missing = missing_device(object_info)
    load_into_page(page, distorch_workflow(object_info, missing))
    answer(dialog(page, FIX_TITLE), "Cancel")
    page.evaluate("() => { app.graph.convertToSubgraph(new Set([app.graph.getNodeById(3)])); }")
    (name,) = [key for key in state(page) if key != "root"]
    canvas_menu(page, FIX)
    box = dialog(page, FIX_TITLE)
    assert items(box) == expected_fix(missing, f' in subgraph "{name}"')
    answer(box, "Confirm")
    (vae,) = [n for n in state(page)[name]["nodes"].values() if n["type"] == "DisTorchVAELoader"]
    assert vae["widgets"]["compute_device"] == "default"
    run_from_page(page, comfy)
    canvas_menu(page, FIX)  # nothing left to move: says so
    page.locator(".p-toast-message", has_text="Every device the pack's nodes name is on this machine").last.wait_for(
        timeout=15_000)


def test_no_console_errors_caused_by_the_pack(browser, comfy_core, object_info, bare_console_errors):
    """Beyond a bare host's own errors, two kinds are expected, neither from the pack's actions:
    - the frontend asks the Comfy registry (api.comfy.org, unreachable here) which pack provides
      each node type of a loaded workflow whose nodes carry no `cnr_id` (the test workflows are
      written by hand, so none does): a bare host logs the same for any such workflow;
    - the allocation preview's GET /distorch/plan answers 400 for the loaded nodes that name the
      missing device (Chromium logs every 4xx answer to fetch(); the node shows the message)."""
    missing = missing_device(object_info).replace(":", "%3A")
    baseline = browser.baseline_console_errors(comfy_core.url, cache=bare_console_errors)
    caused = sorted(normalized(browser.console.entries) - baseline)
    registry = [e for e in caused if e[1].startswith("https://api.comfy.org/") and "ERR_NAME_NOT_RESOLVED" in e[0]]
    preview = [e for e in caused if "status of 400" in e[0] and e[1].startswith("HOST/api/distorch/plan?")
               and f"compute_device={missing}" in e[1]]
    assert [e for e in caused if e not in registry and e not in preview] == [], "\n".join(map(str, caused))
