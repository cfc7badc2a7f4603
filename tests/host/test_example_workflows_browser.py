"""The example workflows open framed in the real frontend (Debian's chromium through Playwright,
a real ComfyUI server with the pack): every node is on screen, not under the menus, the side
toolbar or the minimap, in a small laptop window and a larger one. (That each one runs is
tests/host/test_example_workflow.py.) Screenshots go to test-artifacts/."""
import json

import pytest

import hostenv
from ui_browser import screenshot

pytestmark = pytest.mark.host
EXAMPLES = sorted((hostenv.REPO_ROOT / "example_workflows").glob("*.json"))
WINDOWS = [(1280, 720), (1400, 900)]

# For each node: the points of its title and body (inset a little) that something other than the
# graph canvas covers, or that lie outside the window.
HIDDEN_PARTS = """() => {
    const canvas = app.canvas, ds = canvas.ds, box = canvas.canvas.getBoundingClientRect();
    const hidden = {};
    for (const node of app.graph.nodes) {
        const left = box.left + (node.pos[0] + ds.offset[0]) * ds.scale;
        const top = box.top + (node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT + ds.offset[1]) * ds.scale;
        const right = box.left + (node.pos[0] + node.size[0] + ds.offset[0]) * ds.scale;
        const bottom = box.top + (node.pos[1] + node.size[1] + ds.offset[1]) * ds.scale;
        const inset = 6;
        const points = [[left + inset, top + inset], [right - inset, top + inset], [(left + right) / 2, top + inset],
                        [left + inset, bottom - inset], [right - inset, bottom - inset]];
        const bad = points.filter(([x, y]) => x < 0 || y < 0 || x >= innerWidth || y >= innerHeight
                                   || document.elementFromPoint(x, y) !== canvas.canvas)
            .map(([x, y]) => `${Math.round(x)},${Math.round(y)}: ${document.elementFromPoint(x, y)?.className ?? "outside"}`);
        if (bad.length) hidden[`${node.id} ${node.title}`] = bad;
    }
    return hidden;
}"""


@pytest.fixture(scope="module")
def page(browser, comfy):
    return browser.open(comfy.url)


@pytest.mark.parametrize("window", WINDOWS, ids=[f"{w}x{h}" for w, h in WINDOWS])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_workflow_opens_with_every_node_on_screen(page, path, window):
    page.set_viewport_size({"width": window[0], "height": window[1]})
    workflow = json.loads(path.read_text())
    page.evaluate("async (workflow) => { await app.loadGraphData(workflow); }", workflow)
    page.wait_for_timeout(500)  # a frame or two: the frontend sizes the nodes to their widgets
    assert page.evaluate("() => app.graph.nodes.length") == len(workflow["nodes"])
    hidden = page.evaluate(HIDDEN_PARTS)
    screenshot(page, f"example-{path.stem}-{window[0]}x{window[1]}")
    assert not hidden, f"{path.name} in a {window[0]}x{window[1]} window: parts of nodes hidden or off screen: {hidden}"
