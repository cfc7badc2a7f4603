"""The "DisTorch memory" panel in a real browser (Debian's chromium through Playwright) against a
real ComfyUI server with the pack: what it shows, its buttons, its settings, the device labels on
loader nodes, and no console errors beyond what a bare ComfyUI logs. Screenshots go to
test-artifacts/."""
import re
import time

import pytest

import hostenv
import workflows
from comfy_host import ComfyHost
from ui_browser import add_node, chromium_path, normalized, screenshot, widget_center

pytestmark = pytest.mark.host

TAB_BUTTON = ".distorch-memory-tab-button"
PANEL = ".distorch-memory"


@pytest.fixture(scope="module")
def host(tmp_path_factory, model_cache):
    chromium_path()  # skip (or fail in CI) before starting anything
    server = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-ui"), model_cache, hostenv.REPO_ROOT)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(browser, host):
    page = browser.open(host.url)
    page.click(TAB_BUTTON)
    page.wait_for_selector(f"{PANEL} [data-device]", timeout=30_000)
    return page


def free_all(host):
    status, body = host.request("POST", "/distorch/free", {"force": True})
    assert status == 200 and body["status"] == "done", body


def graph(prefix):
    """UNET kept (keep_loaded on), CLIP and VAE flagged."""
    loaders = workflows.separate_loaders("distorch", compute_device="cpu")
    loaders["1"]["inputs"]["keep_loaded"] = True
    return workflows.separate_txt2img(loaders, prefix=prefix)


def segment_ids(page) -> set[str]:
    return set(page.eval_on_selector_all(f"{PANEL} .distorch-seg.model", "els => els.map(e => e.dataset.modelId)"))


