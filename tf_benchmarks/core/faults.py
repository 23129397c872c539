"""Crash points for the kill tests: `crash_point(name)` kills the process with SIGKILL at the N-th
time it passes point `name` when $PRUNING_CRASH_AT is `name:N`; otherwise it does nothing."""

import os
import signal

ENV = 'PRUNING_CRASH_AT'
_passed = {}


def crash_point(name):
    spec = os.environ.get(ENV)
    if not spec or spec.rsplit(':', 1)[0] != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] == int(spec.rsplit(':', 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)
