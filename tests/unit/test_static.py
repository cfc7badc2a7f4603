"""Every Python file of the pack, its tools and its tests passes pyflakes: an undefined name in a
path the suite does not reach (a fresh machine's environment build, say) fails here, not on a
user's machine. A line marked ``# noqa`` keeps its finding (the deliberate re-exports)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from pyflakes import api, reporter

import hostenv


class Findings(reporter.Reporter):
    def __init__(self):
        self.lines: list[str] = []

    def unexpectedError(self, filename, message):  # noqa: N802 (pyflakes' interface)
        self.lines.append(f"{filename}: {message}")

    def syntaxError(self, filename, message, lineno, offset, text):  # noqa: N802
        self.lines.append(f"{filename}:{lineno}: {message}")

    def flake(self, message):
        source_line = Path(message.filename).read_text().splitlines()[message.lineno - 1]
        if "noqa" not in source_line:
            self.lines.append(str(message))


def python_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=hostenv.REPO_ROOT, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        return [hostenv.REPO_ROOT / name for name in listed.stdout.split()]
    return [path for path in hostenv.REPO_ROOT.rglob("*.py")
            if not any(part.startswith(".") for part in path.relative_to(hostenv.REPO_ROOT).parts)]


def test_no_file_has_an_undefined_name_or_an_unused_import():
    files = python_files()
    assert len(files) > 100, files
    findings = Findings()
    for path in files:
        api.checkPath(str(path), findings)
    assert findings.lines == [], "\n".join(findings.lines)
