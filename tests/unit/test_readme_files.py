"""Files the README links to or shows (screenshots, schemas) exist in the repository."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_local_links_and_images_exist():
    text = (ROOT / "README.md").read_text()
    targets = {t for t in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in t}
    assert "docs/memory-panel.png" in targets
    missing = sorted(t for t in targets if not (ROOT / t).exists())
    assert missing == []
