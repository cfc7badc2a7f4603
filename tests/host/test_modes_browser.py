"""web/modes.js in a real browser (Debian's chromium through Playwright) against a real ComfyUI
server with the pack and a modes.yaml: a DisTorchModeSwitch node already on the canvas offers a
mode added to the file without a page reload, and a broken file shows one toast naming the file,
line and column while the dropdown keeps the modes in force."""
import uuid

import pytest

import modes_setup
from ui_browser import add_node, normalized, screenshot

pytestmark = pytest.mark.host

NODE = "window.distorchModeNode"


def modes_text(root, *names: str) -> str:
    body = "".join(f"  {name}:\n    model: {modes_setup.CHECKPOINT_A}\n" for name in names)
    return f"model_root: {root}\ndefault_mode: {names[0]}\nmodes:\n{body}"


def reload(host, modes_file, text) -> int:
    modes_setup.write_atomically(modes_file, text)
    status, _ = host.request("POST", "/distorch/modes/reload")
    return status


def choices(page) -> list[str]:
    return page.evaluate(f"() => [...{NODE}.widgets.find(w => w.name === 'mode').options.values]")


@pytest.fixture(scope="module")
def page(browser, comfy_modes, modes_files):
    root, modes_file = modes_files
    first = f"first-{uuid.uuid4().hex[:6]}"
    assert reload(comfy_modes, modes_file, modes_text(root, first)) == 200
    page = browser.open(comfy_modes.url)  # the node definitions now list `first`
    add_node(page, "DisTorchModeSwitch", "distorchModeNode", pos=(300, 150))
    assert first in choices(page)
    page.distorch_first = first
    return page


def test_a_mode_added_to_the_file_appears_in_the_open_dropdown(page, comfy_modes, modes_files):
    root, modes_file = modes_files
    added = f"added-{uuid.uuid4().hex[:6]}"
    assert reload(comfy_modes, modes_file, modes_text(root, page.distorch_first, added)) == 200
    page.wait_for_function(f"() => {NODE}.widgets.find(w => w.name === 'mode').options.values.includes({added!r})",
                           timeout=30_000)
    assert choices(page) == [page.distorch_first, added]
    # The node still holds what the user picked; picking the new mode is a plain widget value.
    assert page.evaluate(f"() => {NODE}.widgets.find(w => w.name === 'mode').value") == page.distorch_first
    screenshot(page, "modes-dropdown-after-reload")


def test_a_broken_file_shows_where_and_keeps_the_dropdown(page, browser, comfy_modes, modes_files):
    root, modes_file = modes_files
    before = choices(page)
    broken = modes_text(root, "gone") + "  bad: {model: sd15/a.safetensors, colour: red}\n"
    assert reload(comfy_modes, modes_file, broken) == 400
    toast = page.locator(".p-toast-message", has_text="DisTorch modes")
    toast.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)  # the watcher's report of the same write comes too: one toast for both
    assert toast.count() == 1
    text = toast.inner_text()
    assert f"{modes_file}:" in text and "unknown key 'colour'" in text and "unchanged" in text, text
    assert choices(page) == before
    screenshot(page, "modes-bad-file-toast")
    # Back to a good file: the dropdown follows again, and the page logged nothing a bare host does not.
    assert reload(comfy_modes, modes_file, modes_text(root, *before)) == 200
    extra = normalized(browser.console.entries) - browser.baseline_console_errors(comfy_modes.url)
    assert not extra, extra
