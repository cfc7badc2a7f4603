"""`make test`: the suite on each test host, the two tiers side by side.

- ComfyUI 0.33.0 (today's host, DynamicVRAM era), the full suite: unit, real servers, browser.
  Only where ../shared/vendor/comfyui-0.33.0.tar.gz is (CI has it); tools/bootstrap.py set it up.
- ComfyUI 0.3.75 (the floor), the compatibility tier: whatever touches host internals (see
  tools/tiers.py). Where 0.33.0 is missing it runs the full suite instead, and one line says so.
- COMFYUI_PATH=<your ComfyUI>: the full suite once, on that tree.

The tiers run at once: most of a host test is waiting for a server, so they share the machine's
cores better than they would one after the other (DISTORCH_TIERS_SEQUENTIAL=1: one after the
other), each process with one OpenMP thread. DISTORCH_FULL_SHARDS=N splits the full tier into N
runs of whole files (tools/tiers.py) for machines with more cores and RAM; on the 2-core, 24 GiB
VM two shards took 24.0 min, but three runs' servers left the splits no free RAM to plan on (16
tests failed for it). Each run has its own pytest temporary folder.
A progress line every minute says how many tests each run has done; at the end each run's pytest
output is printed whole, its lines prefixed with its label, then one summary line per run and the
counts of all runs together. Extra arguments go to every pytest run.
Standard library only.
"""
from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostenv  # noqa: E402
from tiers import SHARD_VARIABLE, TIER_VARIABLE  # noqa: E402

SHARDS_VARIABLE = "DISTORCH_FULL_SHARDS"  # how many runs share the full tier (1: one run)
DEFAULT_FULL_SHARDS = 1  # 2 on the 2-core VM: three runs' servers exhausted the RAM that splits plan on
FULL_TIER, COMPAT_TIER = "full", "compat"


@dataclass
class Tier:
    label: str  # e.g. "0.33.0 full"
    python: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    returncode: int | None = None
    summary: str = ""
    seconds: float = 0.0
    output: str = ""


def plan_tiers(*, own_tree: str, current_ready: bool, full_shards: int = DEFAULT_FULL_SHARDS) -> tuple[list[Tier], str]:
    """The tiers to run and the line that says what was left out ("" when nothing was). The full
    tier runs as ``full_shards`` pytest runs side by side (tools/tiers.py assigns whole files)."""
    floor_env = {"DISTORCH_HOST": hostenv.FLOOR_HOST}
    skipped = ""
    if own_tree:
        label, python, env = own_tree, hostenv.venv_python(), {}
    elif not current_ready:
        skipped = (f"the ComfyUI {hostenv.CURRENT_HOST} tier is skipped: no "
                   f"{hostenv.vendor_dir() / hostenv.CURRENT_TARBALL_NAME} (a checkout beside ../shared has it); "
                   f"the full suite runs on ComfyUI {hostenv.FLOOR_HOST}")
        label, python, env = hostenv.FLOOR_HOST, hostenv.venv_python(), floor_env
    else:
        label = hostenv.CURRENT_HOST
        python = hostenv.python_in(hostenv.host_venv_dir(hostenv.CURRENT_HOST))
        env = {"DISTORCH_HOST": hostenv.CURRENT_HOST}
    full = [Tier(f"{label} full", python, {**env, TIER_VARIABLE: FULL_TIER})] if full_shards == 1 else [
        Tier(f"{label} full {index}/{full_shards}", python,
             {**env, TIER_VARIABLE: FULL_TIER, SHARD_VARIABLE: f"{index}/{full_shards}"})
        for index in range(1, full_shards + 1)]
    if own_tree or not current_ready:
        return full, skipped
    return full + [Tier(f"{hostenv.FLOOR_HOST} compat", hostenv.venv_python(),
                        {**floor_env, TIER_VARIABLE: COMPAT_TIER})], skipped


def full_shard_count() -> int:
    text = os.environ.get(SHARDS_VARIABLE, "") or str(DEFAULT_FULL_SHARDS)
    if not text.isdigit() or not 1 <= int(text) <= 8:
        raise SystemExit(f"[tiers] {SHARDS_VARIABLE}={text!r}: use 1 to 8 (the full tier's pytest runs side by side)")
    return int(text)


def tier_basetemp(tier: Tier) -> Path:
    """Each run's own pytest temporary folder: runs side by side never number or clean each other's."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", tier.label).strip("-")
    return Path(tempfile.gettempdir()) / f"distorch-tiers-{os.getuid() if hasattr(os, 'getuid') else 0}" / slug


def current_host_ready() -> bool:
    tree = hostenv.host_tree(hostenv.CURRENT_HOST)
    python = hostenv.python_in(hostenv.host_venv_dir(hostenv.CURRENT_HOST))
    return (tree / "main.py").exists() and python.exists()


SUMMARY = re.compile(r"(\d+ (passed|failed|errors?|skipped|deselected)|no tests ran).* in \d+(\.\d+)?s")


def is_summary(line: str) -> bool:
    """pytest's closing line: "== 3 failed, 1010 passed, 28 skipped in 612.00s ==" (or its -q form)."""
    return SUMMARY.search(line) is not None


COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped)\b")


