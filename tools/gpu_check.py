"""The GPU check: one prepared run on a lent GPU machine (no registry there, about 15 minutes of
device time in all) that proves the split streams at the link's speed and brings every figure back.

    python3 tools/gpu_check.py --out DIR          (make gpu-check OUT=DIR; on the GPU machine)
    python3 tools/gpu_check.py --out DIR --dry-run (make gpu-check GPU_CHECK_DRY_RUN=1 OUT=DIR; here)

Steps, each timed, within one budget (8 minutes by default: a failed first try leaves time for a
second one); the summary is rewritten after every step, so a run cut short still reports:
1. kit: .gpu-kit/ (tools/gpu_kit.py, ``make gpu-kit``) is complete and built for these pins;
2. environment (0.3.75): a fresh virtual environment that sees the machine's python packages
   (torch among them) through a .pth file (python3 there is itself a virtual environment, whose
   packages ``--system-site-packages`` would not show), the kit's wheels for ComfyUI 0.3.75
   installed into it from the kit alone (pip, no index), and that ComfyUI tree unpacked;
3. host import (0.3.75): ComfyUI and the pack import in that environment, as the probes import them;
4. models: the synthetic UNet and DiT generated there (tools/make_models.py), not carried;
5. GPU tests (0.3.75): the files in GPU_TEST_FILES, with DISTORCH_REQUIRE_GPU=1 (a missing GPU fails);
6. environment (0.33.0): a second environment layered over the first, ComfyUI 0.33.0's own wheels
   (comfy-aimdo, the pure-Python comfy-kitchen) installed into it, the vendored tree unpacked;
7. host import (0.33.0), DynamicVRAM asked for (a comfy-aimdo that cannot start fails here);
8. GPU tests (0.33.0, DynamicVRAM on), then (0.33.0, DynamicVRAM off): the same files, the host
   started in-process with and without DynamicVRAM (DISTORCH_DYNAMIC_VRAM, tests/host/gpu_host.py);
   in the run with it on, a DynamicVRAM test that skips because it is off fails the run;
9. benchmark: bench/bench_split.py's GPU rows with the test DiT, on 0.3.75, checked against their
   targets.
The summary: ``gpu-check.json`` (every figure, each run's tests and probes and the benchmark's
figures), ``gpu-check.md`` (the same as tables, also printed last) and ``gpu-check.log`` (all output).

``--dry-run`` runs every step on this CPU-only machine: the machine's packages stand in as links to
the tests' environments' copies of them (tools/device_site.py), so a wheel the kit lacks fails here
as it would there; the GPU tests are collected and must report themselves skipped for want of
CUDA, in each run; the probes run once on the CPU on each host (DynamicVRAM cannot be on without a
GPU: the DynamicVRAM probe runs its sequence with it off there); the benchmark runs its CPU section
with the DiT. Nothing CUDA runs in a dry run, and its summary says so.

Standard library only (it runs before its own environment exists).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_kit  # noqa: E402
import hostenv  # noqa: E402

REPO = hostenv.REPO_ROOT
MiB, GiB = 2**20, 2**30
BUDGET_S = 480
# Every test file with a ``gpu``-marked test (tests/unit/test_gpu_check.py keeps this list whole),
# run with ``-m gpu``. Named one by one: collecting the whole suite would import the browser tests'
# packages, which the GPU machine lacks and this check does not need.
GPU_TEST_FILES = ("tests/host/test_dynamic_vram_gpu.py", "tests/host/test_split_gpu.py",
                  "tests/host/test_stream_overlap_gpu.py", "tests/unit/test_device_context.py",
                  "tests/unit/test_memory_gpu.py", "tests/unit/test_streaming.py")
SUMMARY_JSON, SUMMARY_MD, LOG_NAME = "gpu-check.json", "gpu-check.md", "gpu-check.log"
NO_CUDA = "no CUDA device"  # the start of every skip tools/pytest_distorch.py gives for want of CUDA
# The start of every skip tests/host/gpu_host.py gives where DynamicVRAM is off (its DYNAMIC_VRAM_OFF).
DYNAMIC_OFF = "DynamicVRAM is off"
DYNAMIC_VRAM_VARIABLE = "DISTORCH_DYNAMIC_VRAM"  # on | off: how tests/host/gpu_host.py starts the host
UNET_DEPTH = 8  # tests/host/gpu_split_probe.py's default
# Most seconds each step may take (less when the budget runs short); a step is not started with
# fewer than MIN_STEP_S left. Three test runs share the budget: the host is imported again by each
# probe, so a run costs about as much on either host.
STEP_CAPS_S = {"environment": 120, "host import": 90, "models": 150, "GPU tests": 150, "probes on the CPU": 240,
               "benchmark": 150}
MIN_STEP_S = 20
SUMMARY_RESERVE_S = 3


@dataclass(frozen=True)
class TestRun:
    """One run of the GPU tests: the host, and DynamicVRAM asked on or off (None: the host has none)."""
    host: str
    dynamic_vram: str | None = None

    @property
    def key(self) -> str:
        return self.host + (f"-dynamic-vram-{self.dynamic_vram}" if self.dynamic_vram else "")

    @property
    def label(self) -> str:
        return f"{self.host}" + (f", DynamicVRAM {self.dynamic_vram}" if self.dynamic_vram else "")


TEST_RUNS = (TestRun(hostenv.FLOOR_HOST), TestRun(hostenv.CURRENT_HOST, "on"), TestRun(hostenv.CURRENT_HOST, "off"))


@dataclass(frozen=True)
class Sizes:
    """Model sizes: the DiT the stream test samples (its probe's default) and the benchmark's."""
    test_dit: int
    bench_dits: tuple[int, ...]


# One benchmark size since the check runs the tests three times: the test DiT (the stream test's), 2.8 GiB bf16.
GPU_SIZES = Sizes(test_dit=3, bench_dits=(3,))
DRY_SIZES = Sizes(test_dit=1, bench_dits=(1,))    # 1 GiB: the CPU only checks that it all runs


@dataclass
class Step:
    name: str
    status: str = "not run"  # ok | failed | not run
    seconds: float = 0.0
    detail: str = ""


class StepFailed(Exception):
    """A step cannot go on; its message is the step's detail."""


# -- pure parts (tests/unit/test_gpu_check.py) -------------------------------------------------------

def parse_junit(text: str) -> list[dict]:
    """pytest's JUnit XML -> one dict per test: id, outcome (passed|failed|error|skipped), seconds,
    message (the reason of a skip, the first line of a failure)."""
    tests = []
    for case in ElementTree.fromstring(text).iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (found.get("message") or found.text or "").strip()
                break
        classname, name = case.get("classname", ""), case.get("name", "")
        tests.append({"id": f"{classname}::{name}" if classname else name, "outcome": outcome,
                      "seconds": round(float(case.get("time") or 0), 2), "message": message.splitlines()[0][:300]
                      if message else ""})
    return tests


# (distribution, version, whether this interpreter can install the wheel) per wheel path given
FOREIGN_WHEELS_SCRIPT = """
import json, sys
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
here = set(sys_tags())
out = []
for path in sys.argv[1:]:
    name, version, _, tags = parse_wheel_filename(path.rsplit("/", 1)[-1])
    out.append((str(canonicalize_name(name)), str(version), bool(here & set(tags))))
print(json.dumps(out))
"""
# (distribution, installed version or None) per name given
INSTALLED_VERSIONS_SCRIPT = """
import json, sys
from importlib import metadata
out = []
for name in sys.argv[1:]:
    try:
        out.append((name, metadata.version(name), True))
    except metadata.PackageNotFoundError:
        out.append((name, None, False))
print(json.dumps(out))
"""


def tests_verdict(tests: list[dict], dry_run: bool, dynamic_expected: bool = False) -> tuple[bool, str]:
    """Whether the GPU tests' outcomes pass the check. On a GPU: none failed or errored (a skip for
    want of CUDA is an error there, under DISTORCH_REQUIRE_GPU=1), and in a run that asked for
    DynamicVRAM (``dynamic_expected``) none skipped because it was off. Dry run: none failed and
    every test that did not pass was skipped for want of CUDA."""
    if not tests:
        return False, "no test ran"
    counts = {outcome: sum(1 for t in tests if t["outcome"] == outcome) for outcome in
              ("passed", "failed", "error", "skipped")}
    text = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
    if counts["failed"] or counts["error"]:
        return False, text
    if dynamic_expected and not dry_run:
        off = [t["id"] for t in tests if t["outcome"] == "skipped" and t["message"].startswith(DYNAMIC_OFF)]
        if off:
            return False, f"{text}; DynamicVRAM was asked for, yet these skipped for want of it: {', '.join(off)}"
    if dry_run:
        others = [t["id"] for t in tests if t["outcome"] == "skipped" and not t["message"].startswith(NO_CUDA)]
        if others:
            return False, f"{text}; skipped for another reason than no CUDA: {', '.join(others)}"
        if not counts["skipped"]:
            return False, f"{text}; a dry run expects the GPU tests skipped for want of CUDA"
    return True, text


def step_timeout(cap: float, remaining: float) -> float | None:
    """Seconds a step may run: its cap, cut to what the budget leaves; None when too little is left."""
    available = remaining - SUMMARY_RESERVE_S
    return None if available < MIN_STEP_S else min(cap, available)


def parent_site_dirs_script() -> str:
    """Printed by the machine's python: the folders its packages come from (its site folders and
    what their .pth files add), not the standard library."""
    return ("import json, os, sys, sysconfig\n"
            "std = {os.path.realpath(sysconfig.get_path(k)) for k in ('stdlib', 'platstdlib')}\n"
            "dirs = [p for p in sys.path if p and os.path.isdir(p) and os.path.realpath(p) not in std\n"
            "        and 'lib-dynload' not in p and os.path.realpath(p) != os.path.realpath(os.getcwd())]\n"
            "print(json.dumps(dirs))\n")


def _max_abs_diff(a: list, b: list) -> float:
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def latent_diffs(split_report: dict) -> dict:
    """The split probe's report without its latents, each share's largest difference from the
    unsplit latent (and the unsplit run's from itself) in their place."""
    shares = split_report.get("shares", {})
    whole = shares.get("0", {}).get("latent")
    slim = {key: value for key, value in split_report.items() if key != "shares"}
    slim["shares"] = {}
    for share, entry in shares.items():
        row = {key: value for key, value in entry.items() if key not in ("latent", "repeat_latent")}
        if whole is not None and entry.get("latent") is not None and len(entry["latent"]) == len(whole):
            row["latent_max_abs_diff_vs_unsplit"] = _max_abs_diff(entry["latent"], whole)
        if whole is not None and entry.get("repeat_latent") is not None:
            row["unsplit_repeat_max_abs_diff"] = _max_abs_diff(entry["repeat_latent"], whole)
        slim["shares"][share] = row
    return slim


def _mib(value) -> str:
    return "—" if value is None else f"{value / MiB:.1f}"


def _cell(value, fmt="{:.4f}") -> str:
    return "—" if value is None else fmt.format(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def _header_lines(summary: dict) -> list[str]:
    meta, figures = summary["check"], summary.get("figures", {})
    env, kit = figures.get("environment", {}), figures.get("kit", {})
    mode = ("DRY RUN on a CPU-only machine: nothing CUDA ran; no figure below is a GPU measurement"
            if meta["dry_run"] else "GPU run")
    tree = {True: "matches it", False: "DIFFERS from it", None: "unknown"}[kit.get("pack_matches")]
    hosts = "; ".join(f"ComfyUI {version}: archive {_mib(host.get('archive_bytes'))} MiB, wheels "
                      f"{_mib(host.get('wheels_bytes'))} MiB" for version, host in (kit.get("hosts") or {}).items())
    return [f"# GPU check, {meta['started']}: {summary['verdict']}", "",
            f"- mode: {mode}",
            f"- machine: {env.get('gpu') or 'no CUDA device'}; driver {env.get('driver') or '—'}; "
            f"python {env.get('python') or '—'}, torch {env.get('torch') or '—'}, "
            f"transformers {env.get('transformers') or '—'}",
            f"- kit: {_mib(kit.get('bytes'))} MiB ({hosts or '—'}), built {kit.get('built', '—')} for pack "
            f"{(kit.get('pack') or {}).get('commit') or '—'}; working tree {tree}",
            f"- took {meta.get('seconds', 0):.0f} s of a {meta['budget_s']:.0f} s budget"]


def _stream_lines(stream: dict, where: str) -> list[str]:
    rows = []
    for setting, report in sorted(stream.items()):
        profile, donors = report.get("profile", {}), report.get("donors") or {}
        per_forward = profile.get("htod_bytes", 0) / max(1, report.get("forwards_profiled", 1))
        pageable = profile["pageable_htod_bytes"] / profile["htod_bytes"] if profile.get("htod_bytes") else None
        rows.append([f"{setting} (NUM_STREAMS {report.get('num_streams')})", report.get("device"),
                     _cell(report.get("step_s")), _cell(profile.get("overlap_fraction"), "{:.1%}"),
                     profile.get("copies", 0), _mib(per_forward), _mib(report.get("offloaded_bytes")),
                     _cell(pageable, "{:.2%}"), f"{donors.get('pinned', '—')}/{donors.get('tensors', '—')}"])
    return ["", f"### Offload streams (test DiT, split with the CPU), {where}", ""] + _table(
        ["streams", "device", "step (s)", "copy time beside kernels", "HtoD copies", "MiB per forward",
         "offloaded MiB", "pageable share of HtoD bytes", "donors pinned"], rows)


def _split_lines(split: dict, where: str) -> list[str]:
    rows = []
    for share, row in sorted(split["shares"].items(), key=lambda item: int(item[0])):
        donors, placed = row.get("donors") or {}, row.get("placed_by_device")
        rows.append([share, _cell(row.get("latent_max_abs_diff_vs_unsplit"), "{:.3g}"), row.get("finite"),
                     "—" if placed is None else placed == row.get("planned_by_device"),
                     f"{donors.get('pinned', '—')}/{donors.get('tensors', '—')}",
                     _mib(row.get("planned_compute_bytes")), _mib(row.get("reserve_bytes")),
                     _mib(row.get("resident")), _mib(row.get("peak")), row.get("num_streams")])
    return ["", f"### Split vs unsplit (test UNet, {split.get('device')}), {where}", ""] + _table(
        ["offload %", "latent max diff", "finite", "placed = plan", "donors pinned", "compute MiB", "reserve MiB",
         "resident MiB", "peak MiB", "streams"], rows)


def _dynamic_lines(dynamic: dict, where: str) -> list[str]:
    """The DynamicVRAM probe's figures (tests/host/gpu_dynamic_probe.py)."""
    loads, memory, split = dynamic.get("loads", {}), dynamic.get("memory_report", {}), dynamic.get("split", {})
    unload, flow, freed = (dynamic.get(key, {}) for key in ("model_unload", "free_flow", "free_memory_for_dynamic"))
    donors = split.get("donors") or {}
    device = dynamic.get("device")
    rows = [
        ["DynamicVRAM on (CoreModelPatcher is ModelPatcherDynamic)", dynamic.get("dynamic_vram")],
        ["plain loads' class (kept / flagged)", f"{(loads.get('kept') or {}).get('class')} / "
                                                f"{(loads.get('flagged') or {}).get('class')}"],
        ["split: class, static copies made", f"{split.get('class')}, {split.get('static_copies')}"],
        ["split: placed = plan", "—" if split.get("placed_by_device") is None
         else split.get("placed_by_device") == split.get("planned_by_device")],
        ["split: CPU donors pinned", f"{donors.get('pinned', '—')}/{donors.get('tensors', '—')}"],
        ["free_memory(for_dynamic=True): kept / flagged still loaded",
         f"{freed.get('kept_after')} / {freed.get('flagged_after')}"],
        ["per-model unload of the kept model: kept / flagged still loaded",
         f"{unload.get('kept_after')} / {unload.get('flagged_after')}"],
        ["/free flow: mode; kept / flagged still loaded",
         f"{flow.get('mode')}; {flow.get('kept_after')} / {flow.get('flagged_after')}"],
        [f"memory report: kept model's MiB on {device}", _mib((memory.get("devices") or {}).get(str(device)))],
        [f"{device} use grown since before its load (MiB)", _mib(memory.get("device_used_delta"))],
        [f"memory report before the per-model unload (MiB on {device})",
         _mib((unload.get("kept_report_devices_before") or {}).get(str(device)))],
        [f"{device} use the unload gave back (MiB)", _mib(unload.get("device_freed"))],
    ]
    return ["", f"### DynamicVRAM probe (test DiT kept, test UNet flagged), {where}", ""] + _table(
        ["figure", "value"], rows)


def _probe_lines(probes: dict, where: str) -> list[str]:
    lines = []
    if probes.get("stream_probe"):
        lines += _stream_lines(probes["stream_probe"], where)
    if (probes.get("split_probe") or {}).get("shares"):
        lines += _split_lines(probes["split_probe"], where)
    if probes.get("dynamic_probe"):
        lines += _dynamic_lines(probes["dynamic_probe"], where)
    return lines


def _bench_lines(name: str, bench: dict) -> list[str]:
    lines = ["", f"## Benchmark: {name} (ComfyUI {hostenv.FLOOR_HOST})", ""]
    cpu, gpu = bench.get("cpu"), bench.get("gpu")
    if cpu:
        lines.append(f"CPU section ({cpu['model']}, {cpu['offloaded_bytes'] / MiB:.1f} MiB on the CPU donor): step "
                     f"unsplit {cpu['unsplit_step_s']:.4f} s, split {cpu['split_step_s']:.4f} s, "
                     f"ratio {cpu['ratio']:.3f}")
    if not gpu:
        return lines + [f"GPU rows: not measured ({bench.get('skipped', 'no GPU section')})."]
    targets, rows = bench.get("targets", {}), []
    for row in gpu["rows"]:
        if "error" in row:
            rows.append([row["offload_pct"], f"plan impossible: {row['error']}", "", "", "", "", "", "MISSES"])
            continue
        rows.append([row["offload_pct"], f"{row['offloaded_bytes'] / GiB:.2f}", f"{row['limit_s']:.4f}",
                     f"{row['split_s']:.4f}", f"{row['vs_limit']:.3f}", f"{row['lowvram_s']:.4f}",
                     f"{row['vs_lowvram']:.3f}", "meets both" if row["meets_targets"] else "MISSES"])
    return lines + [
        f"{gpu['model']} ({gpu['model_bytes'] / GiB:.2f} GiB), {gpu['steps']} steps at {gpu['size']}x{gpu['size']}; "
        f"pinned host-to-device {gpu['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s; "
        f"step fully on the GPU {gpu['full_step_s']:.4f} s", ""] + _table(
        ["offload %", "GiB offloaded", "limit (s)", "split (s)", f"split / limit (<= {targets.get('vs_limit')})",
         "lowvram (s)", f"split / lowvram (<= {targets.get('vs_lowvram')})", "verdict"], rows)


def render_markdown(summary: dict) -> str:
    """The summary as Markdown tables (what the check prints last): the steps, then each test run's
    tests and probe figures, the probes run on the CPU (dry run) and the benchmark."""
    figures = summary.get("figures", {})
    lines = _header_lines(summary) + ["", "## Steps", ""] + _table(
        ["step", "status", "seconds", "detail"],
        [[s["name"], s["status"], f"{s['seconds']:.1f}", s["detail"] or ""] for s in summary["steps"]])
    for run in summary.get("runs", []):
        where = f"ComfyUI {run['label']}"
        lines += ["", f"## GPU tests, {where}: {run.get('verdict') or 'not run'}", ""]
        if run.get("tests"):
            lines += _table(["test", "outcome", "seconds", "message"],
                            [[t["id"], t["outcome"], f"{t['seconds']:.1f}", t["message"]] for t in run["tests"]])
        lines += _probe_lines(run.get("probes") or {}, where)
    for host, probes in sorted((figures.get("cpu_probes") or {}).items()):
        lines += ["", f"## Probes on the CPU, ComfyUI {host} (no CUDA figures)"] + _probe_lines(
            probes, f"ComfyUI {host}, CPU")
    for name, bench in sorted((figures.get("bench") or {}).items()):
        lines += _bench_lines(name, bench)
    return "\n".join(lines) + "\n"


# -- the run --------------------------------------------------------------------------------------

@dataclass
class HostEnvironment:
    """One host's environment on the machine: its python and its unpacked ComfyUI tree."""
    python: Path
    comfyui: Path


@dataclass
class RunRecord:
    """One test run's outcome: its tests, the verdict's text, the probes' figures."""
    run: TestRun
    tests: list = field(default_factory=list)
    verdict: str = ""
    probes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"key": self.run.key, "label": self.run.label, "host": self.run.host,
                "dynamic_vram": self.run.dynamic_vram, "tests": self.tests, "verdict": self.verdict,
                "probes": self.probes}


def probe_figures(folder: Path) -> dict:
    """The probes' reports in ``folder`` (DISTORCH_GPU_REPORT_DIR of one run), as the summary keeps them."""
    probes = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        report = json.loads(path.read_text())
        if path.name.startswith("split-probe"):
            probes["split_probe"] = latent_diffs(report)
        elif path.name.startswith("stream-probe-"):
            probes.setdefault("stream_probe", {})[report.get("streams", path.stem)] = report
        elif path.name.startswith("dynamic-probe"):
            probes["dynamic_probe"] = report
    return probes


class Check:
    """One run of the check: its steps, figures and summary files (nothing kept at module level)."""

    def __init__(self, out: Path, work: Path, kit: Path, dry_run: bool, budget_s: float, python: str | None):
        self.out, self.work, self.kit, self.dry_run = out, work, kit, dry_run
        self.sizes = DRY_SIZES if dry_run else GPU_SIZES
        self.python = python
        self.started = time.monotonic()
        self.deadline = self.started + budget_s
        self.budget_s = budget_s
        self.steps: list[Step] = []
        self.runs = {run.key: RunRecord(run) for run in TEST_RUNS}
        self.figures: dict = {}
        self.hosts: dict[str, HostEnvironment] = {}
        self.base: str | None = None  # the python whose packages stand for the machine's
        self.started_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / LOG_NAME
        self.log_path.write_text("")

    # -- plumbing ----------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        line = f"[gpu-check {time.monotonic() - self.started:5.0f} s] {message}"
        print(line, flush=True)
        with open(self.log_path, "a") as log:
            log.write(line + "\n")

    def environment(self, host: str = hostenv.FLOOR_HOST, run: TestRun | None = None) -> dict:
        env = dict(os.environ)
        found = self.hosts.get(host)
        env.update({
            "COMFYUI_PATH": str(found.comfyui if found else ""), "DISTORCH_HOST": host,
            "DISTORCH_MODEL_CACHE": str(self.work / "models"), "DISTORCH_CACHE": str(self.work / "cache"),
            "DISTORCH_GPU_REPORT_DIR": str(self.reports_dir(run)),
            "PYTHONUNBUFFERED": "1", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        })
        # DISTORCH_TIER / DISTORCH_SHARD: `make test`'s selection, not the check's (its runs name their files)
        for name in ("COMFYUI_GGUF_PATH", "DISTORCH_REQUIRE_GPU", DYNAMIC_VRAM_VARIABLE, "DISTORCH_TIER",
                     "DISTORCH_SHARD"):
            env.pop(name, None)
        if run is not None and run.dynamic_vram:
            env[DYNAMIC_VRAM_VARIABLE] = run.dynamic_vram
        if not self.dry_run:
            env["DISTORCH_REQUIRE_GPU"] = "1"
        return env

    def reports_dir(self, run: TestRun | None) -> Path:
        return self.work / "reports" / (run.key if run else "other")

    def command(self, step: Step, argv: list, timeout: float, label: str = "", host: str = hostenv.FLOOR_HOST,
                run: TestRun | None = None) -> str:
        """Run ``argv`` (output to the log) for ``host`` (and ``run``: DynamicVRAM, reports folder),
        in its own process group so that a timeout ends its children too. Returns the end of its
        output; raises StepFailed, naming ``label`` (default: the script or module run), when it fails."""
        argv = [str(a) for a in argv]
        label = label or (argv[2] if argv[1:2] == ["-m"] else Path(argv[1]).name if len(argv) > 1 else argv[0])
        with open(self.log_path, "a") as log:
            log.write(f"$ {' '.join(argv)}\n")
        start = self.log_path.stat().st_size
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(argv, cwd=REPO, env=self.environment(host, run), stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                code = None
        with open(self.log_path, "rb") as log:
            log.seek(start)
            tail = log.read().decode(errors="replace")[-3000:]
        if code is None:
            raise StepFailed(f"timed out after {timeout:.0f} s (end of its output in {LOG_NAME})")
        if code != 0:
            last = [line for line in tail.splitlines() if line.strip()][-1:] or [""]
            raise StepFailed(f"{label} exited {code}: {last[0][:300]}")
        return tail

    def step(self, name: str, action, cap_key: str | None = None) -> bool:
        """Run one step within the budget; record it and rewrite the summary. Returns success."""
        step = Step(name)
        self.steps.append(step)
        timeout = step_timeout(STEP_CAPS_S.get(cap_key or name, 60), self.deadline - time.monotonic())
        if timeout is None:
            step.detail = f"not started: {max(0, self.deadline - time.monotonic()):.0f} s of the budget left"
            self.say(f"{name}: {step.detail}")
            self.write_summary()
            return False
        self.say(f"{name}: start (at most {timeout:.0f} s)")
        started = time.monotonic()
        try:
            step.detail = action(step, timeout) or ""
            step.status = "ok"
        except (StepFailed, gpu_kit.KitError) as exc:
            step.status, step.detail = "failed", str(exc)
        except subprocess.CalledProcessError as exc:
            said = [line for line in (exc.stderr or exc.stdout or "").splitlines() if line.strip()][-1:] or [""]
            step.status, step.detail = "failed", f"{Path(str(exc.cmd[1] if len(exc.cmd) > 1 else exc.cmd[0])).name} " \
                                                 f"exited {exc.returncode}: {said[0][:300]}"
        except Exception as exc:  # anything else a step meets: the summary must still be written
            step.status, step.detail = "failed", f"{type(exc).__name__}: {exc}"
        step.seconds = round(time.monotonic() - started, 1)
        self.say(f"{name}: {step.status} in {step.seconds:.1f} s{': ' + step.detail if step.detail else ''}")
        self.write_summary()
        return step.status == "ok"

    def verdict(self) -> str:
        failed = [s.name for s in self.steps if s.status != "ok"]
        return "PASS" if not failed else f"FAIL ({', '.join(failed)})"

    def summary(self) -> dict:
        return {"check": {"started": self.started_at, "dry_run": self.dry_run, "budget_s": self.budget_s,
                          "seconds": round(time.monotonic() - self.started, 1), "work": str(self.work),
                          "gpu_test_files": list(GPU_TEST_FILES)},
                "verdict": self.verdict(), "steps": [asdict(s) for s in self.steps],
                "runs": [record.as_dict() for record in self.runs.values()], "figures": self.figures}

    def write_summary(self) -> None:
        summary = self.summary()
        (self.out / SUMMARY_JSON).write_text(json.dumps(summary, indent=1) + "\n")
        (self.out / SUMMARY_MD).write_text(render_markdown(summary))

    # -- steps ---------------------------------------------------------------------------------------
    def check_kit(self, step, timeout) -> str:
        manifest = gpu_kit.verify(self.kit)
        sizes = gpu_kit.host_bytes(manifest)
        self.figures["kit"] = {key: manifest.get(key) for key in ("built", "bytes", "pack_matches")}
        self.figures["kit"]["hosts"] = {
            version: {"archive": host["archive"], "folder": host["folder"], "pins": host["pins"],
                      "wheels": host["wheels"], "over": host["over"], "archive_bytes": sizes[version]["archive"],
                      "wheels_bytes": sizes[version]["wheels"]}
            for version, host in manifest["hosts"].items()}
        self.figures["kit"]["pack"] = {k: v for k, v in (manifest.get("pack") or {}).items() if k != "files"}
        missing = [run.host for run in TEST_RUNS if run.host not in manifest["hosts"]]
        if missing:
            raise StepFailed(f"the kit carries no ComfyUI {', '.join(sorted(set(missing)))}: run `make gpu-kit` again")
        return f"{manifest['bytes'] / MiB:.1f} MiB: {gpu_kit.host_sizes_line(manifest)}"

    def tests_python(self, host: str) -> str:
        """Dry run: the tests' environment of ``host``, whose packages stand in for the machine's and
        whose copies rehearse the kit's wheels that this interpreter cannot install."""
        if self.python and host == hostenv.FLOOR_HOST:
            return self.python
        return str(hostenv.python_in(hostenv.host_venv_dir(host)))

    def base_python(self, timeout: float) -> str:
        """The python whose packages stand for the machine's: this one there; in a dry run a fresh
        virtual environment over links to the tests' environments' copies of the machine's packages
        (the current host's environment, layered over the full one, has them all: torchaudio too)."""
        if not self.dry_run:
            return self.python or sys.executable
        if self.base:
            return self.base
        source = Path(self.tests_python(hostenv.CURRENT_HOST))
        if not source.exists():
            raise StepFailed(f"no tests' environment at {source} to stand in for the machine's packages: "
                             "run `make setup`")
        base = subprocess.run([str(source), "-c", "import sys; print(sys._base_executable)"], capture_output=True,
                              text=True, check=True).stdout.strip()
        stand_in = self.work / "device-python"
        subprocess.run([base, "-m", "venv", "--without-pip", str(stand_in)], check=True, timeout=timeout)
        site_dir = self.work / "device-site"
        linked = json.loads(subprocess.run(
            [str(source), str(REPO / "tools" / "device_site.py"), "--target", str(site_dir),
             "--packages", str(REPO / gpu_kit.DEVICE_PACKAGES_FILE)],
            capture_output=True, text=True, check=True, timeout=timeout).stdout)
        self.figures.setdefault("environment", {})["stand_in_packages"] = len(linked["linked"])
        python = hostenv.python_in(stand_in)
        self.purelib(python).joinpath("distorch-device-site.pth").write_text(f"{site_dir}\n")
        self.base = str(python)
        return self.base

    def rehearse_foreign_wheels(self, python, wheels: list[Path], host: str, timeout: float) -> list[Path]:
        """Dry run only: the kit's wheels are built for the GPU machine's CPython 3.12, and a compiled
        one (pydantic_core) does not install on another interpreter. Those are rehearsed with the
        host's tests' environment's copy of the same distribution at the same version (linked like the
        stand-in's packages); a version that differs fails the step. Returns the wheels to install."""
        source = self.tests_python(host)
        verdicts = json.loads(subprocess.run(
            [source, "-c", FOREIGN_WHEELS_SCRIPT, *map(str, wheels)], capture_output=True, text=True, check=True,
            timeout=timeout).stdout)
        foreign = {name: version for name, version, supported in verdicts if not supported}
        if not foreign:
            return wheels
        installed = {name: version for name, version, _ in json.loads(subprocess.run(
            [source, "-c", INSTALLED_VERSIONS_SCRIPT, *foreign], capture_output=True, text=True, check=True,
            timeout=timeout).stdout)}
        differ = {name: (version, installed.get(name)) for name, version in foreign.items()
                  if installed.get(name) != version}
        if differ:
            raise StepFailed("the kit's wheels for CPython 3.12 that this interpreter cannot install are rehearsed "
                             "with the tests' environment's copies, whose versions differ: " + ", ".join(
                                 f"{name} {pin} (here {here or 'absent'})" for name, (pin, here) in differ.items()))
        listing = self.work / f"foreign-wheels-{host}.txt"
        listing.write_text("".join(f"{name}\n" for name in foreign))
        site_dir = self.work / f"foreign-site-{host}"
        subprocess.run([source, str(REPO / "tools" / "device_site.py"), "--target", str(site_dir), "--packages",
                        str(listing)], capture_output=True, text=True, check=True, timeout=timeout)
        self.purelib(python).joinpath("distorch-foreign-wheels.pth").write_text(f"{site_dir}\n")
        self.figures.setdefault("environment", {}).setdefault("rehearsed_from_tests_environment", {})[host] = \
            sorted(foreign)
        return [wheel for wheel, (name, _, supported) in zip(wheels, verdicts) if supported]

    @staticmethod
    def purelib(python) -> Path:
        return Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip())

    def install_wheels(self, step, python: Path, host: str, timeout: float) -> int:
        """The kit's wheels of ``host`` into ``python``'s environment, from the kit alone; how many."""
        wheels = [self.kit / name for name in self.figures["kit"]["hosts"][host]["wheels"]]
        if self.dry_run:
            wheels = self.rehearse_foreign_wheels(python, wheels, host, timeout)
        if wheels:
            self.command(step, [python, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links",
                                wheels[0].parent, *wheels], timeout, host=host)
        return len(wheels)

    def unpack(self, host: str) -> Path:
        """The host's ComfyUI tree from the kit, unpacked into the work folder; its folder."""
        record = self.figures["kit"]["hosts"][host]
        with tarfile.open(self.kit / record["archive"]) as archive:
            if hasattr(tarfile, "data_filter"):  # Python 3.12 (and late 3.11 releases): refuse odd members
                archive.extractall(self.work, filter="data")
            else:
                archive.extractall(self.work)
        tree = self.work / record["folder"]
        if not (tree / "main.py").is_file():
            raise StepFailed(f"{record['archive']} holds no {record['folder']}/main.py")
        return tree

    def make_environment(self, step, timeout) -> str:
        """The floor host's environment: a fresh one over the machine's packages, its wheels from the kit."""
        deadline = time.monotonic() + timeout
        host = hostenv.FLOOR_HOST
        base = self.base_python(timeout)
        probe = subprocess.run([base, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise StepFailed(f"{base} cannot import torch: pass --python naming the machine's python with torch")
        parents = json.loads(subprocess.run([base, "-c", parent_site_dirs_script()], capture_output=True, text=True,
                                            check=True, cwd=self.work).stdout)
        venv = self.work / "venv"
        subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=timeout)
        python = hostenv.python_in(venv)
        # Appended after the environment's own site folder: the kit's wheels win over the machine's.
        self.purelib(python).joinpath("distorch-machine-packages.pth").write_text("".join(f"{p}\n" for p in parents))
        count = self.install_wheels(step, python, host, max(5, deadline - time.monotonic()))
        self.hosts[host] = HostEnvironment(python, self.unpack(host))
        facts = self.environment_facts(python, host, deadline)
        facts["driver"] = nvidia_driver()
        self.figures.setdefault("environment", {}).update(facts)
        if not self.dry_run and not facts["gpu"]:
            raise StepFailed(f"torch {facts['torch']} sees no CUDA device here: run the check on a GPU machine, "
                             "or rehearse it with --dry-run")
        return (f"python {facts['python']}, torch {facts['torch']} (CUDA {facts['cuda'] or 'none'}), "
                f"{count} wheels from the kit; {facts['gpu'] or 'no CUDA device'}")

    def environment_facts(self, python: Path, host: str, deadline: float) -> dict:
        kit_names = [pin.split("==")[0] for pin in self.figures["kit"]["hosts"][host]["pins"]]
        return json.loads(subprocess.run([python, "-c", ENVIRONMENT_FACTS, *kit_names], capture_output=True, text=True,
                                         check=True, timeout=max(5, deadline - time.monotonic())).stdout)

    def make_current_environment(self, step, timeout) -> str:
        """The current host's environment, layered over the floor host's (whose site folder, and what
        its .pth files add, come after its own): only its extra wheels are installed."""
        deadline = time.monotonic() + timeout
        host, floor = hostenv.CURRENT_HOST, self.hosts.get(hostenv.FLOOR_HOST)
        if floor is None:
            raise StepFailed(f"no ComfyUI {hostenv.FLOOR_HOST} environment to layer over")
        base = self.base_python(timeout)
        venv = self.work / f"venv-{host}"
        subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=timeout)
        python = hostenv.python_in(venv)
        # site.addsitedir also reads the floor environment's own .pth files (the machine's packages).
        self.purelib(python).joinpath("distorch-floor-environment.pth").write_text(
            f"import site; site.addsitedir({str(self.purelib(floor.python))!r})\n")
        count = self.install_wheels(step, python, host, max(5, deadline - time.monotonic()))
        self.hosts[host] = HostEnvironment(python, self.unpack(host))
        facts = self.environment_facts(python, host, deadline)
        self.figures.setdefault("environment", {}).setdefault("hosts", {})[host] = {"kit": facts["kit"]}
        return f"layered over {hostenv.FLOOR_HOST}'s; {count} wheels from the kit: " + ", ".join(
            f"{name} {version}" for name, version in facts["kit"].items())

    def import_host(self, host: str):
        """ComfyUI and the pack imported as the probes import them (tests/host/gpu_host.py); on the
        current host with DynamicVRAM asked for, so that a comfy-aimdo that cannot start fails here,
        before the tests (on the CPU it stays off)."""
        def action(step, timeout) -> str:
            device = "cpu" if self.dry_run else "cuda:0"
            script = ("import sys; from pathlib import Path; sys.path.insert(0, 'tests/host')\n"
                      "import gpu_host\n"
                      f"nodes, pack, dynamic = gpu_host.import_host(Path({str(self.work / 'models')!r}), {device!r})\n"
                      "print('host and pack imported:', len(pack.NODE_CLASS_MAPPINGS), 'pack nodes; DynamicVRAM',\n"
                      "      'on' if dynamic else 'off')\n")
            run = TestRun(host, "on") if host == hostenv.CURRENT_HOST else None
            tail = self.command(step, [self.hosts[host].python, "-c", script], timeout,
                                f"importing ComfyUI {host} and the pack", host=host, run=run)
            return [line for line in tail.splitlines() if line.startswith("host and pack imported")][-1]
        return action

    def make_models(self, step, timeout) -> str:
        floor = self.hosts[hostenv.FLOOR_HOST]
        self.command(step, [floor.python, "tools/make_models.py", "--comfyui", floor.comfyui, "--out",
                            self.work / "models", "--skip-base", f"--unet-depth={UNET_DEPTH}",
                            f"--dit-depth={self.sizes.test_dit}"], timeout)
        files = {p.name: p.stat().st_size for p in (self.work / "models").rglob("*.safetensors")}
        self.figures["models"] = files
        return ", ".join(f"{name} {size / GiB:.2f} GiB" for name, size in sorted(files.items()))

    def gpu_tests(self, run: TestRun):
        def action(step, timeout) -> str:
            record = self.runs[run.key]
            junit = self.work / f"junit-{run.key}.xml"
            try:
                self.command(step, [self.hosts[run.host].python, "-m", "pytest", *GPU_TEST_FILES, "-m", "gpu", "-q",
                                    "-rA", "-p", "no:cacheprovider", f"--junitxml={junit}"], timeout,
                             host=run.host, run=run)
            except StepFailed:
                if not junit.is_file():  # cut short (timeout) or broken before any result: say that
                    record.verdict = "no results"
                    raise
                # pytest exits 1 when a test fails: the verdict below names the outcomes
            finally:
                record.probes = probe_figures(self.reports_dir(run))  # also from a run cut short
            record.tests = parse_junit(junit.read_text())
            passed, text = tests_verdict(record.tests, self.dry_run, dynamic_expected=run.dynamic_vram == "on")
            record.verdict = text if passed else f"FAILED: {text}"
            if not passed:
                raise StepFailed(text)
            return text
        return action

    def cpu_probes(self, host: str):
        """Dry run only: the probes behind the GPU tests, once on the CPU on ``host`` (their figures
        are CPU ones): on 0.3.75 the split and stream probes, on 0.33.0 the DynamicVRAM probe, whose
        sequence runs with DynamicVRAM off there (it needs a GPU)."""
        def action(step, timeout) -> str:
            deadline = time.monotonic() + timeout
            reports = self.work / "reports" / f"cpu-{host}"
            reports.mkdir(parents=True, exist_ok=True)
            python = self.hosts[host].python
            ran = []
            if host == hostenv.FLOOR_HOST:
                self.command(step, [python, "tests/host/gpu_split_probe.py", "--device", "cpu",
                                    "--out", reports / "split-probe.json", "--shares", "0,50", "--prompts", "2",
                                    "--size", "64", "--steps", "1"], max(5, deadline - time.monotonic()), host=host)
                self.command(step, [python, "tests/host/gpu_stream_probe.py", "--streams", "on", "--device", "cpu",
                                    "--out", reports / "stream-probe-on.json", f"--dit-depth={self.sizes.test_dit}",
                                    "--size", "64", "--steps", "1", "--rounds", "1", "--context-tokens", "16"],
                             max(5, deadline - time.monotonic()), host=host)
                ran += ["gpu_split_probe.py", "gpu_stream_probe.py"]
            else:
                self.command(step, [python, "tests/host/gpu_dynamic_probe.py", "--device", "cpu",
                                    "--out", reports / "dynamic-probe.json", f"--unet-depth={UNET_DEPTH}",
                                    f"--dit-depth={self.sizes.test_dit}", "--size", "64", "--steps", "1"],
                             max(5, deadline - time.monotonic()), host=host,
                             run=TestRun(host, "on"))  # asked for, as on the GPU: the CPU leaves it off
                ran.append("gpu_dynamic_probe.py (DynamicVRAM off: no GPU)")
            self.figures.setdefault("cpu_probes", {})[host] = probe_figures(reports)
            return f"{' and '.join(ran)} ran on the CPU on ComfyUI {host} (no CUDA figures)"
        return action

    def benchmark(self, depth: int):
        def action(step, timeout) -> str:
            out = self.work / f"bench-dit-d{depth}.json"
            if self.dry_run:
                argv = ["--quick", "--model", "dit", f"--dit-depth={depth}"]
            else:
                argv = ["--gpu-only", "--gpu-model", "dit", f"--dit-depth={depth}", "--steps", "4", "--rounds", "5",
                        "--check"]
            try:
                self.command(step, [self.hosts[hostenv.FLOOR_HOST].python, "bench/bench_split.py", *argv, "--json",
                                    out], timeout)
            finally:
                if out.is_file():
                    self.figures.setdefault("bench", {})[f"dit-d{depth}"] = json.loads(out.read_text())
            figures = self.figures["bench"][f"dit-d{depth}"]
            if not figures.get("gpu"):
                return f"GPU rows not measured ({figures.get('skipped')}); CPU section ran"
            return ", ".join(f"{row['offload_pct']}%: {row.get('vs_limit', float('nan')):.3f} of the limit, "
                             f"{row.get('vs_lowvram', float('nan')):.3f} of lowvram" for row in figures["gpu"]["rows"])
        return action

    def run(self) -> int:
        """The steps in order: every test run before the benchmark, so that a budget running short
        leaves out figures, not verdicts."""
        self.say(f"{'DRY RUN (CPU only) ' if self.dry_run else ''}work folder {self.work}, "
                 f"budget {self.budget_s:.0f} s")
        floor, current = hostenv.FLOOR_HOST, hostenv.CURRENT_HOST
        ready = self.step("kit", self.check_kit) and self.step(f"environment ({floor})", self.make_environment,
                                                               "environment") \
            and self.step(f"host import ({floor})", self.import_host(floor), "host import")
        if ready and self.step("models", self.make_models):
            self.step(f"GPU tests ({TEST_RUNS[0].label})", self.gpu_tests(TEST_RUNS[0]), "GPU tests")
            if self.step(f"environment ({current})", self.make_current_environment, "environment") and \
                    self.step(f"host import ({current})", self.import_host(current), "host import"):
                for run in TEST_RUNS[1:]:
                    self.step(f"GPU tests ({run.label})", self.gpu_tests(run), "GPU tests")
                if self.dry_run:
                    self.step(f"probes on the CPU ({current})", self.cpu_probes(current), "probes on the CPU")
            if self.dry_run:
                self.step(f"probes on the CPU ({floor})", self.cpu_probes(floor), "probes on the CPU")
            for depth in self.sizes.bench_dits:
                self.step(f"benchmark, DiT d{depth}", self.benchmark(depth), "benchmark")
        self.write_summary()
        print(render_markdown(self.summary()), flush=True)
        return 0 if all(step.status == "ok" for step in self.steps) else 1


# Run by the environment's python with the kit's distribution names as arguments.
ENVIRONMENT_FACTS = """
import json, platform, sys, importlib.metadata as md
import torch
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
cuda = torch.cuda.is_available()
print(json.dumps({
    "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
    "gpu": torch.cuda.get_device_name(0) if cuda else None, "gpus": torch.cuda.device_count() if cuda else 0,
    **{name: version(name) for name in ("transformers", "numpy", "safetensors", "pytest", "nvidia-ml-py")},
    "kit": {name: version(name) for name in sys.argv[1:]}}))
"""


def nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for the summary (default: $OUT)")
    parser.add_argument("--kit", type=Path, default=REPO / gpu_kit.KIT_DIR_NAME)
    parser.add_argument("--work", type=Path, help="folder for the environment and models (default: a new temporary "
                                                  "one, removed at the end)")
    parser.add_argument("--dry-run", action="store_true", default=os.environ.get("GPU_CHECK_DRY_RUN") == "1",
                        help="CPU-only rehearsal of every step (also GPU_CHECK_DRY_RUN=1)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole check")
    parser.add_argument("--python", help="the python whose packages the environment sees (default: this one; "
                                         "dry run: the tests' environment)")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("name the summary's folder: --out DIR, or OUT=DIR")
    work = args.work or Path(tempfile.mkdtemp(prefix="distorch-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return Check(Path(args.out).resolve(), work.resolve(), args.kit.resolve(), args.dry_run, args.budget,
                     args.python).run()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
