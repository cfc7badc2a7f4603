"""The allocation preview under DisTorch loader nodes, in a real browser (Debian's chromium through
Playwright) against a real ComfyUI server with the pack: a valid allocation draws the split that
GET /distorch/plan answers for the same query; an invalid one draws the parser's message (the
route's 400 text); fixing it brings the split back. Screenshots go to test-artifacts/."""
import urllib.parse

import pytest

from ui_browser import add_node, normalized, screenshot, widget_center

pytestmark = pytest.mark.host

NODE = "window.distorchAllocationNode"
# On a CPU-only machine the donor is the compute device itself ("cpu (donor)"); a device may appear
# only once in the bytes and ratio forms, so the fraction form asks for it: 80 % kept, the rest parked.
VALID = "0.8"
INVALID = "cpu,2.5xb"
# Chromium logs every 4xx answer to fetch(); the invalid allocation's plan request is one.
REJECTED_PLAN = ("Failed to load resource: the server responded with a status of 400 (Bad Request)",
                 "HOST/api/distorch/plan?")

# Records what is drawn on the graph canvas, in canvas pixels, while window.distorchDrawn is a list.
RECORD_TEXT = """() => {
    if (window.distorchRecording) return;
    window.distorchRecording = true;
    const fillText = CanvasRenderingContext2D.prototype.fillText;
    CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
        if (window.distorchDrawn && this.canvas === app.canvas.canvas) {
            const at = this.getTransform().transformPoint({ x, y });
            window.distorchDrawn.push({ text: String(text), x: at.x, y: at.y });
        }
        return fillText.call(this, text, x, y, ...rest);
    };
}"""


@pytest.fixture(scope="module")
def page(browser, comfy):
    page = browser.open(comfy.url)
    page.evaluate(RECORD_TEXT)
    add_node(page, "DisTorchUNETLoader", "distorchAllocationNode", pos=(300, 150))
    return page


def widget_value(page, name):
    return page.evaluate(f"() => {NODE}.widgets.find(w => w.name === {name!r}).value")


def allocation_visible(page) -> bool:
    return page.evaluate(f"() => {NODE}.isWidgetVisible({NODE}.widgets.find(w => w.name === 'allocation'))")


def show_allocation(page):
    """`allocation` is declared advanced. Frontend 1.32.9 still draws it (it sets only the widget's
    options.advanced, which nothing reads); a frontend that hides advanced widgets offers "Show
    Advanced" in the node's menu, and this uses it as a user would."""
    if allocation_visible(page):
        return
    x, y = page.evaluate(f"""() => {{
        const node = {NODE}, ds = app.canvas.ds, rect = app.canvas.canvas.getBoundingClientRect();
        const gx = node.pos[0] + 40, gy = node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT / 2;
        return [(gx + ds.offset[0]) * ds.scale + rect.left, (gy + ds.offset[1]) * ds.scale + rect.top];
    }}""")
    page.mouse.click(x, y, button="right")
    page.locator(".litecontextmenu .litemenu-entry", has_text="Show Advanced").click()
    page.wait_for_timeout(300)
    assert allocation_visible(page)


def type_allocation(page, text):
    """Click the allocation input and type into the frontend's prompt, as a user does."""
    x, y = widget_center(page, NODE, "allocation")
    page.mouse.click(x, y)
    box = page.locator(".graphdialog input.value")
    box.wait_for(timeout=10_000)
    box.fill(text)
    box.press("Enter")
    assert widget_value(page, "allocation") == text


def wait_for_preview(page, error: bool) -> str:
    page.wait_for_function(f"() => {NODE}.distorchPreview?.error === {str(error).lower()}", timeout=30_000)
    return page.evaluate(f"() => {NODE}.distorchPreview.text")


