"""Reload triggers: file events (watchdog: inotify / FSEvents / ReadDirectoryChangesW, no polling
loop of ours) and SIGHUP where the platform has it.

The folder holding the file is watched (editors save by writing a temporary file and renaming
it over the original); events for other files are ignored. Bursts of events (one save can emit
several) are merged: the reload runs once, ``DEBOUNCE_S`` after the last event.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("distorch.modes")

DEBOUNCE_S = 0.03


class Debouncer:
    def __init__(self, action: Callable[[], None], delay: float = DEBOUNCE_S):
        self._action, self._delay = action, delay
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def trigger(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._delay, self._action)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class FileWatcher:
    """Calls ``on_change`` (debounced, on a timer thread) whenever ``path`` is written, created,
    replaced or removed. ``retarget`` follows a new path after the location changed."""

    def __init__(self, on_change: Callable[[], None]):
        self._debouncer = Debouncer(on_change)
        self._observer = None
        self._path: Path | None = None
        self.error: str | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    def retarget(self, path: Path | None) -> None:
        if path is not None:
            path = Path(os.path.abspath(path))
        if path == self._path and (self._observer is not None or path is None):
            return
        self.stop()
        self._path = path
        if path is None:
            return
        folder = path.parent
        if not folder.is_dir():
            self.error = f"folder {folder} does not exist: changes to {path.name} are not watched"
            log.info("modes: %s (reload with POST /distorch/modes/reload)", self.error)
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            self.error = "the 'watchdog' package is missing: file changes are not watched (pip install watchdog)"
            log.warning("modes: %s", self.error)
            return
        target = str(path)
        debouncer = self._debouncer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type in ("opened", "closed_no_write"):
                    return
                paths = {os.path.abspath(os.fsdecode(event.src_path))}
                dest = getattr(event, "dest_path", "")
                if dest:
                    paths.add(os.path.abspath(os.fsdecode(dest)))
                if target in paths:
                    debouncer.trigger()

        observer = Observer()
        observer.daemon = True
        observer.schedule(Handler(), str(folder), recursive=False)
        try:
            observer.start()
        except OSError as exc:  # e.g. inotify watch limit reached
            self.error = f"cannot watch {folder}: {exc}"
            log.warning("modes: %s (reload with POST /distorch/modes/reload)", self.error)
            return
        self._observer, self.error = observer, None

    def stop(self) -> None:
        self._debouncer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


def install_sighup(on_signal: Callable[[], None]) -> Callable[[], bool] | None:
    """Reload on SIGHUP (POSIX). The handler only starts a thread (no work in signal context),
    then calls the Python handler that was there before, so another SIGHUP user keeps working.
    Returns a function that puts the previous handler back (False if someone replaced ours
    meanwhile, which is then left alone), or None where SIGHUP cannot be handled."""
    if not hasattr(signal, "SIGHUP"):
        return None
    previous = signal.getsignal(signal.SIGHUP)

    def handler(signum, frame):
        threading.Thread(target=on_signal, name="distorch-modes-sighup", daemon=True).start()
        if callable(previous) and previous not in (signal.SIG_IGN, signal.SIG_DFL):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGHUP, handler)
    except ValueError:  # not the main thread
        log.info("modes: SIGHUP reload unavailable (pack imported outside the main thread)")
        return None

    def restore() -> bool:
        if signal.getsignal(signal.SIGHUP) is not handler:
            log.warning("modes: the SIGHUP handler was replaced by another extension; leaving theirs in place")
            return False
        try:
            signal.signal(signal.SIGHUP, previous if previous is not None else signal.SIG_DFL)
        except ValueError:
            return False
        return True

    return restore
