"""pytest plugin loaded into ComfyUI's own test run (``-p outcomes_plugin``): writes
``{"outcomes": {test id: passed|failed|error|skipped}, "messages": {test id: failure text}}`` as
JSON to ``$DISTORCH_SUITE_OUTCOMES`` when the session ends. Standard library only."""
import json
import os

_outcomes: dict[str, str] = {}
_messages: dict[str, str] = {}


def pytest_collectreport(report):
    if report.failed:  # a file that does not import is a failure of the run, not a silent gap
        _outcomes[f"{report.nodeid} (collection)"] = "error"
        _messages[f"{report.nodeid} (collection)"] = report.longreprtext[-3000:]


def pytest_runtest_logreport(report):
    if report.failed:
        _outcomes[report.nodeid] = "failed" if report.when == "call" else "error"
        _messages.setdefault(report.nodeid, report.longreprtext[-3000:])
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


def pytest_sessionfinish(session):
    with open(os.environ["DISTORCH_SUITE_OUTCOMES"], "w", encoding="utf-8") as handle:
        json.dump({"outcomes": _outcomes, "messages": _messages}, handle, indent=1)
