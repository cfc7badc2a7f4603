"""The "DisTorch memory" panel in a real browser (Debian's chromium through Playwright) against a
real ComfyUI server with the pack: what it shows, its buttons, its settings, the device labels on
loader nodes, that it follows ComfyUI's light and dark theme and stays readable at the sidebar's
narrowest width, and no console errors beyond what a bare ComfyUI logs. Screenshots go to
test-artifacts/ (memory-panel-{narrow,normal}-{light,dark}.png: the panel at both widths in both
themes)."""
import re
import time

import pytest

import hostenv
import workflows
from comfy_host import ComfyHost
from ui_browser import (SIDEBAR_PANEL, add_node, chromium_path, drag_sidebar_edge, sidebar_min_width, element_screenshot, normalized,
                        screenshot, set_color_palette, sidebar_width, widget_center)

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
    dialog = page.get_by_role("dialog").filter(has_text=title)
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
    dialog = page.get_by_role("dialog").filter(has_text="Free everything")
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached", timeout=10_000)
    time.sleep(1.0)
    assert len(host.get("/internal/memory")["models"]) == 3
    free_all(host)


def checkpoint_graph(prefix):
    """A checkpoint's three parts kept (keep_loaded on) for MODEL and CLIP, and a separate VAE
    loader's VAE (keep_loaded off, flagged) for the decode: four models, four rows."""
    graph = workflows.txt2img(workflows.checkpoint_loader("distorch", compute_device="cpu", keep_loaded=True),
                              vae=("3", 0), prefix=prefix)
    graph["3"] = workflows.separate_loaders("distorch", compute_device="cpu")["3"]
    return graph


def rows(page) -> dict[str, str]:
    """model id -> the text its row shows (no-break spaces read as spaces, as a user reads them)."""
    return dict(page.eval_on_selector_all(f"{PANEL} li.distorch-model",
                                          "els => els.map(e => [e.dataset.modelId, e.innerText.replaceAll('\\u00a0', ' ')])"))


