"""The pack's web directory as ComfyUI serves it: every JS module is listed for the frontend to
load, and every DisTorch node has a help page that names each of its inputs."""
import pytest

import hostenv
from comfy_host import PACK_DIR_NAME

pytestmark = pytest.mark.host

WEB = hostenv.REPO_ROOT / "web"


def test_every_module_is_served_to_the_frontend(comfy):
    listed = set(comfy.get("/extensions"))
    ours = {f"/extensions/{PACK_DIR_NAME}/{path.relative_to(WEB).as_posix()}" for path in WEB.rglob("*.js")}
    assert ours and ours <= listed, sorted(ours - listed)
    status, body = comfy.request("GET", f"/extensions/{PACK_DIR_NAME}/distorch.js")
    assert status == 200 and b"registerExtension" in body


def test_every_node_has_a_help_page_naming_its_inputs(comfy):
    info = comfy.object_info()
    nodes = sorted(name for name in info if name.startswith("DisTorch"))
    assert nodes
    for name in nodes:
        status, body = comfy.request("GET", f"/extensions/{PACK_DIR_NAME}/docs/{name}.md")
        assert status == 200, f"web/docs/{name}.md is missing"
        text = body.decode()
        inputs = [i for section in info[name]["input"].values() for i in section]
        undocumented = [i for i in inputs if f"`{i}`" not in text]
        assert undocumented == [], f"web/docs/{name}.md does not describe {undocumented}"
