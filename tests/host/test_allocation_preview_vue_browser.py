"""The allocation preview with the frontend's Vue node mode ("Nodes 2.0", setting
Comfy.VueNodes.Enabled) in a real browser against a real server: Vue nodes draw no canvas extras,
so the preview is a DOM row at the bottom of the node; it shows the split the route plans or the
parser's error, and it changes neither the prompt nor the saved workflow. The setting is stored
on the server, so it is switched back off for the browser tests that follow."""
import pytest

from test_allocation_preview_browser import INVALID, VALID
from ui_browser import add_node, screenshot

pytestmark = pytest.mark.host

NODE = "window.distorchVueNode"
SETTING = "Comfy.VueNodes.Enabled"


@pytest.fixture(scope="module")
def page(browser, comfy):
    page = browser.open(comfy.url)
    page.evaluate(f"async () => await app.extensionManager.setting.set({SETTING!r}, true)")
    try:
        page.wait_for_timeout(500)
        add_node(page, "DisTorchUNETLoader", "distorchVueNode", pos=(300, 150))
        yield page
    finally:
        page.evaluate(f"async () => await app.extensionManager.setting.set({SETTING!r}, false)")


def set_allocation(page, text):
    page.evaluate(f"""() => {{ const w = {NODE}.widgets.find(w => w.name === 'allocation');
                     w.value = {text!r}; w.callback?.(w.value); }}""")


def preview_row(page, error: bool) -> tuple[str, str]:
    page.wait_for_function(f"() => {NODE}.distorchPreview?.error === {str(error).lower()}", timeout=30_000)
    row = page.locator(f'[data-node-id="{page.evaluate(f"() => {NODE}.id")}"] .distorch-split-preview')
    row.wait_for(timeout=10_000)
    return row.inner_text(), row.evaluate("e => getComputedStyle(e).color")


def test_the_split_preview_is_a_row_of_the_vue_node(page, comfy):
    assert page.locator("[data-node-id]").count() >= 1, "the Vue node mode is not on"
    set_allocation(page, VALID)
    text, colour = preview_row(page, error=False)
    assert text == page.evaluate(f"() => {NODE}.distorchPreview.text")
    assert text.startswith("split: ") and "cpu (donor)" in text and colour == "rgb(154, 210, 154)"
    screenshot(page, "allocation-preview-vue")


def test_an_invalid_allocation_shows_the_parsers_message_in_red(page):
    set_allocation(page, INVALID)
    text, colour = preview_row(page, error=True)
    assert "unknown unit 'xb'" in text and colour == "rgb(255, 107, 107)"
    set_allocation(page, VALID)
    assert preview_row(page, error=False)[0].startswith("split: ")


def test_the_preview_is_not_part_of_the_prompt_or_the_workflow(page):
    inputs, values = page.evaluate(f"""async () => {{
        const p = await app.graphToPrompt(), id = {NODE}.id;
        return [Object.keys(p.output[String(id)].inputs), p.workflow.nodes.find(n => String(n.id) === String(id)).widgets_values];
    }}""")
    assert inputs == ["unet_name", "weight_dtype", "compute_device", "keep_loaded", "virtual_vram_gb",
                      "donor_device", "allocation"]
    assert len(values) == len(inputs) and values[-1] == VALID
