"""The README a new user reads: install and the two commands come first, every link and image it
points at exists, every in-page link lands on a heading, and it names the frontend's buttons as
the frontend does."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Sections that describe the pack in depth; a user should not have to read past one to install it.
REFERENCE_SECTIONS = ("## Nodes", "## Splitting a model across devices", "## Modes", "## Unload semantics",
                      "## Memory report", "## Development")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation other than '-' and '_' dropped,
    spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text())  # headings inside code blocks are not headings
    return {github_anchor(h) for h in re.findall(r"(?m)^#{1,6} (.+)$", text)}


def test_install_and_the_two_commands_come_before_any_reference_section():
    first_reference = min(README.index(title) for title in REFERENCE_SECTIONS)
    for needed in ("git clone https://github.com/comfyui-distorch/comfyui-distorch",
                   "pip install -r comfyui-distorch/requirements.txt", "comfy node install comfyui-distorch",
                   "ComfyUI-Manager", "make run", "make test"):
        assert needed in README[:first_reference], f"{needed!r} is not in the README before its reference sections"
    assert "<this repository>" not in README


def test_the_readme_names_the_run_button_as_the_frontend_does():
    assert "**Run**" in README
    assert not re.search(r"press \*{0,2}Queue", README), "the frontend's button is 'Run', not 'Queue'"


def test_make_runs_start_up_hint_names_the_readmes_workflow_and_button():
    hint = (ROOT / "tools" / "run_host.py").read_text()
    named = re.findall(r"example_workflows/(\w+\.json)", hint) + re.findall(r"\b(\w+\.json)\b", hint)
    assert named and all((ROOT / "example_workflows" / name).is_file() for name in named), named
    first = re.search(r"drag `example_workflows/(\w+\.json)`", README).group(1)
    assert f"example_workflows/{first}" in hint and "press Run" in hint and "Queue" not in hint


def test_local_links_and_images_exist():
    for doc in DOCS:
        targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", doc.read_text())
                   if "://" not in t and not t.startswith("#")}
        missing = sorted(t for t in targets if not (doc.parent / t).exists())
        assert missing == [], f"{doc.name} links to missing files: {missing}"
    assert "docs/memory-panel.png" in README or "docs/walkthrough-panel.png" in README


def test_every_link_to_a_heading_lands_on_one():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]*#[^)\s]+)\)", doc.read_text()):
            if "://" in target:
                continue
            file, anchor = target.split("#", 1)
            where = (doc.parent / file) if file else doc
            if anchor not in anchors(where):
                broken.append(f"{doc.name}: {target}")
    assert broken == []