def total_line(summaries: list[str]) -> str:
    """All runs' counts on one line, as pytest words them: "total: 2210 passed, 1 failed, 56 skipped"."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for summary in summaries:
        for number, word in COUNT.findall(summary):
            counts["errors" if word.startswith("error") else word] += int(number)
    errors = f", {counts['errors']} error{'s' if counts['errors'] != 1 else ''}" if counts["errors"] else ""
    return f"total: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped{errors}"


def failure_lines(output: str) -> list[str]:
    """The "FAILED ..." and "ERROR ..." lines of pytest's short test summary (-ra), so the ids of what
    failed end up in the last lines of the output, where a CI log's tail shows them."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "short test summary info" in line), len(lines))
    return [line for line in lines[start:] if line.startswith(("FAILED ", "ERROR "))]


RESULT_MARKS = set(".FEsxX")
PROGRESS_EVERY_S = 60.0


def progress_counts(output: str) -> tuple[int, int]:
    """(tests done, failed or errored) from pytest's output so far: its result letters, on the
    progress lines before the first "====" section after the header."""
    done = failed = 0
    for line in output.split("\n"):
        if line.startswith("=") and "test session starts" not in line:  # the header of a run without -q
            break
        marks = line.split("[", 1)[0].strip()
        if ".py " in marks:  # without -q each file's letters follow its path
            marks = marks.split(".py ", 1)[1].strip()
        if marks and set(marks) <= RESULT_MARKS:
            done += len(marks)
            failed += marks.count("F") + marks.count("E")
    return done, failed


# torch's CPU kernels use one spinning OpenMP thread per core in every process; with several runs
# at once, each with its servers sampling, those threads fight for the same two cores and spin.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_tier(tier: Tier) -> None:
    """Run one tier's pytest, its output kept in ``tier.output`` as it comes."""
    started = time.monotonic()
    env = {**os.environ, **tier.env, "PYTHONUNBUFFERED": "1"}
    if "DISTORCH_HOST" in tier.env:
        env.pop("COMFYUI_PATH", None)
    process = subprocess.Popen([str(tier.python), "-m", "pytest", *tier.args], cwd=hostenv.REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    chunks = []
    while block := os.read(process.stdout.fileno(), 65536):
        chunks.append(decoder.decode(block))
        tier.output = "".join(chunks)
    tier.returncode = process.wait()
    tier.seconds = time.monotonic() - started
    tier.summary = next((line.strip("= ") for line in reversed(tier.output.splitlines()) if is_summary(line)), "")


def main(argv: list[str]) -> int:
    tiers, skipped = plan_tiers(own_tree=os.environ.get("COMFYUI_PATH", ""), current_ready=current_host_ready(),
                                full_shards=full_shard_count())
    if skipped:
        print(f"[tiers] {skipped}", flush=True)
    own_basetemp = any(arg.startswith("--basetemp") for arg in argv)
    for tier in tiers:
        if len(tiers) > 1:
            tier.env = {**{k: v for k, v in ONE_THREAD.items() if k not in os.environ}, **tier.env}
        if own_basetemp or len(tiers) == 1:
            tier.args = list(argv)
        else:
            tier_basetemp(tier).parent.mkdir(parents=True, exist_ok=True)  # pytest makes the last part only
            tier.args = [f"--basetemp={tier_basetemp(tier)}", *argv]
        print(f"[tiers] {tier.label}: pytest {' '.join(argv) or '(all)'} in {tier.python.parent.parent}", flush=True)
    started = time.monotonic()
    sequential = os.environ.get("DISTORCH_TIERS_SEQUENTIAL") == "1"
    threads = [threading.Thread(target=run_tier, args=(tier,), daemon=True) for tier in tiers]
    for thread in threads:
        thread.start()
        if sequential:
            wait_saying_progress([thread], tiers, started)
    wait_saying_progress(threads, tiers, started)
    for tier in tiers:  # each tier's own output, whole, one after the other
        print(f"\n[tiers] ===== {tier.label} =====", flush=True)
        for line in tier.output.splitlines():
            print(f"{tier.label} | {line}")
    for tier in tiers:
        verdict = "passed" if tier.returncode == 0 else f"FAILED (exit {tier.returncode})"
        print(f"[tiers] {tier.label}: {verdict}; {tier.summary or 'no summary line'}; "
              f"{tier.seconds / 60:.1f} min", flush=True)
        for line in failure_lines(tier.output):
            print(f"[tiers] {tier.label}: {line}", flush=True)
    print(f"[tiers] all tiers: {(time.monotonic() - started) / 60:.1f} min", flush=True)
    print(total_line([tier.summary for tier in tiers]), flush=True)
    return 0 if all(tier.returncode == 0 for tier in tiers) else 1


def wait_saying_progress(threads: list[threading.Thread], tiers: list[Tier], started: float) -> None:
    next_line = time.monotonic() + PROGRESS_EVERY_S
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.5)
        if time.monotonic() >= next_line and any(thread.is_alive() for thread in threads):
            say_progress(tiers, started)
            next_line += PROGRESS_EVERY_S


def say_progress(tiers: list[Tier], started: float) -> None:
    parts = []
    for tier in tiers:
        done, failed = progress_counts(tier.output)
        state = "done" if tier.returncode is not None else "running"
        parts.append(f"{tier.label}: {done} tests{f', {failed} failed' if failed else ''} ({state})")
    print(f"[tiers] {(time.monotonic() - started) / 60:.0f} min: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
