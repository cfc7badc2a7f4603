"""The modes file's SIGHUP reload: chained to the handler that was there, and removable."""
import os
import signal
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")


def test_sighup_reloads_chains_and_restores(pack_module):
    watch = pack_module("modes.watch")
    earlier_calls, reloads = [], threading.Event()

    def earlier(signum, frame):
        earlier_calls.append(signum)

    original = signal.signal(signal.SIGHUP, earlier)
    try:
        restore = watch.install_sighup(reloads.set)
        assert restore is not None and signal.getsignal(signal.SIGHUP) is not earlier
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not earlier_calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reloads.wait(5), "our reload did not run"
        assert earlier_calls == [signal.SIGHUP], "the previous Python handler must still run"
        assert restore() and signal.getsignal(signal.SIGHUP) is earlier
    finally:
        signal.signal(signal.SIGHUP, original)


def test_restore_leaves_a_later_handler_alone(pack_module):
    watch = pack_module("modes.watch")
    original = signal.getsignal(signal.SIGHUP)
    try:
        restore = watch.install_sighup(lambda: None)

        def later(signum, frame):
            pass

        signal.signal(signal.SIGHUP, later)
        assert restore() is False and signal.getsignal(signal.SIGHUP) is later
    finally:
        signal.signal(signal.SIGHUP, original)
