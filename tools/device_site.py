"""Stand in for the lent GPU machine's Python packages, for the GPU check's dry run: a folder of
links to those of this interpreter's installed distributions that the machine's image holds
(tools/gpu-device-packages.txt), with what they require here, and nothing else. A python that
imports from this folder alone (plus the kit's wheels) fails here the way it would fail there when
the kit lacks a wheel: ``ModuleNotFoundError`` for av, torchsde, ... instead of finding them in the
test environment. Run with the python whose packages stand in (the tests' environment):

    python tools/device_site.py --packages tools/gpu-device-packages.txt --target DIR

Prints a JSON line: the distributions linked, and those of the list not installed here. What a
machine's package needs is taken from this interpreter's copy of it (the machine's own version may
need other things: those come with it there). Standard library only.
"""
from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import re
from pathlib import Path

NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(name: str) -> str:
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-") if part)


def required_names(requirements: list[str] | None) -> set[str]:
    """Names of a distribution's requirements, leaving out those only an extra asks for (other
    markers are not evaluated: taking too many only makes the stand-in more permissive)."""
    names = set()
    for requirement in requirements or []:
        requirement_part, _, marker = requirement.partition(";")
        match = NAME.match(requirement_part)
        if match and "extra" not in marker:
            names.add(canonical_name(match.group(1)))
    return names


def closure(wanted: set[str], installed: dict[str, metadata.Distribution]) -> set[str]:
    """``wanted`` (canonical names) and, transitively, what their installed copies require."""
    found, pending = set(), [name for name in wanted if name in installed]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        pending += [n for n in required_names(installed[name].requires) if n in installed and n not in found]
    return found


def top_level_entries(distribution: metadata.Distribution) -> set[str]:
    """The first path component of each file the distribution installed into its site folder."""
    entries = set()
    for file in distribution.files or []:
        path = Path(str(file))
        if path.parts and not path.is_absolute() and path.parts[0] not in ("..", "__pycache__") \
                and not path.parts[0].endswith(".pth"):
            entries.add(path.parts[0])
    return entries


def link_site(names: set[str], installed: dict[str, metadata.Distribution], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(names):
        distribution = installed[name]
        site = Path(str(distribution.locate_file("")))
        for entry in top_level_entries(distribution):
            source, link = site / entry, target / entry
            if source.exists() and not os.path.lexists(link):
                link.symlink_to(source)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", type=Path, required=True, help="distribution names, one a line (# comments)")
    parser.add_argument("--target", type=Path, required=True, help="folder to fill with links")
    args = parser.parse_args(argv)
    wanted = {canonical_name(line.split("#", 1)[0].strip()) for line in args.packages.read_text().splitlines()
              if line.split("#", 1)[0].strip()}
    installed = {}
    for distribution in metadata.distributions():
        installed.setdefault(canonical_name(distribution.metadata["Name"] or ""), distribution)
    names = closure(wanted, installed)
    link_site(names, installed, args.target)
    print(json.dumps({"linked": sorted(names), "not_installed_here": sorted(wanted - set(installed))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