def wait_for_rows(page, test, timeout=30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = rows(page)
        if test(shown):
            return shown
        time.sleep(0.2)
    raise AssertionError(f"the panel's model rows never matched: {rows(page)}")


def test_each_model_is_labelled_with_its_part_and_loader(host, page):
    free_all(host)
    host.run(checkpoint_graph("ui-parts"))
    report = host.get("/internal/memory")
    assert len(report["models"]) == 4, report["models"]
    shown = wait_for_rows(page, lambda r: set(r) == {m["id"] for m in report["models"]})
    checkpoint = {m["component"]: shown[m["id"]] for m in report["models"] if m["loader"] == "DisTorchCheckpointLoader"}
    assert set(checkpoint) == {"unet", "clip", "vae"}
    for component, part in (("unet", "diffusion model"), ("clip", "text encoder"), ("vae", "VAE")):
        text = checkpoint[component]
        assert workflows.CHECKPOINT in text and f"{part} · DisTorchCheckpointLoader" in text, text
        assert "keep loaded" in text and "flagged" not in text, text
    (separate,) = [shown[m["id"]] for m in report["models"] if m["loader"] == "DisTorchVAELoader"]
    assert workflows.VAE in separate and "VAE · DisTorchVAELoader" in separate and "flagged" in separate, separate


def test_the_memory_mode_is_said_in_plain_words(page):
    line = page.locator(f"{PANEL} .distorch-mode").inner_text().replace("\xa0", " ")
    assert line == "CPU only: no GPU memory to manage", line  # this host runs with --cpu and no GPU
    assert "DISABLED" not in page.locator(PANEL).inner_text()


def overflow(page) -> dict:
    """What sticks out sideways: the sidebar's scroll width against its width, and every element
    of the panel drawn past its edges."""
    return page.evaluate("""() => {
        const tab = document.querySelector('.distorch-memory-tab');
        const container = tab.closest('.sidebar-content-container');
        const box = tab.getBoundingClientRect();
        const outside = [...tab.querySelectorAll('*')].filter((e) => {
            const r = e.getBoundingClientRect();
            return r.width > 0 && (r.right > box.right + 0.5 || r.left < box.left - 0.5);
        }).map((e) => `${e.tagName}.${e.className}: ${e.textContent.slice(0, 40)}`);
        return { container: [container.scrollWidth, container.clientWidth], panel: [tab.scrollWidth, tab.clientWidth],
                 outside };
    }""")


def phrases_broken_although_they_fit(page) -> list[str]:
    """Phrases (sizes, labels, the mode line's parts) drawn on more than one line although the
    line is wide enough for them: the panel must break lines between phrases first."""
    return page.evaluate("""() => {
        const broken = [];
        for (const phrase of document.querySelectorAll('.distorch-memory-tab .distorch-phrase')) {
            const probe = phrase.cloneNode(true);
            Object.assign(probe.style, { whiteSpace: 'nowrap', position: 'absolute', visibility: 'hidden', maxWidth: 'none' });
            phrase.parentElement.append(probe);
            const natural = probe.getBoundingClientRect().width;
            probe.remove();
            const lineHeight = parseFloat(getComputedStyle(phrase).lineHeight);
            if (natural <= phrase.parentElement.clientWidth && phrase.getBoundingClientRect().height > 1.5 * lineHeight)
                broken.push(phrase.textContent);
        }
        return broken;
    }""")


def button_colours(page) -> dict:
    return page.evaluate("""() => {
        const style = (selector) => getComputedStyle(document.querySelector(selector));
        const unload = style('.distorch-memory button[data-action="unload-flagged"]');
        return { button: unload.backgroundColor, buttonText: unload.color,
                 panel: style('.distorch-memory-tab').backgroundColor, text: style('.distorch-memory-tab').color };
    }""")


def test_readable_at_the_narrowest_width_and_themed_in_light_and_dark(host, page):
    """The panel at the sidebar's narrowest width (the frontend allows 10 % of its splitter) and at
    its default width, in the light and the dark palette: nothing overflows sideways, no phrase is
    broken where it fits, and buttons and text take the theme's colours."""
    wait_for_rows(page, lambda r: len(r) == 4)
    normal = sidebar_width(page)
    splitter = page.locator(".p-splitter").first.bounding_box()["width"]
    colours = {}
    try:
        narrow = drag_sidebar_edge(page, 0)
        assert narrow <= sidebar_min_width(page) + 0.01 * splitter, (narrow, splitter)  # the frontend's own minimum
        print(f"\n[panel] narrowest sidebar panel: {narrow:.0f} px (window {splitter:.0f} px); default {normal:.0f} px")
        for palette in ("light", "dark"):
            set_color_palette(page, palette)
            found = overflow(page)
            assert found["container"][0] <= found["container"][1] and found["panel"][0] <= found["panel"][1], found
            assert found["outside"] == [], found
            assert phrases_broken_although_they_fit(page) == []
            element_screenshot(page.locator(SIDEBAR_PANEL), f"memory-panel-narrow-{palette}")
        assert abs(drag_sidebar_edge(page, normal) - normal) <= 4
        for palette in ("light", "dark"):
            set_color_palette(page, palette)
            assert overflow(page)["outside"] == []
            assert phrases_broken_although_they_fit(page) == []
            colours[palette] = button_colours(page)
            element_screenshot(page.locator(SIDEBAR_PANEL), f"memory-panel-normal-{palette}")
    finally:
        set_color_palette(page, "dark")
        drag_sidebar_edge(page, normal)
    light, dark = colours["light"], colours["dark"]
    for key in ("button", "buttonText", "panel", "text"):
        assert light[key] != dark[key], (key, colours)  # the theme is followed, not fixed colours


def test_a_rows_unload_button_removes_exactly_that_model(host, page):
    """The checkpoint's text encoder is loaded with keep_loaded on: its own button unloads it
    anyway, and only it."""
    report = host.get("/internal/memory")
    (clip,) = [m for m in report["models"] if m["loader"] == "DisTorchCheckpointLoader" and m["component"] == "clip"]
    assert clip["state"] == "loaded" and clip["keep_loaded"], clip
    others = {m["id"] for m in report["models"]} - {clip["id"]}
    wait_for_rows(page, lambda r: set(r) == others | {clip["id"]})
    page.click(f'{PANEL} li[data-model-id="{clip["id"]}"] button[data-action="unload-model"]')
    confirm_dialog(page, "Unload model")
    text = toast_text(page, f"Unloaded {workflows.CHECKPOINT} (text encoder)")
    assert "Freed" in text, text
    assert set(wait_for_rows(page, lambda r: set(r) == others)) == others
    after = host.get("/internal/memory")
    assert {m["id"] for m in after["models"]} == others
    assert after["last_unload"]["mode"] == "model" and after["last_unload"]["requested"] == [clip["id"]]
    assert after["last_unload"]["unloaded"] == [f"{workflows.CHECKPOINT} (clip)"]
    screenshot(page, "memory-panel-after-unloading-one-model")
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
    dialog = page.get_by_role("dialog").filter(has_text="Settings")
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


def test_no_console_errors_caused_by_the_pack(browser, comfy_core, bare_console_errors):
    baseline = browser.baseline_console_errors(comfy_core.url, cache=bare_console_errors)
    ours = normalized(browser.console.entries)
    caused = sorted(ours - baseline)
    assert caused == [], caused


def test_the_queue_section_follows_the_server_queue(host, page):
    section = page.locator(f"{PANEL} .distorch-queue")
    section.wait_for(timeout=30_000)
    done_before = host.get("/distorch/queue")["completed"]
    text = section.inner_text()
    assert "nothing waiting" in text and "mode affinity: at most 2 passes" in text, text
    host.run(graph("ui-queue"))
    # pushed by the distorch.queue event: the count of finished prompts moves on
    page.wait_for_function(f"""() => document.querySelector('{PANEL} .distorch-queue')
                                  .innerText.includes('{done_before + 1} done')""", timeout=30_000)
    host.request("POST", "/distorch/queue/affinity", {"max_passes": 0})
    try:
        page.wait_for_function(f"""() => document.querySelector('{PANEL} .distorch-queue')
                                      .innerText.includes('mode affinity off')""", timeout=30_000)
    finally:
        host.request("POST", "/distorch/queue/affinity", {"max_passes": 2})
    free_all(host)
