"""Crash points for the kill tests: `crash_point(name)` kills the process with SIGKILL at the N-th
time it passes point `name` when $PRUNING_CRASH_AT is `name:N`; otherwise it does nothing. Pause
points for the lock tests: `pause_point(name)` waits there while the file FILE exists when
$PRUNING_PAUSE_AT is `name:FILE` (at most 10 minutes)."""

import os
import signal
import time

ENV = 'PRUNING_CRASH_AT'
PAUSE_ENV = 'PRUNING_PAUSE_AT'
_passed = {}


def crash_point(name):
    spec = os.environ.get(ENV)
    if not spec or spec.rsplit(':', 1)[0] != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] == int(spec.rsplit(':', 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name):
    spec = os.environ.get(PAUSE_ENV)
    if not spec or spec.split(':', 1)[0] != name:
        return
    path, start = spec.split(':', 1)[1], time.time()
    while os.path.exists(path) and time.time() - start < 600:
        time.sleep(0.05)
