"""The README's walkthrough, done as a user does it, in a real browser (Debian's chromium through
Playwright) against a real ComfyUI server with the pack: open the split example, pick a device,
read the split preview, press Run, read the memory panel, unload one model. Each step asserts what
the README says the user sees, and saves the screenshot the README shows (test-artifacts/
walkthrough-*.png; copied to docs/ when they change)."""
import json
import re
import urllib.parse

import pytest

import hostenv
from ui_browser import screenshot, widget_center

pytestmark = pytest.mark.host

EXAMPLE = hostenv.REPO_ROOT / "example_workflows" / "distorch_split_txt2img.json"
TAB_BUTTON = ".distorch-memory-tab-button"
PANEL = ".distorch-memory"
UNET_NODE = "app.graph.nodes.find(n => n.comfyClass === 'DisTorchUNETLoader')"


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, model_cache):
    """A server of its own: the panel shows only what the walkthrough loads."""
    from comfy_host import ComfyHost

    server = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-walkthrough"), model_cache,
                       hostenv.REPO_ROOT)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(browser, comfy):
    page = browser.open(comfy.url)
    page.evaluate("async (workflow) => { await app.loadGraphData(workflow); }", json.loads(EXAMPLE.read_text()))
    page.wait_for_timeout(500)
    return page


def node_clip(page, node: str, below: int = 70) -> dict:
    """The screen area of ``node`` (title included) and the preview drawn under it."""
    return page.evaluate(f"""() => {{
        const node = {node}, ds = app.canvas.ds, rect = app.canvas.canvas.getBoundingClientRect();
        const x = (node.pos[0] + ds.offset[0]) * ds.scale + rect.left;
        const y = (node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT + ds.offset[1]) * ds.scale + rect.top;
        return {{x: x - 20, y: y - 20, width: node.size[0] * ds.scale + 40,
                 height: (node.size[1] + LiteGraph.NODE_TITLE_HEIGHT + {below}) * ds.scale + 20}};
    }}""")


def test_1_a_loader_lists_this_machines_devices_with_their_free_memory(page):
    # zoomed in on the loader, as a user does to read it (the example opens framed, smaller)
    page.evaluate(f"""() => {{
        const node = {UNET_NODE}, ds = app.canvas.ds;
        ds.scale = 1;
        ds.offset = [120 - node.pos[0], 170 - node.pos[1]];
        app.canvas.setDirty(true, true);
    }}""")
    page.wait_for_timeout(300)
    x, y = widget_center(page, UNET_NODE, "compute_device")
    page.mouse.click(x, y)
    entries = page.locator(".litecontextmenu .litemenu-entry")
    entries.first.wait_for(timeout=10_000)
    labels = entries.all_inner_texts()
    assert "default" in labels and any(re.fullmatch(r"cpu · \d+\.\d GiB free", t) for t in labels), labels
    clip = node_clip(page, UNET_NODE, below=0)
    menu = page.locator(".litecontextmenu").bounding_box()
    right, bottom = max(clip["x"] + clip["width"], menu["x"] + menu["width"] + 20), \
        max(clip["y"] + clip["height"], menu["y"] + menu["height"] + 20)
    screenshot(page, "walkthrough-device-menu", {**clip, "width": right - clip["x"], "height": bottom - clip["y"]})
    page.locator(".litecontextmenu .litemenu-entry", has_text="default").first.click()  # keep the default
    page.locator(".litecontextmenu").wait_for(state="detached", timeout=10_000)


PREVIEWED = {}  # slot -> percent as the preview shows it (step 2), and the largest layer's, for step 3


