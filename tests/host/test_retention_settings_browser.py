"""The retention budget and mode affinity in ComfyUI's settings dialog (web/retention_settings.js,
web/queue_settings.js), in a real browser
against a real server: a changed setting reaches the server, and a page opened later pushes the
stored choice to a server whose budget differs (as after a restart)."""
import time

import pytest

import hostenv
from comfy_host import ComfyHost
from ui_browser import normalized

pytestmark = pytest.mark.host

MAX_MODELS = "DisTorch.Retention.MaxModels"
RAM_PERCENT = "DisTorch.Retention.RamPercent"


@pytest.fixture(scope="module")
def host(tmp_path_factory, model_cache):
    server = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-retention-ui"), model_cache,
                       hostenv.REPO_ROOT)
    server.start()
    yield server
    server.stop()


def budget(host) -> dict:
    return host.get("/distorch/retention")["budget"]


def wait_for_budget(host, **wanted) -> dict:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        current = budget(host)
        if all(current[key] == value for key, value in wanted.items()):
            return current
        time.sleep(0.1)
    raise AssertionError(f"the server's budget is {budget(host)}, wanted {wanted}")


def test_the_settings_reach_the_server_and_a_later_page_pushes_them(browser, host):
    page = browser.open(host.url)
    assert page.evaluate(f"() => app.extensionManager.setting.get({MAX_MODELS!r})") == 6
    assert page.evaluate(f"() => app.extensionManager.setting.get({RAM_PERCENT!r})") == 50
    page.evaluate(f"async () => await app.extensionManager.setting.set({MAX_MODELS!r}, 2)")
    page.evaluate(f"async () => await app.extensionManager.setting.set({RAM_PERCENT!r}, 25)")
    assert wait_for_budget(host, max_models=2, ram_percent=25)["source"] == "settings"
    # The server forgets (a restart would): the next page that opens pushes the stored choice.
    status, _ = host.request("POST", "/distorch/retention", {"max_models": 6, "ram_percent": 50})
    assert status == 200
    page.reload()
    page.wait_for_function("() => window.app?.extensionManager?.setting", timeout=60_000)
    wait_for_budget(host, max_models=2, ram_percent=25)
    extra = normalized(browser.console.entries) - browser.baseline_console_errors(host.url)
    assert not extra, extra


MAX_PASSES = "DisTorch.Queue.ModeAffinity"


def wait_for_affinity(host, wanted: int) -> dict:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        affinity = host.get("/distorch/queue")["affinity"]
        if affinity["max_passes"] == wanted:
            return affinity
        time.sleep(0.1)
    raise AssertionError(f"the server's mode affinity is {host.get('/distorch/queue')['affinity']}, wanted {wanted}")


def test_the_mode_affinity_setting_reaches_the_server_and_a_later_page_pushes_it(browser, host):
    page = browser.open(host.url)
    assert page.evaluate(f"() => app.extensionManager.setting.get({MAX_PASSES!r})") == 2
    page.evaluate(f"async () => await app.extensionManager.setting.set({MAX_PASSES!r}, 0)")
    assert wait_for_affinity(host, 0)["source"] == "settings"
    status, _ = host.request("POST", "/distorch/queue/affinity", {"max_passes": 5})  # as after a restart
    assert status == 200
    page.reload()
    page.wait_for_function("() => window.app?.extensionManager?.setting", timeout=60_000)
    wait_for_affinity(host, 0)


def test_the_environment_wins_over_the_dialog(tmp_path_factory, model_cache):
    server = ComfyHost(hostenv.comfyui_dir(), tmp_path_factory.mktemp("host-affinity-env"), model_cache,
                       hostenv.REPO_ROOT, env={"DISTORCH_MODE_AFFINITY": "4"})
    server.start()
    try:
        assert server.get("/distorch/queue")["affinity"] == {"max_passes": 4, "source": "environment",
                                                             "run_early": 0}
        status, body = server.request("POST", "/distorch/queue/affinity", {"max_passes": 1})
        assert status == 409 and "DISTORCH_MODE_AFFINITY" in body["error"], body
        assert server.get("/distorch/queue")["affinity"]["max_passes"] == 4
    finally:
        server.stop()