def wait_for_segments(page, test, timeout=30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = segment_ids(page)
        if test(ids):
            return ids
        time.sleep(0.2)
    raise AssertionError(f"the panel's model segments never matched: {segment_ids(page)}")


def confirm_dialog(page, title):
    dialog = page.locator(".p-dialog", has_text=title)
    dialog.wait_for(timeout=10_000)
    dialog.get_by_role("button", name="Confirm").click()


def toast_text(page, summary) -> str:
    toast = page.locator(".p-toast-message", has_text=summary)
    toast.wait_for(timeout=60_000)
    return toast.inner_text()


def test_panel_shows_the_devices_of_the_memory_report(host, page):
    free_all(host)
    report = host.get("/internal/memory")
    shown = page.eval_on_selector_all(f"{PANEL} [data-device]",
                                      "els => els.map(e => [e.dataset.device, e.dataset.state])")
    assert sorted(shown) == sorted([d["device"], d["state"]] for d in report["devices"])
    cpu = page.locator(f'{PANEL} [data-device="cpu"]')
    assert "RAM" in cpu.inner_text()
    assert cpu.locator(".distorch-seg.free").count() == 1
    border = cpu.locator(".distorch-bar").evaluate("e => getComputedStyle(e).borderTopColor")
    assert border == {"LOW": "rgb(63, 163, 77)", "MODERATE": "rgb(214, 177, 31)", "HIGH": "rgb(224, 123, 36)",
                      "CRITICAL": "rgb(217, 54, 62)"}[report["devices"][0]["state"]]
    screenshot(page, "memory-panel-empty")


def test_a_loaded_model_appears_and_unload_flagged_keeps_the_retained_one(host, page):
    free_all(host)
    wait_for_segments(page, lambda ids: not ids)
    host.run(graph("ui-unload"))
    report = host.get("/internal/memory")
    by_name = {m["name"]: m for m in report["models"]}
    kept, flagged = by_name[workflows.UNET], [by_name[workflows.CLIP], by_name[workflows.VAE]]
    assert kept["keep_loaded"] and all(m["flagged"] for m in flagged)
    wanted = {kept["id"]} | {m["id"] for m in flagged}
    wait_for_segments(page, lambda ids: ids == wanted)  # pushed by the distorch.memory event
    title = page.locator(f'{PANEL} .distorch-seg.model[data-model-id="{kept["id"]}"]').get_attribute("title")
    assert title.startswith(workflows.UNET) and re.search(r"\d+\.\d MiB$", title), title
    legend = page.locator(f'{PANEL} li[data-model-id="{kept["id"]}"]').inner_text()
    assert "keep loaded" in legend
    screenshot(page, "memory-panel-loaded")
    page.locator(PANEL).screenshot(path=str(hostenv.REPO_ROOT / "test-artifacts" / "memory-panel-readme.png"))

    page.click(f'{PANEL} button[data-action="unload-flagged"]')
    confirm_dialog(page, "Unload flagged models")
    text = toast_text(page, "Unloaded 2 model(s)")
    assert workflows.CLIP in text and workflows.VAE in text and "Kept: " in text, text
    assert wait_for_segments(page, lambda ids: ids == {kept["id"]}) == {kept["id"]}
    after = host.get("/internal/memory")
    assert [m["id"] for m in after["models"]] == [kept["id"]]
    assert after["last_unload"]["mode"] == "selective"
    screenshot(page, "memory-panel-after-unload")


def test_free_everything_unloads_the_kept_model_too(host, page):
    host.run(graph("ui-free"))
    wait_for_segments(page, lambda ids: len(ids) == 3)
    page.click(f'{PANEL} button[data-action="free-everything"]')
    confirm_dialog(page, "Free everything")
    text = toast_text(page, "Freed everything: 3 model(s) unloaded")
    assert workflows.UNET in text, text
    wait_for_segments(page, lambda ids: not ids)
    assert host.get("/internal/memory")["models"] == []
    screenshot(page, "memory-panel-after-free-everything")


def test_cancelled_confirmation_unloads_nothing(host, page):
    host.run(graph("ui-cancel"))
    wait_for_segments(page, lambda ids: len(ids) == 3)
    page.click(f'{PANEL} button[data-action="free-everything"]')
    dialog = page.locator(".p-dialog", has_text="Free everything")
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached", timeout=10_000)
    time.sleep(1.0)
    assert len(host.get("/internal/memory")["models"]) == 3
    free_all(host)


def test_device_dropdown_shows_free_memory_and_keeps_the_plain_value(host, page):
    node = add_node(page, "DisTorchUNETLoader", "distorchTestNode")
    widget = f"{node}.widgets.find(w => w.name === 'compute_device')"
    assert page.evaluate(f"() => {widget}.options.getOptionLabel('default')") == "default"
    x, y = widget_center(page, node, "compute_device")
    page.mouse.click(x, y)  # opens the combo's menu, as a user does
    entries = page.locator(".litecontextmenu .litemenu-entry")
    entries.first.wait_for(timeout=10_000)
    labels = entries.all_inner_texts()
    assert "default" in labels and any(re.fullmatch(r"cpu · \d+\.\d GiB free", t) for t in labels), labels
    screenshot(page, "loader-node-device-menu")
    page.locator(".litecontextmenu .litemenu-entry", has_text="cpu ·").click()
    assert page.evaluate(f"() => {widget}.value") == "cpu"
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    (node,) = [n for n in prompt.values() if n["class_type"] == "DisTorchUNETLoader"]
    assert node["inputs"]["compute_device"] == "cpu"  # the stored value is the plain device name
    page.evaluate("() => app.graph.remove(window.distorchTestNode)")


def test_settings_turn_the_panel_off_and_on(page):
    get = "id => app.extensionManager.setting.get(id)"
    assert page.evaluate(f"({get})('DisTorch.MemoryPanel.RefreshCapMs')") == 500
    assert page.evaluate(f"({get})('DisTorch.MemoryPanel.Enabled')") is True
    page.evaluate("() => app.extensionManager.setting.set('DisTorch.MemoryPanel.Enabled', false)")
    page.wait_for_selector(TAB_BUTTON, state="detached", timeout=10_000)
    page.evaluate("() => app.extensionManager.setting.set('DisTorch.MemoryPanel.Enabled', true)")
    page.wait_for_selector(TAB_BUTTON, timeout=10_000)
    page.click(TAB_BUTTON)
    page.wait_for_selector(f"{PANEL} [data-device]", timeout=30_000)


def test_settings_dialog_lists_the_pack_settings(page):
    page.keyboard.press("Control+,")
    dialog = page.locator(".p-dialog", has_text="Settings")
    dialog.wait_for(timeout=10_000)
    dialog.get_by_placeholder(re.compile("Search", re.I)).fill("DisTorch")
    dialog.get_by_text("Show the DisTorch memory panel in the sidebar").wait_for(timeout=10_000)
    dialog.get_by_text("Redraw the memory panel at most every (ms)").wait_for(timeout=10_000)
    screenshot(page, "settings")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached", timeout=10_000)


def test_the_open_panel_does_not_poll(browser, page):
    """Live from the websocket: an idle open panel sends no request for the report."""
    page.wait_for_selector(f"{PANEL} [data-device]")
    start = len(browser.requests)
    time.sleep(4.0)
    assert [u for u in browser.requests[start:] if "/internal/memory" in u] == []


def test_refresh_cap_collapses_bursts_into_one_trailing_redraw(page):
    calls = page.evaluate("""async () => {
        const { throttle } = await import("/extensions/comfyui-distorch/throttle.js");
        const seen = [];
        const draw = throttle((value) => seen.push(value), () => 300);
        for (let i = 0; i < 10; i++) draw(i);
        const early = [...seen];
        await new Promise((resolve) => setTimeout(resolve, 450));
        return { early, late: seen };
    }""")
    assert calls == {"early": [0], "late": [0, 9]}


def test_no_plan_requests_without_an_allocation_input(browser):
    """A loader that asks for no split (no allocation, virtual_vram_gb 0) sends no plan request."""
    assert not [url for url in browser.requests if "/distorch/plan" in url]


def test_no_console_errors_caused_by_the_pack(browser, comfy_core):
    baseline = browser.baseline_console_errors(comfy_core.url)
    ours = normalized(browser.console.entries)
    caused = sorted(ours - baseline)
    assert caused == [], caused