def test_2_the_split_preview_says_where_the_weights_go_and_why(page, comfy):
    page.wait_for_function(f"() => {UNET_NODE}.distorchPreview?.error === false", timeout=30_000)
    text = page.evaluate(f"() => {UNET_NODE}.distorchPreview.text")
    split, why, note = text.split("\n")
    assert re.fullmatch(r"split: cpu \d+% \([\d.]+ MiB\) · cpu \(donor\) \d+% \([\d.]+ MiB\)", split), text
    assert re.match(r"\d+% requested on cpu, \d+% kept: ", why), text
    # the file is fp16; ComfyUI stores it as fp32 on a CPU, and the preview plans (and says) so
    assert note.startswith("Sizes as ComfyUI loads this float16 file on cpu: float32 (52.0 MiB; 26.0 MiB on disk)."), text
    PREVIEWED.update((slot, int(share)) for slot, share in re.findall(r"(cpu(?: \(donor\))?) (\d+)%", split))
    virtual = page.evaluate(f"() => {UNET_NODE}.widgets.find(w => w.name === 'virtual_vram_gb').value")
    plan = comfy.get("/distorch/plan?" + urllib.parse.urlencode(
        {"file": "distorch-test-unet.safetensors", "virtual_vram_gb": virtual, "donor_device": "cpu"}))
    PREVIEWED["layer"] = 100 * max(m["bytes"] for m in plan["modules"]) / plan["model_bytes"]
    screenshot(page, "walkthrough-split-preview", node_clip(page, UNET_NODE, below=110))


def logged_shares(log: str) -> dict:
    """slot -> percent (rounded) of the diffusion model's plan table in the server log."""
    table = log.split("DisTorchUNETLoader 'distorch-test-unet.safetensors': placement of ", 1)[1]
    rows = re.findall(r"^(cpu(?: \(donor\))?)\s+[\d.]+\s+\d+\s+([\d.]+)%$", table, re.M)
    return {slot: round(float(share)) for slot, share in rows[:2]}


def test_3_run_saves_an_image(page, comfy):
    before = set(comfy.get("/history"))
    mark = len(comfy.log_text())
    page.get_by_role("button", name="Run", exact=True).first.click()
    entry = None
    for _ in range(600):
        new = set(comfy.get("/history")) - before
        if new:
            entry = comfy.wait(new.pop(), timeout=300)
            break
        page.wait_for_timeout(200)
    assert entry is not None, "pressing Run queued nothing"
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = [i for out in entry["outputs"].values() for i in out.get("images", [])]
    assert images and images[0]["filename"].startswith("distorch-demo")
    # the run splits as the preview said, at the same sizes; its plan, made on the loaded model in
    # layer order (the preview's is in the header's name order), is within a layer of the preview's
    log = comfy.log_text()[mark:]
    assert "placement of 52.0 MiB (the weights as loaded: float32, in layer order)" in log, log[-3000:]
    logged = logged_shares(log)
    assert set(logged) == {"cpu", "cpu (donor)"} and logged["cpu (donor)"] > 0, log[-3000:]
    for slot, share in logged.items():
        assert abs(share - PREVIEWED[slot]) <= PREVIEWED["layer"] + 1, (slot, logged, PREVIEWED)


def test_4_the_panel_shows_each_model_with_its_part_and_loader(page, comfy):
    page.click(TAB_BUTTON)
    page.wait_for_function(f"() => document.querySelectorAll('{PANEL} li[data-model-id]').length === 3",
                           timeout=30_000)
    parts = page.eval_on_selector_all(f"{PANEL} li[data-model-id]", "els => els.map(e => e.innerText)")
    joined = "\n".join(parts)
    for words in ("diffusion model · DisTorchUNETLoader", "text encoder · DisTorchCLIPLoader",
                  "VAE · DisTorchVAELoader"):
        assert words in joined.replace("\n", " ").replace("\xa0", " "), joined
    screenshot(page, "walkthrough-panel", page.locator(".distorch-memory-tab").first.bounding_box())


def test_5_unload_on_a_row_unloads_that_model_only(page, comfy):
    report = comfy.get("/internal/memory")
    (unet,) = [m for m in report["models"] if m["loader"] == "DisTorchUNETLoader"]
    page.click(f'{PANEL} li[data-model-id="{unet["id"]}"] button[data-action="unload-model"]')
    dialog = page.get_by_role("dialog").filter(has_text="Unload model")
    dialog.wait_for(timeout=10_000)
    dialog.get_by_role("button", name="Confirm").click()
    page.locator(".p-toast-message", has_text="Unloaded").wait_for(timeout=60_000)
    after = {m["id"] for m in comfy.get("/internal/memory")["models"]}
    assert unet["id"] not in after and len(after) == 2, after
