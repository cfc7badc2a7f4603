"""Shared test set-up (import paths are in pyproject's [tool.pytest.ini_options])."""
import pytest
from hypothesis import HealthCheck, settings

# Property tests check what is generated, not how fast: on a shared 2-core machine the host's test
# servers make example generation slow, which must not fail a correct test.
settings.register_profile("distorch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("distorch")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped where none is present, a failure with "
                                       "DISTORCH_REQUIRE_GPU=1 (tools/pytest_distorch.py)")
    config.addinivalue_line("markers", "host: starts a real ComfyUI server")


# -- tiers (tools/tiers.py, tools/run_tiers.py) --------------------------------------------------
def pytest_collection_modifyitems(config, items):
    import os

    from tiers import SHARD_VARIABLE, TIER_VARIABLE, TIERS, parse_shard, shard_selection, tier_order, tier_selection

    tier = os.environ.get(TIER_VARIABLE, "")
    if tier and tier not in TIERS:
        raise pytest.UsageError(f"{TIER_VARIABLE}={tier!r}: use full or compat (tools/run_tiers.py sets it)")
    try:
        shard = parse_shard(os.environ.get(SHARD_VARIABLE, ""))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    import hostenv

    notes = []
    floor = bool(os.environ.get("COMFYUI_PATH")) or hostenv.host_choice() == hostenv.FLOOR_HOST
    keep = tier_selection(tier, [item.path.as_posix() for item in items], floor_host=floor)
    left_out = [item for item, kept in zip(items, keep) if not kept]
    if left_out:
        items[:] = [item for item, kept in zip(items, keep) if kept]
        files = sorted({item.path.name for item in left_out})
        where = ("they run in the full tier, on today's host" if tier == "compat"
                 else f"they run in the compatibility tier, on ComfyUI {hostenv.FLOOR_HOST}")
        notes.append(f"{tier or 'full'} tier on {hostenv.host_label()}: {len(left_out)} tests in "
                     f"{len(files)} files left out here ({where}): {', '.join(files)}")
    keep = shard_selection([item.path.as_posix() for item in items], shard)
    elsewhere = [item for item, kept in zip(items, keep) if not kept]
    if shard is not None:
        items[:] = [item for item, kept in zip(items, keep) if kept]
        here = sorted({item.path.name for item in items})
        notes.append(f"shard {shard[0]}/{shard[1]} of the {tier or 'full'} tier: {len(items)} tests in "
                     f"{len(here)} files here; {len(elsewhere)} tests run in the other shard(s)")
    if left_out or elsewhere:
        config.hook.pytest_deselected(items=left_out + elsewhere)
    items[:] = [items[index] for index in tier_order(tier, [item.path.name for item in items])]
    config._distorch_tier_note = "\n".join(notes)


def pytest_terminal_summary(terminalreporter, config):
    for line in getattr(config, "_distorch_tier_note", "").splitlines():
        terminalreporter.write_line(line)


def pytest_report_header(config):
    import os

    import hostenv
    from tiers import SHARD_VARIABLE, TIER_VARIABLE

    shard = os.environ.get(SHARD_VARIABLE)
    return (f"host: {hostenv.host_label()} ({hostenv.comfyui_dir()}); tier: {os.environ.get(TIER_VARIABLE) or 'full'}"
            + (f", shard {shard}" if shard else ""))