def drawn_under_node(page) -> str:
    """The text the next canvas frame draws below the node's body, line by line."""
    return page.evaluate(f"""async () => {{
        window.distorchDrawn = [];
        app.canvas.setDirty(true, true);
        app.canvas.draw(true, true);
        const drawn = window.distorchDrawn;
        window.distorchDrawn = null;
        const node = {NODE}, ds = app.canvas.ds, dpr = app.canvas.canvas.width / app.canvas.canvas.clientWidth;
        const bottom = (node.pos[1] + node.size[1] + ds.offset[1]) * ds.scale * dpr;
        const left = (node.pos[0] + ds.offset[0]) * ds.scale * dpr, right = left + node.size[0] * ds.scale * dpr;
        return drawn.filter(d => d.y > bottom && d.x >= left - 1 && d.x < right).map(d => d.text).join(" ");
    }}""")


def last_plan_query(browser) -> str:
    asked = [url for url in browser.requests if "/distorch/plan?" in url]
    assert asked, "the page sent no GET /distorch/plan"
    return asked[-1].split("?", 1)[1]


def test_a_valid_allocation_previews_the_split_the_route_plans(browser, comfy, page):
    show_allocation(page)
    type_allocation(page, VALID)
    text = wait_for_preview(page, error=False)
    query = urllib.parse.parse_qs(last_plan_query(browser))
    assert query["allocation"] == [VALID] and query["file"] == [widget_value(page, "unet_name")]
    plan = comfy.get("/distorch/plan?" + last_plan_query(browser))
    slots = {d["slot"] for d in plan["devices"]}
    assert slots == {"cpu", "cpu (donor)"}, plan["devices"]
    sizes = page.evaluate("""async (devices) => {
        const { formatBytes } = await import("/extensions/comfyui-distorch/format.js");
        return devices.map((d) => `${d.slot} ${Math.round(100 * d.share)}% (${formatBytes(d.bytes)})`);
    }""", plan["devices"])
    # 0.8 asks for 80 % on the compute device; the planner keeps less (room for the layer in
    # flight, whole layers), and the node says why in a second line, and what the sizes are in a third
    assert plan["why"].startswith("80% requested on cpu, "), plan["why"]
    assert plan["note"].endswith("Read in name order; the load plans in layer order and logs its plan."), plan["note"]
    assert text == "split: " + " · ".join(sizes) + "\n" + plan["why"] + "\n" + plan["note"]
    assert drawn_under_node(page) == text.replace("\n", " ")
    screenshot(page, "allocation-preview")


def test_an_invalid_allocation_shows_the_parsers_message_under_the_node(browser, comfy, page):
    type_allocation(page, INVALID)
    text = wait_for_preview(page, error=True)
    status, body = comfy.request("GET", "/distorch/plan?" + last_plan_query(browser))
    assert status == 400 and text == body["error"], (status, body)
    assert "unknown unit 'xb'" in text and INVALID in text and text.startswith("allocation:"), text
    assert drawn_under_node(page) == text
    screenshot(page, "allocation-preview-error")


def test_fixing_the_allocation_clears_the_error(page):
    type_allocation(page, VALID)
    text = wait_for_preview(page, error=False)
    assert "cpu (donor)" in text and drawn_under_node(page) == text.replace("\n", " ")
    type_allocation(page, "")
    page.wait_for_function(f"() => {NODE}.distorchPreview === null", timeout=30_000)
    assert drawn_under_node(page) == ""


def test_the_prompt_carries_the_allocation_as_typed(page):
    type_allocation(page, VALID)
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    (node,) = [n for n in prompt.values() if n["class_type"] == "DisTorchUNETLoader"]
    assert node["inputs"]["allocation"] == VALID


def test_no_console_errors_caused_by_the_pack(browser, comfy_core, bare_console_errors):
    """Beyond a bare host's own: only the one 400 answer to the invalid allocation's plan request."""
    baseline = browser.baseline_console_errors(comfy_core.url, cache=bare_console_errors)
    caused = sorted(normalized(browser.console.entries) - baseline)
    rejected = [e for e in caused if e[0] == REJECTED_PLAN[0] and e[1].startswith(REJECTED_PLAN[1])]
    assert len(rejected) == 1 and INVALID.split(",")[1] in urllib.parse.unquote(rejected[0][1]), caused
    assert [e for e in caused if e not in rejected] == [], caused
